import { setTimeout as delay } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { DelayedError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import type { Redis, RedisOptions } from 'ioredis';
import { encode, joined } from '../codec.js';
import { taskIdOf, type Keys } from '../keys.js';
import { profileField } from '../profile.js';
import type { CallJobData, FailureInfo, FailureKind, FnSpec, JobCall } from '../types.js';
import { ClaimAnswer, type ClaimLock } from './claim.js';
import { StopSwitch, type CallData, type RunOutcome } from './executor.js';
import { StreamedOutput } from './output.js';
import { withLocalData, type DataSource } from './local-data.js';
import type { ExecutorPool, Lease } from './pool.js';

export interface CallWorkerContext {
  /** Command connection (output events). */
  redis: Redis;
  claims: ClaimLock;
  /**
   * The connection BullMQ's workers use: options for the ones it opens per queue, or (Redis
   * Cluster) a connection it shares and duplicates for its blocking reads.
   */
  connection: RedisOptions | Redis;
  /** Receives task ids to cancel (`ks:cancel`). */
  subscriber: Redis;
  keys: Keys;
  nodeName: string;
  pool: ExecutorPool;
  /** Makes a call's data local before it runs. */
  data: DataSource;
  log(message: string): void;
  /** Told of every call this worker ran: how it ended and how long it took, and how long it waited in its queue. */
  metrics?: {
    callEnded(fn: FnSpec, outcome: 'ok' | FailureKind, seconds: number, caller?: string): void;
    queueWaited(seconds: number): void;
  };
}

export interface CallWorkerOptions {
  queues: string[];
  /** Jobs taken from each queue at once: the node's most interpreters (`--max-workers`). */
  concurrency: number;
  claimRefreshMs: number;
  /** Node-wide timeout in seconds (`--timeout`); a call's own `timeout` wins. */
  timeoutS?: number;
  maxOutputBytes: number;
  /** How long output may wait to go to Redis with more output or with its call's result. */
  outputCoalesceMs: number;
  /** BullMQ job lock: a job of a dead node is re-queued about this long after it died. */
  jobLockMs: number;
  /** How often a copy looks again at a call a live host is running. */
  recheckMs: number;
}

interface RunningCall {
  claimKey: string;
  stop: StopSwitch;
  /** On an interpreter now; until then a call claimed early waits for one. */
  started?: boolean;
}

/** Runs queued calls: takes jobs from the node's queues, wins the claim, runs, records the outcome. */
export class CallWorker {
  private readonly workers: Worker[] = [];
  private readonly running = new Map<string, RunningCall>();
  /** One owner token per node: the claim says which node runs a call. */
  private readonly owner: string;
  private refreshTimer?: NodeJS.Timeout;
  private closing = false;
  /** Set once a stopping node's grace is over: no call starts after that. */
  private graceOver = false;

  constructor(
    private readonly ctx: CallWorkerContext,
    private readonly opts: CallWorkerOptions,
  ) {
    this.owner = `${ctx.nodeName}/${randomBytes(6).toString('hex')}`;
  }

  async start(): Promise<void> {
    await this.ctx.subscriber.subscribe(this.ctx.keys.cancelChannel);
    this.ctx.subscriber.on('message', (_channel: string, taskId: string) => this.running.get(taskId)?.stop.stop());
    for (const queue of this.opts.queues) {
      const worker = new Worker<CallJobData>(this.ctx.keys.bullQueue(queue), (job, token) => this.process(job, token), {
        connection: this.ctx.keys.cluster ? (this.ctx.connection as ConnectionOptions) : ({ ...this.ctx.connection, maxRetriesPerRequest: null } as ConnectionOptions),
        prefix: this.ctx.keys.prefix,
        // A job waits here for a free interpreter; a call with a copy queued elsewhere is
        // claimed only once it has one, so an idle host can still run it meanwhile.
        // With autoscaling, up to the most interpreters the node may have: jobs waiting here
        // for one are what tells the autoscaler calls are starved.
        concurrency: this.opts.concurrency,
        removeOnComplete: { count: 0 },
        removeOnFail: { count: 0 },
        // A dead node's jobs go back to the queue this soon; claims keep a live node's from running twice.
        lockDuration: this.opts.jobLockMs,
        stalledInterval: this.opts.jobLockMs / 2,
        maxStalledCount: 1_000,
      });
      worker.on('error', (error) => this.ctx.log(`queue ${queue}: ${error.message}`));
      this.workers.push(worker);
    }
    this.refreshTimer = setInterval(() => void this.refreshClaims(), this.opts.claimRefreshMs);
    this.refreshTimer.unref();
  }

  /** Stops taking jobs; lets running calls finish for `graceMs`, then kills them. */
  async close(graceMs: number): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.pause(true).catch(() => {})));
    // Wait for the calls this node claimed, not for BullMQ: jobs still waiting for an
    // interpreter here go back to their queue once their lock lapses, and run elsewhere.
    const deadline = Date.now() + graceMs;
    while (this.running.size && Date.now() < deadline) await delay(50);
    // Kill what still runs. A call still waiting for an interpreter (claimed early or not) does
    // not start now: it fails, so its job runs again elsewhere (taking over an early claim from
    // this host); stopping it would drop it as if cancelled.
    this.graceOver = true;
    for (const call of this.running.values()) if (call.started) call.stop.stop();
    await Promise.all(this.workers.map((w) => w.close(true).catch(() => {})));
    clearInterval(this.refreshTimer);
  }

  /**
   * An interpreter for a job of `queue`, when this node serves that queue and one is free
   * right now: the job's call can then start here at once (`runHere`), without waiting for a
   * worker to take the job from the queue.
   */
  reserve(queue: string): Lease | undefined {
    if (this.closing || !this.opts.queues.includes(queue)) return undefined;
    return this.ctx.pool.tryAcquire();
  }

  /** Runs a one-call job on the interpreter `reserve` gave; resolves once the call ended (or was not this node's to run). */
  async runHere(job: CallJobData, lease: Lease): Promise<void> {
    await this.runCall(job.b, job.c[0], lease, false, Date.now());
  }

  /**
   * Runs a job's calls side by side, as many at once as there are free interpreters. A call a
   * live host is running keeps its copy here, looked at again later: if that host dies, this
   * copy takes the call over.
   */
  private async process(job: Job<CallJobData>, token?: string): Promise<void> {
    const { b: batchId, c: calls, q: copies } = job.data;
    // With no copy on another queue, no other host can run these calls while this node
    // lives: each may claim its call while it waits, as the next to get an interpreter.
    const claimEarly = (copies?.length ?? 1) <= 1;
    const answers = await Promise.all(calls.map((call) => this.runCall(batchId, call, undefined, claimEarly, job.timestamp + (job.opts.delay ?? 0))));
    if (token && answers.includes(ClaimAnswer.recheck)) {
      await job.moveToDelayed(Date.now() + this.opts.recheckMs, token);
      throw new DelayedError();
    }
  }

  /**
   * Claims and runs one call; answers what became of the claim. `claimEarly`: claim as soon
   * as this call is the next to get an interpreter, not once it has one, so that the claim's
   * round trip overlaps the call running before it.
   */
  private async runCall(batchId: string, call: JobCall, reserved: Lease | undefined, claimEarly: boolean, queuedAt: number): Promise<number> {
    const { i: index } = call;
    const { redis, keys, nodeName, claims } = this.ctx;
    const taskId = taskIdOf(batchId, index);
    const reRuns = call.o.retries ?? 1;
    const running: RunningCall = { claimKey: keys.claim(taskId), stop: new StopSwitch() };
    // Once won, the call is this node's: its claim is refreshed, and a cancellation reaches it
    // even while it still waits for its interpreter.
    const claim = () =>
      claims.claim(batchId, index, this.owner, nodeName, reRuns, encodedLostFailure(reRuns)).then((answer) => {
        if (answer === ClaimAnswer.run) this.running.set(taskId, running);
        return answer;
      });
    let early: Promise<number> | undefined;
    const whenNext = claimEarly
      ? () => {
          early = claim();
          // Awaited once the interpreter comes; until then its failure must not count as unhandled.
          early.catch(() => {});
        }
      : undefined;
    let lease: { current: Lease } | undefined;
    try {
      lease = { current: reserved ?? (await this.ctx.pool.acquire(false, whenNext)) };
      if (this.graceOver) throw new Error('this node is stopping');
      const answer = await (early ?? claim());
      if (answer !== ClaimAnswer.run) return answer;
      // Cancelled while it waited for its interpreter: the cancellation wrote its last event.
      if (running.stop.stopped) return ClaimAnswer.drop;
      running.started = true;
      const startedAt = Date.now();
      this.ctx.metrics?.queueWaited((startedAt - queuedAt) / 1000);
      const output = new StreamedOutput(redis, keys.batchEvents(batchId), index, this.opts.maxOutputBytes, call.o.intermediateResults !== false, this.opts.outputCoalesceMs);
      let ranAt = startedAt;
      const outcome = await withLocalData(this.ctx.data, call.d ?? [], (data) => {
        ranAt = Date.now();
        return this.runWithRetries(taskId, call, lease!, data, running.stop, output);
      });
      const endedAt = Date.now();
      const [type, event] = outcome.ok ? ['result', joined(outcome.value)] : eventOf(outcome.failure);
      this.ctx.metrics?.callEnded(call.f, outcome.ok ? 'ok' : outcome.failure.kind, (endedAt - startedAt) / 1000, call.o.c);
      // The interpreter is free now: the call waiting for it sends its claim in this same
      // turn, right behind this finish, so Redis reads both and answers both at once.
      lease.current.release();
      const profile = profileField(startedAt - queuedAt, ranAt - startedAt, endedAt - ranAt);
      await claims.finish(batchId, index, this.owner, nodeName, type, event, profile, output.takeRest());
      return ClaimAnswer.drop;
    } finally {
      // An early claim still in flight (the pool closed under it) must not leave an entry behind.
      await early?.catch(() => {});
      // Only this copy's entry: another copy of the call may run here (started at once, or
      // a second queue), and the claim it holds must go on being refreshed.
      if (this.running.get(taskId) === running) this.running.delete(taskId);
      lease?.current.release();
    }
  }

  /** Runs the call, again on a fresh interpreter after a crash while `retries` allow. */
  private async runWithRetries(taskId: string, call: JobCall, lease: { current: Lease }, data: CallData, stop: StopSwitch, output: StreamedOutput): Promise<RunOutcome> {
    const timeoutS = call.o.timeout ?? this.opts.timeoutS;
    const payload = Buffer.from(call.p, 'base64');
    for (let attempt = 0; ; attempt++) {
      const outcome = await lease.current.run({
        fn: call.f,
        payload,
        data,
        timeoutMs: timeoutS ? timeoutS * 1000 : undefined,
        stop,
        onOutput: (stream, chunk) => output.write(stream, chunk),
        taskId,
      });
      if (outcome.ok || outcome.failure.kind !== 'crashed' || attempt >= (call.o.retries ?? 0)) return outcome;
      this.ctx.log(`task ${taskId} crashed its interpreter; re-running (attempt ${attempt + 2})`);
      lease.current.release();
      lease.current = await this.ctx.pool.acquire();
    }
  }

  private async refreshClaims(): Promise<void> {
    const claimKeys = [...this.running.values()].map((c) => c.claimKey);
    await this.ctx.claims.refresh(claimKeys, this.owner).catch((error: Error) => {
      this.ctx.log(`cannot refresh claims: ${error.message}`);
    });
  }
}

/** Why a call ended `lost` after its hosts died `reRuns` + 1 times. */
export function lostFailure(reRuns: number): FailureInfo {
  return { kind: 'lost', message: `the host running the call died${reRuns ? `, and so did the hosts of its ${reRuns} re-run(s)` : ''} (opts.retries ${reRuns})` };
}

/** `lostFailure(reRuns)` encoded, once per value: every claim carries it, few ever use it. */
const encodedLost = new Map<number, Buffer>();
function encodedLostFailure(reRuns: number): Buffer {
  let encoded = encodedLost.get(reRuns);
  if (!encoded) encodedLost.set(reRuns, (encoded = encode(lostFailure(reRuns))));
  return encoded;
}

function eventOf(failure: FailureInfo): [string, Buffer] {
  const type = failure.kind === 'timeout' || failure.kind === 'cancelled' ? failure.kind : 'error';
  return [type, encode(failure)];
}
