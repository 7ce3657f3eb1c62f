import type { Redis } from 'ioredis';

/**
 * The claim lock that makes a call run once although it may sit on several queues.
 *
 * `ks:claim:<task>` holds the running copy's owner token (with an expiry its owner keeps
 * refreshing), then `done` or `cancelled`. Each script does its whole step in one round trip,
 * and writes the matching event to the batch stream in the same step, so the stream and
 * the claim can never disagree.
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
 * KEYS: claim, stream, tries. ARGV: owner, claimTtlMs, index, host, streamTtlS, alive key
 * prefix, re-runs allowed after a lost host, lost event data.
 * A claim held by a host whose heartbeat is gone is taken over (the call re-runs here), at
 * most `re-runs allowed` times; past that the call ends `lost`. Answers ClaimAnswer.
 */
const claimScript = `
local function start()
  redis.call('XADD', KEYS[2], '*', 't', 'started', 'i', ARGV[3], 'h', ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return start() end
local current = redis.call('GET', KEYS[1])
if not current then return 2 end
if current == 'done' or current == 'cancelled' then return 0 end
local holder = string.match(current, '^(.+)/[^/]*$')
if holder and redis.call('EXISTS', ARGV[6] .. holder) == 1 then return 2 end
local tries = redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[5])
if tries > tonumber(ARGV[7]) then
  redis.call('SET', KEYS[1], 'done', 'PX', tonumber(ARGV[5]) * 1000)
  redis.call('XADD', KEYS[2], '*', 't', 'lost', 'i', ARGV[3], 'd', ARGV[8])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return start()`;

/**
 * KEYS: stream, then a claim per call. ARGV: doneTtlMs, streamTtlS, data, then the index per
 * call. Ends `lost` every call that has not ended (the sweeper, for calls only a dead host
 * could run). Returns how many it ended.
 */
const lostScript = `
local ended = 0
for k = 2, #KEYS do
  local current = redis.call('GET', KEYS[k])
  if current ~= 'done' and current ~= 'cancelled' then
    redis.call('SET', KEYS[k], 'done', 'PX', ARGV[1])
    redis.call('XADD', KEYS[1], '*', 't', 'lost', 'i', ARGV[k + 2], 'd', ARGV[3])
    ended = ended + 1
  end
end
if ended > 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return ended`;

/**
 * KEYS: claim, stream. ARGV: owner, doneTtlMs, streamTtlS, type, index, host, data.
 * Records the outcome only if this owner still holds the claim (or it lapsed unclaimed);
 * a cancellation that came first has already written the call's last event.
 */
const finishScript = `
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
redis.call('XADD', KEYS[2], '*', 't', ARGV[4], 'i', ARGV[5], 'h', ARGV[6], 'd', ARGV[7])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1`;

/** KEYS: claim... ARGV: owner, ttlMs. Extends every claim this owner still holds. */
const refreshScript = `
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2]) end
end
return 0`;

/**
 * KEYS: stream, cancel channel, claim per task. ARGV: doneTtlMs, streamTtlS, data, then
 * (index, task id) per claim key. A call not yet claimed is marked `cancelled` so no copy runs it;
 * a running one is announced on the channel so its node kills it. Returns how many ended.
 */
const cancelScript = `
local ended = 0
for k = 3, #KEYS do
  local current = redis.call('GET', KEYS[k])
  local index, taskId = ARGV[2 * k - 2], ARGV[2 * k - 1]
  if current ~= 'done' and current ~= 'cancelled' then
    redis.call('SET', KEYS[k], 'cancelled', 'PX', ARGV[1])
    redis.call('XADD', KEYS[1], '*', 't', 'cancelled', 'i', index, 'd', ARGV[3])
    if current then redis.call('PUBLISH', KEYS[2], taskId) end
    ended = ended + 1
  end
end
if ended > 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return ended`;

interface ClaimCommands {
  ksClaim(
    claimKey: string,
    streamKey: string,
    triesKey: string,
    owner: string,
    ttlMs: number,
    index: number,
    host: string,
    streamTtlS: number,
    alivePrefix: string,
    reRunsAllowed: number,
    lostData: Buffer,
  ): Promise<number>;
  ksLost(numKeys: number, ...args: (string | number | Buffer)[]): Promise<number>;
  ksFinish(
    claimKey: string,
    streamKey: string,
    owner: string,
    doneTtlMs: number,
    streamTtlS: number,
    type: string,
    index: number,
    host: string,
    data: Buffer,
  ): Promise<number>;
  ksRefresh(numKeys: number, ...args: (string | number)[]): Promise<number>;
  ksCancel(numKeys: number, ...args: (string | number | Buffer)[]): Promise<number>;
}

export type ClaimRedis = Redis & ClaimCommands;

/** Adds the claim scripts to a connection (ioredis sends them by SHA after the first use). */
export function withClaimScripts(redis: Redis): ClaimRedis {
  const r = redis as ClaimRedis;
  if (typeof r.ksClaim === 'function') return r;
  redis.defineCommand('ksClaim', { numberOfKeys: 3, lua: claimScript });
  redis.defineCommand('ksLost', { lua: lostScript });
  redis.defineCommand('ksFinish', { numberOfKeys: 2, lua: finishScript });
  redis.defineCommand('ksRefresh', { lua: refreshScript });
  redis.defineCommand('ksCancel', { lua: cancelScript });
  return r;
}
