import type { Redis } from 'ioredis';
import { taskIdOf, type Keys } from '../keys.js';

/**
 * The claim lock that makes a call run once although it may sit on several queues, and the
 * bookkeeping of a batch's end.
 *
 * `ks:claim:<task>` holds the running copy's owner token `<host>/<token>` (with an expiry its
 * owner keeps refreshing), then `done` or `cancelled`. Each script does its whole step in one
 * round trip and writes the matching event to the batch stream in the same step, so stream
 * and claims never disagree. `ks:batch:<id>:meta` counts the batch's ended calls: when the
 * last one ends, the stream and the meta expire `--result-ttl` later; until then they only
 * carry a long safety expiry, so a batch that waits in a queue for hours is not lost.
 */

/** What a worker does with a call after trying to claim it. */
export const ClaimAnswer = {
  /** It ended (done, cancelled, or lost just now): drop this copy. */
  drop: 0,
  /** Won: run it. */
  run: 1,
  /** A live host runs it: keep this copy and look again later, in case that host dies. */
  recheck: 2,
} as const;

/**
 * Shared by the scripts: `count` calls of the batch ended, `failed` of them without a result
 * (the dashboard's counts). KEYS[1] is the stream, KEYS[2] the meta; `resultTtl` and
 * `safetyTtl` in seconds.
 */
const endedLua = `
local function ended(count, resultTtl, safetyTtl, failed)
  local total = redis.call('HINCRBY', KEYS[2], 'ended', count)
  if failed > 0 then redis.call('HINCRBY', KEYS[2], 'failed', failed) end
  local n = tonumber(redis.call('HGET', KEYS[2], 'n'))
  if n and total >= n then
    redis.call('EXPIRE', KEYS[1], resultTtl)
    redis.call('EXPIRE', KEYS[2], resultTtl)
  else
    redis.call('EXPIRE', KEYS[1], safetyTtl)
    redis.call('EXPIRE', KEYS[2], safetyTtl)
  end
end`;

/**
 * KEYS: stream, meta, claim, tries. ARGV: owner, claimTtlMs, index, host, doneTtlMs,
 * resultTtlS, safetyTtlS, alive key prefix, re-runs allowed after a lost host, lost data, and
 * the claim found dead (Redis Cluster only). A claim held by a host whose heartbeat is gone is
 * taken over (the call re-runs here), at most `re-runs allowed` times; past that the call ends
 * `lost`. Answers ClaimAnswer. Under Redis Cluster the heartbeat is in another slot, which a
 * script may not read: with no alive prefix the script answers {3, claim} instead, the caller
 * looks at the holder's heartbeat, and comes back naming the claim it found dead; the script
 * takes over only that very claim.
 */
const claimScript = `${endedLua}
local function start()
  redis.call('XADD', KEYS[1], '*', 't', 'started', 'i', ARGV[3], 'h', ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  return 1
end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return start() end
local current = redis.call('GET', KEYS[3])
if not current then return 2 end
if current == 'done' or current == 'cancelled' then return 0 end
local holder = string.match(current, '^(.+)/[^/]*$')
if holder and ARGV[8] ~= '' and redis.call('EXISTS', ARGV[8] .. holder) == 1 then return 2 end
if holder and ARGV[8] == '' and ARGV[11] ~= current then return {3, current} end
local tries = redis.call('INCR', KEYS[4])
redis.call('PEXPIRE', KEYS[4], ARGV[5])
if tries > tonumber(ARGV[9]) then
  redis.call('SET', KEYS[3], 'done', 'PX', ARGV[5])
  redis.call('XADD', KEYS[1], '*', 't', 'lost', 'i', ARGV[3], 'd', ARGV[10])
  ended(1, ARGV[6], ARGV[7], 1)
  return 0
end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
return start()`;

/**
 * KEYS: stream, meta, claim. ARGV: owner, doneTtlMs, resultTtlS, safetyTtlS, type, index,
 * host, data, profile, then the call's last output as (stream, chunk) pairs. Records output and
 * outcome only if this owner still holds the claim (or it lapsed unclaimed); a cancellation
 * that came first has already written the call's last event.
 */
const finishScript = `${endedLua}
local current = redis.call('GET', KEYS[3])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[3], 'done', 'PX', ARGV[2])
for k = 10, #ARGV, 2 do
  redis.call('XADD', KEYS[1], '*', 't', ARGV[k], 'i', ARGV[6], 'd', ARGV[k + 1])
end
redis.call('XADD', KEYS[1], '*', 't', ARGV[5], 'i', ARGV[6], 'h', ARGV[7], 'd', ARGV[8], 'p', ARGV[9])
ended(1, ARGV[3], ARGV[4], ARGV[5] == 'result' and 0 or 1)
return 1`;

/** KEYS: claim... ARGV: owner, ttlMs. Extends every claim this owner still holds. */
const refreshScript = `
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2]) end
end
return 0`;

/**
 * KEYS: stream, meta, then a claim per call. ARGV: the event type ('cancelled' or 'lost'),
 * doneTtlMs, resultTtlS, safetyTtlS, data, the cancel channel, then (index, task id) per claim.
 * Ends every named call that has not ended: none of its copies will run it; a running one is
 * announced on the channel so its node stops it. Returns how many it ended.
 */
const endCallsScript = `${endedLua}
local count = 0
local mark = ARGV[1] == 'cancelled' and 'cancelled' or 'done'
for k = 3, #KEYS do
  local current = redis.call('GET', KEYS[k])
  local index, taskId = ARGV[2 * k + 1], ARGV[2 * k + 2]
  if current ~= 'done' and current ~= 'cancelled' then
    redis.call('SET', KEYS[k], mark, 'PX', ARGV[2])
    redis.call('XADD', KEYS[1], '*', 't', ARGV[1], 'i', index, 'd', ARGV[5])
    if current then redis.call('PUBLISH', ARGV[6], taskId) end
    count = count + 1
  end
end
if count > 0 then ended(count, ARGV[3], ARGV[4], count) end
return count`;

/** KEYS: meta. ARGV: number of calls, safetyTtlS. A new batch's count, before any of its jobs exists. */
const startBatchScript = `
redis.call('HSET', KEYS[1], 'n', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1`;

interface ClaimCommands {
  ksStartBatch(meta: string, calls: number, safetyTtlS: number): Promise<number>;
  ksClaim(...args: (string | number | Buffer)[]): Promise<number | [3, string]>;
  ksFinish(...args: (string | number | Buffer)[]): Promise<number>;
  ksRefresh(numKeys: number, ...args: (string | number)[]): Promise<number>;
  ksEndCalls(numKeys: number, ...args: (string | number | Buffer)[]): Promise<number>;
}

export interface ClaimTimes {
  /** A running claim lapses unless refreshed this often. */
  claimTtlMs: number;
  /** Results stay readable this long after a batch's last call ended. */
  resultTtlS: number;
  /** `done`/`cancelled` claims outlive any queued copy of their call: at least this long. */
  minDoneTtlS: number;
  /** Expiry of a batch's stream and meta while calls are still to end. */
  batchSafetyTtlS: number;
}

/** The claim scripts on one connection, with the key names and expiries they need. */
export class ClaimLock {
  private readonly redis: Redis & ClaimCommands;
  private readonly doneTtlMs: number;

  constructor(
    redis: Redis,
    private readonly keys: Keys,
    private readonly times: ClaimTimes,
  ) {
    this.redis = redis as Redis & ClaimCommands;
    if (typeof this.redis.ksClaim !== 'function') {
      redis.defineCommand('ksStartBatch', { numberOfKeys: 1, lua: startBatchScript });
      redis.defineCommand('ksClaim', { numberOfKeys: 4, lua: claimScript });
      redis.defineCommand('ksFinish', { numberOfKeys: 3, lua: finishScript });
      redis.defineCommand('ksRefresh', { lua: refreshScript });
      redis.defineCommand('ksEndCalls', { lua: endCallsScript });
    }
    this.doneTtlMs = Math.max(times.resultTtlS, times.minDoneTtlS) * 1000;
  }

  /**
   * Records a new batch's size (one round trip, no MULTI). Send it before the batch's jobs on
   * the same connection, so the count exists before any worker can see a job.
   */
  startBatch(batchId: string, calls: number): Promise<number> {
    return this.redis.ksStartBatch(this.keys.batchMeta(batchId), calls, this.times.batchSafetyTtlS);
  }

  /** Tries to claim a call for `owner` (`<host>/<token>`); answers ClaimAnswer. */
  async claim(batchId: string, index: number, owner: string, host: string, reRunsAllowed: number, lostData: Buffer): Promise<number> {
    const taskId = taskIdOf(batchId, index);
    const { keys, times } = this;
    const attempt = (deadClaim: string) =>
      this.redis.ksClaim(
        keys.batchEvents(batchId),
        keys.batchMeta(batchId),
        keys.claim(taskId),
        keys.claimTries(taskId),
        owner,
        times.claimTtlMs,
        index,
        host,
        this.doneTtlMs,
        times.resultTtlS,
        times.batchSafetyTtlS,
        keys.cluster ? '' : keys.alive(''),
        reRunsAllowed,
        lostData,
        deadClaim,
      );
    const answer = await attempt('');
    if (typeof answer === 'number') return answer;
    // Redis Cluster: is the holder alive? Its heartbeat lives in another slot.
    const claimFound = answer[1];
    if (await this.redis.exists(keys.alive(claimFound.replace(/\/[^/]*$/, '')))) return ClaimAnswer.recheck;
    const taken = await attempt(claimFound);
    return typeof taken === 'number' ? taken : ClaimAnswer.recheck;
  }

  /**
   * Records a call's last output (`stream, chunk` pairs) and outcome event if `owner` still
   * holds it; false when it had ended already. `profile`: `profileField()` of the call.
   */
  async finish(batchId: string, index: number, owner: string, host: string, type: string, data: Buffer, profile: string, output: (string | Buffer)[] = []): Promise<boolean> {
    const { keys, times } = this;
    this.holdWrites();
    const recorded = await this.redis.ksFinish(
      keys.batchEvents(batchId),
      keys.batchMeta(batchId),
      keys.claim(taskIdOf(batchId, index)),
      owner,
      this.doneTtlMs,
      times.resultTtlS,
      times.batchSafetyTtlS,
      type,
      index,
      host,
      data,
      profile,
      ...output,
    );
    return recorded === 1;
  }

  /**
   * Holds this connection's writes until the current turn's promise callbacks have run: the
   * claim a freed interpreter's next call sends then leaves in the same write as this turn's
   * finish (one system call and one Redis wake-up for the two, not two).
   */
  private holdWrites(): void {
    const stream = this.redis.status === 'ready' ? this.redis.stream : undefined;
    if (!stream || stream.writableCorked) return;
    stream.cork();
    process.nextTick(() => stream.uncork());
  }

  /** Extends the claims `owner` still holds (under Redis Cluster, a script per batch: each batch has its slot). */
  async refresh(claimKeys: string[], owner: string): Promise<void> {
    const groups = new Map<string, string[]>();
    for (const key of claimKeys) {
      const slot = this.keys.cluster ? (/\{[^}]*\}/.exec(key)?.[0] ?? key) : '';
      const group = groups.get(slot);
      if (group) group.push(key);
      else groups.set(slot, [key]);
    }
    await Promise.all([...groups.values()].map((group) => this.redis.ksRefresh(group.length, ...group, owner, this.times.claimTtlMs)));
  }

  /** Ends calls of a batch that have not ended, with a `cancelled` or `lost` event; returns how many. */
  endCalls(batchId: string, indexes: number[], type: 'cancelled' | 'lost', data: Buffer): Promise<number> {
    const { keys, times } = this;
    const claimKeys: string[] = [];
    const pairs: (string | number)[] = [];
    for (const index of indexes) {
      const taskId = taskIdOf(batchId, index);
      claimKeys.push(keys.claim(taskId));
      pairs.push(index, taskId);
    }
    return this.redis.ksEndCalls(
      2 + claimKeys.length,
      keys.batchEvents(batchId),
      keys.batchMeta(batchId),
      ...claimKeys,
      type,
      this.doneTtlMs,
      times.resultTtlS,
      times.batchSafetyTtlS,
      data,
      keys.cancelChannel,
      ...pairs,
    );
  }
}
