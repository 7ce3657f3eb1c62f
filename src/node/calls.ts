import { setTimeout as delay } from 'node:timers/promises';
import { FlowProducer, type FlowJob } from 'bullmq';
import { encode } from '../codec.js';
import { unservedError } from './unserved.js';
import { BadRequest, NotFound, TooManyRequests } from '../errors.js';
import { callQueue, newBatchId, queueName, taskIdOf, parseTaskId, type Keys } from '../keys.js';
import { terminalEventTypes, type CallJobData, type FailureInfo, type HostInfo, type JobCall, type WireCall, type WireEvent } from '../types.js';
import type { Redis } from 'ioredis';
import type { ClaimLock } from '../worker/claim.js';
import type { Lease } from '../worker/pool.js';
import type { StopSwitch } from '../worker/executor.js';
import type { EventSource, StreamEntry } from './event-reader.js';
import type { QueueCache } from './queues.js';
import { copyTiming, liveRoute } from '../routing.js';

export interface CallServiceContext {
  redis: Redis;
  claims: ClaimLock;
  keys: Keys;
  events: EventSource;
  queues: QueueCache;
  /** Live hosts, maybe a second old unless `fresh`. */
  liveHosts(fresh?: boolean): Promise<HostInfo[]>;
  /** Resolves once Redis's replicas have this node's writes so far (or there are none to ask). */
  replicas?: { afterWrites(): Promise<void> };
  /** This node's own workers: a one-call batch starts on one of their interpreters when one is free. */
  local?: {
    reserve(queue: string): Lease | undefined;
    runHere(job: CallJobData, lease: Lease): Promise<void>;
  };
}

export interface CallServiceOptions {
  longPollMaxMs: number;
  pollLingerMs: number;
  /** Job attempts when the worker itself fails (Redis gone mid-claim); Python errors never retry. */
  jobAttempts: number;
  maxCallsPerJob: number;
  chunksPerWorker: number;
  /** Head start of a call's first-choice host over the hosts ranked after it, per rank. */
  stealDelayMs: number;
  /** ... and later still by the time copying its extra bytes would take at this rate. */
  copyBytesPerMs: number;
  /** The most hosts a routed call is queued on. */
  routeHostsMax: number;
  /** How long the queued copy of a call that started at once on this node waits before any worker may take it. */
  localCopyDelayMs: number;
  /** `--max-queued`: the most calls that may wait in one queue; a batch that would pass it is refused whole. */
  maxQueued?: number;
}

export interface ResultsPage {
  cursor: string;
  events: WireEvent[];
}

function eventType(entry: StreamEntry): WireEvent['t'] {
  return entry.fields.get('t')!.toString() as WireEvent['t'];
}

function isOutput(entry: StreamEntry): boolean {
  const type = eventType(entry);
  return type === 'stdout' || type === 'stderr';
}

function endsIn(entries: StreamEntry[]): number {
  return entries.filter((e) => terminalEventTypes.has(eventType(e))).length;
}

/** A queue a call goes to, and the bytes its host would copy beyond the first choice's. */
interface Target {
  queue: string;
  extraBytes: number;
}

const cancelledByClient: FailureInfo = { kind: 'cancelled', message: 'cancelled before it ran' };

/** Queues calls, reads their events, cancels them. Routes call into here and nothing else. */
export class CallService {
  private readonly flows: FlowProducer;
  private readonly jobOpts: FlowJob['opts'];

  constructor(
    private readonly ctx: CallServiceContext,
    private readonly opts: CallServiceOptions,
  ) {
    this.flows = new FlowProducer({ connection: ctx.redis, prefix: ctx.keys.prefix });
    this.jobOpts = { removeOnComplete: true, removeOnFail: true, attempts: opts.jobAttempts, backoff: { type: 'fixed', delay: 500 } };
  }

  /** Enqueues a batch atomically; resolves to its batch id and task ids in call order. `caller` labels its calls' metrics. */
  async submit(calls: WireCall[], caller?: string): Promise<{ batchId: string; taskIds: string[] }> {
    const batchId = newBatchId();
    const hosts = await this.ctx.liveHosts();
    const chunkSize = this.chunkSize(calls.length, hosts);
    const jobs: FlowJob[] = [];
    let chunk: JobCall[] = [];
    let chunkTargets: Target[] = [];
    let chunkFallback: string | undefined;
    let chunkKey = '';
    const flush = () => {
      if (!chunk.length) return;
      const data: CallJobData = { b: batchId, c: chunk, q: chunkTargets.map((t) => t.queue), r: chunkFallback };
      chunkTargets.forEach(({ queue, extraBytes }, rank) =>
        jobs.push({
          name: 'call',
          queueName: queue,
          data,
          opts: { ...this.jobOpts, jobId: taskIdOf(batchId, chunk[0].i), ...copyTiming(rank, extraBytes, this.opts) },
        }),
      );
      chunk = [];
    };
    for (let index = 0; index < calls.length; index++) {
      const call = calls[index];
      const { targets, fallback } = await this.targetQueues(call, hosts, index);
      const targetsKey = `${targets.map((t) => `${t.queue}/${t.extraBytes}`).join()} ${fallback}`;
      if (chunk.length >= chunkSize || targetsKey !== chunkKey) flush();
      chunkTargets = targets;
      chunkFallback = fallback;
      chunkKey = targetsKey;
      chunk.push({
        i: index,
        f: call.fn,
        p: Buffer.from(call.payload).toString('base64'),
        o: { timeout: call.opts?.timeout, retries: call.opts?.retries, intermediateResults: call.opts?.intermediateResults, c: caller },
        d: call.data?.length ? call.data : undefined,
      });
    }
    flush();
    // Sent first on the connection the jobs go on, it lands first. Under Redis Cluster the
    // batch's keys and its queues are on different shards: wait for it.
    const started = this.ctx.claims.startBatch(batchId, calls.length).catch(() => 0);
    if (this.ctx.keys.cluster) await started;
    const queues = new Set(jobs.map((j) => j.queueName));
    if (this.opts.maxQueued !== undefined) await this.refuseOverfull(jobs, this.opts.maxQueued);
    if (jobs.length === 1) {
      // add, not addBulk: no pipeline object (ioredis copies every defined script into each one).
      const [{ queueName, name, data, opts }] = jobs;
      const lease = calls.length === 1 ? this.ctx.local?.reserve(queueName) : undefined;
      if (lease) await this.startHere(queueName, { name, data, opts }, lease);
      else await this.ctx.queues.get(queueName).add(name, data, opts);
    } else if (queues.size === 1) {
      // One queue: its own addBulk is one MULTI too, and lighter than a flow.
      await this.ctx.queues.get(jobs[0].queueName).addBulk(jobs.map(({ name, data, opts }) => ({ name, data, opts })));
    } else if (this.ctx.keys.cluster) {
      // Under Redis Cluster each queue hashes to a slot of its own and no MULTI spans slots, so
      // each queue's jobs go in their own addBulk: a batch may then be queued only in part when
      // one fails, and the client gets that error for the whole batch.
      await Promise.all([...queues].map((queue) => this.ctx.queues.get(queue).addBulk(jobs.filter((j) => j.queueName === queue).map(({ name, data, opts }) => ({ name, data, opts })))));
    } else {
      await this.flows.addBulk(jobs);
    }
    // Answered only once a replica has the batch: a failover then keeps it.
    await this.ctx.replicas?.afterWrites();
    return { batchId, taskIds: calls.map((_, index) => taskIdOf(batchId, index)) };
  }

  /**
   * Refuses a batch that would leave more than `maxQueued` calls waiting (or delayed) in one of
   * its queues. Checked before the batch is queued, not atomically with it: batches sent at the
   * same moment may pass the bound by what they hold together.
   */
  private async refuseOverfull(jobs: FlowJob[], maxQueued: number): Promise<void> {
    const adding = new Map<string, number>();
    for (const job of jobs) adding.set(job.queueName, (adding.get(job.queueName) ?? 0) + 1);
    const waiting = await this.ctx.queues.waiting([...adding.keys()]);
    for (const [queue, count] of adding) {
      if (waiting[queue] + count > maxQueued) {
        throw new TooManyRequests(`queue ${queue} holds ${waiting[queue]} waiting calls: this batch's ${count} more would pass --max-queued ${maxQueued}`);
      }
    }
  }

  /**
   * Starts a one-call job on this node's free interpreter `lease` at once: no trip through the
   * queue to a worker (two Redis round trips and a wake-up less). The job is still queued
   * first, delayed, as the copy that runs the call elsewhere should this node die before it
   * ends, just as a dead node's job returns to its queue after its lock lapses; it is removed
   * once the call ended here.
   */
  private async startHere(queueName: string, job: Pick<FlowJob, 'name' | 'data' | 'opts'>, lease: Lease): Promise<void> {
    const queue = this.ctx.queues.get(queueName);
    try {
      await queue.add(job.name, job.data, { ...job.opts, delay: this.opts.localCopyDelayMs });
    } catch (error) {
      lease.release();
      throw error;
    }
    const jobId = job.opts!.jobId!;
    void this.ctx.local!.runHere(job.data as CallJobData, lease).then(
      // A copy a worker holds already (the call outlived the delay) ends itself through the claim.
      () => queue.remove(jobId).catch(() => {}),
      // Redis failed under the call: the queued copy runs it once its delay is over.
      () => {},
    );
  }

  /**
   * Calls per job: 1 for small batches, so each call can go to a different idle worker; for
   * large ones, enough that every live worker still gets at least `chunksPerWorker` jobs.
   */
  private chunkSize(calls: number, hosts: HostInfo[]): number {
    // Under --max-queued a queued job is one call, so that a queue's waiting jobs count its calls.
    if (this.opts.maxQueued !== undefined) return 1;
    const workers = Math.max(1, hosts.reduce((sum, h) => sum + h.workers, 0));
    return Math.max(1, Math.min(this.opts.maxCallsPerJob, Math.floor(calls / (workers * this.opts.chunksPerWorker))));
  }

  /**
   * Events after `cursor`, waiting up to `waitMs` (bounded) for the first. When the client says
   * how many of its calls have not ended (`remaining`) and fewer ends came, it lingers a few ms
   * to answer with more at once: a 10,000-call batch then costs hundreds of polls, not thousands.
   * `justSubmitted`: this node has just queued the batch, so it need not check that it exists.
   */
  async results(batchId: string, cursor: string, waitMs: number, how: { remaining?: number; stop?: StopSwitch; justSubmitted?: boolean; profile?: boolean } = {}): Promise<ResultsPage> {
    const { remaining } = how;
    const { keys, redis } = this.ctx;
    const wait = Math.max(0, Math.min(waitMs, this.opts.longPollMaxMs));
    const stop = new AbortController();
    how.stop?.listen(() => stop.abort());
    let unknown = false;
    if (!how.justSubmitted && (cursor === '0' || cursor === '0-0')) {
      // A first read of a batch nobody submitted must not wait out the long-poll.
      void redis.exists(keys.batchMeta(batchId), keys.batchEvents(batchId)).then((n) => {
        if (n === 0) {
          unknown = true;
          stop.abort();
        }
      });
    }
    const streamKey = keys.batchEvents(batchId);
    const deadline = Date.now() + wait;
    const entries: StreamEntry[] = [];
    // A 'started' alone is not worth an answer: the call's output or end follows within moments.
    for (let from = cursor; ; from = entries[entries.length - 1].id) {
      const more = await this.ctx.events.read(streamKey, from, deadline - Date.now(), stop.signal);
      entries.push(...more);
      if (!more.length || Date.now() >= deadline || entries.some((e) => eventType(e) !== 'started')) break;
    }
    if (!entries.length && (unknown || (await redis.exists(keys.batchMeta(batchId), streamKey)) === 0)) {
      throw new NotFound(`no batch ${batchId}: it was never submitted, its results expired (--result-ttl), or Redis restarted without persistence and lost it`);
    }
    const ends = endsIn(entries);
    if (remaining !== undefined && ends > 0 && ends < remaining && !stop.signal.aborted) {
      await delay(this.opts.pollLingerMs);
      entries.push(...(await this.ctx.events.read(streamKey, entries[entries.length - 1].id, 0)));
    }
    return {
      cursor: entries.length ? entries[entries.length - 1].id : cursor,
      events: entries.map((e) => {
        const event: WireEvent = { t: eventType(e), i: Number(e.fields.get('i')), h: e.fields.get('h')?.toString(), d: e.fields.get('d') };
        // Asked for (br({profile}), the dashboard): an end's profile, and when Redis recorded a start or an end.
        if (how.profile && !isOutput(e)) Object.assign(event, { p: e.fields.get('p')?.toString(), at: Number(e.id.slice(0, e.id.indexOf('-'))) });
        return event;
      }),
    };
  }

  /** Cancels calls by task id: waiting ones never run, running ones are stopped by their node. */
  async cancel(taskIds: string[]): Promise<number> {
    const byBatch = new Map<string, number[]>();
    for (const taskId of taskIds) {
      const parsed = parseTaskId(taskId);
      if (!parsed) throw new BadRequest(`not a task id: ${JSON.stringify(taskId)}`);
      const list = byBatch.get(parsed.batchId) ?? [];
      list.push(parsed.index);
      byBatch.set(parsed.batchId, list);
    }
    let ended = 0;
    for (const [batchId, indexes] of byBatch) ended += await this.cancelInBatch(batchId, indexes);
    return ended;
  }

  /** Cancels every call of a batch that has not ended. */
  async cancelBatch(batchId: string): Promise<number> {
    const count = Number(await this.ctx.redis.hget(this.ctx.keys.batchMeta(batchId), 'n'));
    if (!count) throw new NotFound(`no batch ${batchId}`);
    return this.cancelInBatch(batchId, Array.from({ length: count }, (_, k) => k));
  }

  /** Cancels every call still waiting in any queue of a live host (admin). */
  async cancelAll(): Promise<number> {
    const names = new Set<string>();
    for (const host of await this.ctx.liveHosts(true)) {
      for (const queue of host.queues) {
        names.add(queue);
        names.add(queueName(queue, host.name));
      }
    }
    const waiting: string[] = [];
    for (const name of names) {
      const queue = this.ctx.queues.get(name);
      const jobs = await queue.getJobs(['wait', 'prioritized', 'delayed']);
      for (const job of jobs) {
        const data = job?.data as CallJobData | undefined;
        for (const call of data?.c ?? []) waiting.push(taskIdOf(data!.b, call.i));
      }
      await Promise.all(jobs.map((job) => job?.remove().catch(() => {})));
    }
    return waiting.length ? this.cancel([...new Set(waiting)]) : 0;
  }

  async close(): Promise<void> {
    await this.flows.close();
  }

  private cancelInBatch(batchId: string, indexes: number[]): Promise<number> {
    return this.ctx.claims.endCalls(batchId, indexes, 'cancelled', encode(cancelledByClient));
  }

  /**
   * The queues a call goes to, in rank order, and for a routed call the shared queue it falls
   * back to when they all die (its hosts are where its data is, not the only ones that may run
   * it); refuses hosts and queues nobody serves.
   */
  private async targetQueues(call: WireCall, hosts: HostInfo[], index: number): Promise<{ targets: Target[]; fallback?: string }> {
    // A job's calls go to the nodes that loaded it, unless the caller names a queue.
    const base = callQueue(call);
    const serves = (host: HostInfo) => host.queues.includes(base);
    const where = `call ${index}`;
    if (call.opts?.host) {
      let host = hosts.find((h) => h.name === call.opts!.host);
      if (!host) host = (await this.ctx.liveHosts(true)).find((h) => h.name === call.opts!.host);
      if (!host) throw new BadRequest(`${where}: unknown or dead host ${JSON.stringify(call.opts.host)}`);
      if (!serves(host)) throw new BadRequest(`${where}: host ${host.name} does not serve queue ${JSON.stringify(base)}`);
      return { targets: [{ queue: queueName(base, host.name), extraBytes: 0 }] };
    }
    if (!hosts.some(serves) && !(await this.ctx.liveHosts(true)).some(serves)) throw unservedError(call, await this.ctx.liveHosts(true), `${where}: `);
    const live = new Set(hosts.filter(serves).map((h) => h.name));
    const ranked = liveRoute(call.route ?? [], call.routeBytes, live, this.opts.routeHostsMax);
    if (!ranked.length) return { targets: [{ queue: base, extraBytes: 0 }] };
    return { targets: ranked.map(({ name, extraBytes }) => ({ queue: queueName(base, name), extraBytes })), fallback: base };
  }
}

