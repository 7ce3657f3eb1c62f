import { encode } from '../codec.js';
import { queueName, type Keys } from '../keys.js';
import type { CallJobData, FailureInfo, HostInfo } from '../types.js';
import type { Redis } from 'ioredis';
import type { ClaimLock } from '../worker/claim.js';
import type { QueueCache } from './queues.js';
import { readHosts } from './registry.js';

export interface SweeperContext {
  redis: Redis;
  claims: ClaimLock;
  keys: Keys;
  queues: QueueCache;
  nodeName: string;
  log(message: string): void;
}

export interface SweeperOptions {
  intervalMs: number;
  /** A host is swept once its heartbeat has been silent this long. */
  deadAfterMs: number;
}

/**
 * Looks after the calls in a dead host's own queues. Calls in shared queues need no help:
 * BullMQ returns a dead node's jobs to their queue and a live node takes the call over. But a
 * host's own queue has no other reader: calls routed there (and to no live host) go to their
 * shared queue, where a live host takes them over and copies their data from another holder;
 * calls pinned there end `lost`, as do routed calls no live host serves the queue of. Then the
 * queue and the host's entry go. One node sweeps at a time (a short Redis lock).
 */
export class DeadHostSweeper {
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly ctx: SweeperContext,
    private readonly opts: SweeperOptions,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sweep().catch((error: Error) => this.ctx.log(`sweeping dead hosts: ${error.message}`)), this.opts.intervalMs);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** One pass; resolves to how many calls it ended `lost`. */
  async sweep(): Promise<number> {
    const { redis, keys } = this.ctx;
    const lock = await redis.set(`${keys.prefix}:sweep`, this.ctx.nodeName, 'PX', this.opts.intervalMs, 'NX');
    if (!lock) return 0;
    const hosts = await readHosts(redis, keys);
    const silent = hosts.filter((h) => !h.alive);
    if (!silent.length) return 0;
    // Silence is measured by Redis's clock (the beats and TIME), never this machine's against the dead host's.
    const [beats, [seconds, micros]] = await Promise.all([redis.hgetall(keys.beats), redis.time()]);
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    const deadQueues = new Set(silent.flatMap((h) => h.queues.map((q) => queueName(q, h.name))));
    const servedQueues = new Set(hosts.filter((h) => h.alive).flatMap((h) => h.queues));
    let lost = 0;
    for (const host of silent.filter((h) => now - Number(beats[h.name] ?? 0) > this.opts.deadAfterMs)) {
      for (const queue of host.queues.map((q) => queueName(q, host.name))) lost += await this.sweepQueue(queue, host, deadQueues, servedQueues);
      await redis.multi().hdel(keys.hosts, host.name).hdel(keys.beats, host.name).exec();
      this.ctx.log(`host ${host.name} is dead: its queues are swept and it is deregistered`);
    }
    return lost;
  }

  private async sweepQueue(name: string, host: HostInfo, deadQueues: Set<string>, servedQueues: Set<string>): Promise<number> {
    const queue = this.ctx.queues.get(name);
    const jobs = await queue.getJobs(['wait', 'prioritized', 'delayed', 'active', 'waiting-children']);
    const byBatch = new Map<string, number[]>();
    for (const job of jobs) {
      const data = job?.data as CallJobData | undefined;
      if (!data?.c) continue;
      // Another copy in a live queue will run (or take over) the call.
      if ((data.q ?? [name]).some((other) => !deadQueues.has(other))) continue;
      if (data.r && servedQueues.has(data.r)) {
        const { attempts, backoff, removeOnComplete, removeOnFail } = job.opts;
        await this.ctx.queues.get(data.r).add(job.name, { ...data, q: [data.r], r: undefined }, { jobId: job.id, attempts, backoff, removeOnComplete, removeOnFail });
        this.ctx.log(`host ${host.name} is dead: ${data.c.length} call(s) of batch ${data.b} routed to it go to queue ${data.r}`);
        continue;
      }
      const indexes = byBatch.get(data.b) ?? [];
      indexes.push(...data.c.map((call) => call.i));
      byBatch.set(data.b, indexes);
    }
    let lost = 0;
    const failure: FailureInfo = { kind: 'lost', message: `host ${host.name} died, and the call could run nowhere else (pinned there, or no live host serves its queue)` };
    for (const [batchId, indexes] of byBatch) lost += await this.ctx.claims.endCalls(batchId, indexes, 'lost', encode(failure));
    await queue.obliterate({ force: true });
    await this.ctx.queues.drop(name);
    return lost;
  }
}
