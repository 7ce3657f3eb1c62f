import type { Redis } from 'ioredis';
import { queueName, type Keys } from '../keys.js';
import type { HostInfo } from '../types.js';
import { Fanout, sseMessage, type Sink } from './fanout.js';
import type { LaneState } from './activity.js';

export interface HubContext {
  redis: Redis;
  keys: Keys;
  /**
   * Opens the connection the hub blocks on while it has viewers: its own, so that watching
   * never interrupts the blocked reads that answer clients' long-polls.
   */
  connect(): Redis;
  /** Every registered host, alive or not. */
  hosts(): Promise<HostInfo[]>;
  log(message: string): void;
}

/** A queue as the dashboard shows it. */
export interface QueueShown {
  name: string;
  depth: number;
  /** How long its oldest waiting call has waited, ms; 0 when none waits. */
  oldestWaitMs: number;
}

/** A batch the feed has seen calls of, with its progress from Redis. */
export interface BatchShown {
  id: string;
  /** Calls in it, how many ended, and how many of those failed (from its meta in Redis). */
  n: number;
  ended: number;
  failed: number;
  /** When the feed first and last saw a call of it. */
  seenAt: number;
  lastAt: number;
}

/** What a viewer gets once a second besides the nodes' ticks. */
export interface ClusterView {
  at: number;
  hosts: HostInfo[];
  queues: QueueShown[];
  batches: BatchShown[];
}

/** What the hub reads of a tick. */
type TickBatches = { at: number; lanes?: LaneState[]; batches?: string[]; bars?: unknown[]; dropped?: number };

/** Whole ticks a new viewer gets at once (its task stream's last minute), at most. */
const historyMs = 60_000;
const historyLength = 300;
/** ... and at most this many bytes: every new viewer gets them at once (ten viewers, ten copies). */
const historyBytes = 256 << 10;
/** Seconds of the charts' series a new viewer gets (calls ended, jobs waiting). */
const seriesSeconds = 600;
/** A viewer whose connection holds this much unsent misses messages (and then gets a gap). */
const maxBufferedBytes = 1 << 20;
/** Batches the view follows at most; finished ones leave after a minute. */
const maxBatches = 50;
const finishedBatchKeptMs = 60_000;

/**
 * One per node: reads the cluster's feed once, however many viewers (`GET /api/v1/events`)
 * this node has, and only while it has some; hands each tick to every viewer and adds, each
 * second, the hosts (dead ones too), queues and batches in progress.
 */
export class DashboardHub {
  private readonly fanout = new Fanout(maxBufferedBytes);
  /** The last minute's ticks, as SSE messages with their time, for viewers that come later. */
  private readonly history: { at: number; message: Buffer }[] = [];
  private historySize = 0;
  /** The last feed entry read. */
  private cursor?: string;
  /** Calls ended each second, and jobs waiting, over the last ten minutes: the charts' history. */
  private readonly ended = new Map<number, number>();
  private readonly waiting: [number, number][] = [];
  private readonly batches = new Map<string, BatchShown>();
  private lastView?: ClusterView;
  private blocking?: Redis;
  private running?: Promise<void>;
  private stopReading = new AbortController();
  private closed = false;

  constructor(private readonly ctx: HubContext) {}

  get viewers(): number {
    return this.fanout.size;
  }

  /** Adds a viewer: it gets the recent ticks and the cluster at once, then everything live. Call the answer to remove it. */
  attach(sink: Sink): () => void {
    // The series before the first tick sent whole: the ticks count themselves again.
    const firstSecond = this.history.length ? Math.floor(this.history[0].at / 1000) : Infinity;
    const ended = [...this.ended].filter(([second]) => second < firstSecond).sort((a, b) => a[0] - b[0]);
    sink.write(sseMessage('hello', { view: this.lastView ?? null, ended, waiting: this.waiting }));
    for (const { message } of this.history) sink.write(message);
    this.fanout.add(sink);
    this.keepReading();
    return () => {
      this.fanout.remove(sink);
      if (!this.fanout.size) this.stopReading.abort();
    };
  }

  /** The node stops: its viewers' connections end (their pages reconnect to another node or later). */
  close(): void {
    this.closed = true;
    this.stopReading.abort();
    this.fanout.endAll();
    this.blocking?.disconnect();
  }

  /** Reads the feed while there are viewers; a reader that is stopping (its viewers left a moment ago) is followed by a new one. */
  private keepReading(): void {
    if (this.closed || (this.running && !this.stopReading.signal.aborted)) return;
    this.stopReading = new AbortController();
    const signal = this.stopReading.signal;
    const running = (this.running ?? Promise.resolve()).then(() => this.run(signal));
    this.running = running;
    void running.finally(() => {
      if (this.running === running) this.running = undefined;
    });
  }

  private async run(signal: AbortSignal): Promise<void> {
    const { keys } = this.ctx;
    try {
      await this.markWatched();
      // Read on from where the last reader stopped while what it kept is recent; else start over from Redis.
      const recent = this.cursor !== undefined && this.history.length > 0 && Date.now() - this.history[this.history.length - 1].at < historyMs;
      if (!recent) await this.loadHistory();
      let nextView = 0;
      while (this.fanout.size && !signal.aborted) {
        if (Date.now() >= nextView) {
          nextView = Date.now() + 1_000;
          await this.markWatched();
          this.fanout.publish(sseMessage('cluster', await this.view()));
        }
        this.blocking ??= this.ctx.connect();
        const reply = (await this.blocking.xread('COUNT', 100, 'BLOCK', Math.max(1, nextView - Date.now()), 'STREAMS', keys.dashboard, this.cursor!)) as [string, [string, string[]][]][] | null;
        for (const [id, fields] of reply?.[0]?.[1] ?? []) {
          this.cursor = id;
          const at = fields.indexOf('tick');
          if (at >= 0 && !signal.aborted) this.onTick(fields[at + 1]);
        }
      }
    } catch (error) {
      if (!signal.aborted) this.ctx.log(`dashboard: ${(error as Error).message}`);
    }
  }

  /** Tells every node to publish ticks, for the next few seconds. */
  private markWatched(): Promise<unknown> {
    return this.ctx.redis.set(this.ctx.keys.dashboardWatched, '1', 'PX', 5_000);
  }

  /** The feed's last ticks, into the history; the cursor after them. */
  private async loadHistory(): Promise<void> {
    const raw = (await this.ctx.redis.xrevrange(this.ctx.keys.dashboard, '+', '-', 'COUNT', historyLength)) as [string, string[]][];
    this.history.length = 0;
    this.historySize = 0;
    this.ended.clear();
    for (const [, fields] of raw.reverse()) {
      const at = fields.indexOf('tick');
      if (at >= 0) this.take(fields[at + 1]);
    }
    this.cursor = raw.length ? raw[raw.length - 1][0] : '0-0';
  }

  private onTick(json: string): void {
    this.fanout.publish(this.take(json));
  }

  /** Notes a tick (its batches, its calls in the series, itself in the history); answers its message. */
  private take(json: string): Buffer {
    const tick = JSON.parse(json) as TickBatches;
    this.followBatches(tick);
    const second = Math.floor(tick.at / 1000);
    this.ended.set(second, (this.ended.get(second) ?? 0) + (tick.bars?.length ?? 0) + (tick.dropped ?? 0));
    for (const old of this.ended.keys()) if (old < second - seriesSeconds) this.ended.delete(old);
    const message = Buffer.from(`event: tick\ndata: ${json}\n\n`);
    this.history.push({ at: tick.at, message });
    this.historySize += message.length;
    while (this.history.length && (this.history.length > historyLength || this.historySize > historyBytes || this.history[0].at < tick.at - historyMs)) {
      this.historySize -= this.history.shift()!.message.length;
    }
    return message;
  }

  /** The batches a tick names: those with calls that ended, and those with calls running. */
  private followBatches(tick: TickBatches): void {
    for (const id of tick.batches ?? []) this.followBatch(id, tick.at);
    for (const lane of tick.lanes ?? []) {
      const id = lane.taskId?.split('-')[0];
      if (id) this.followBatch(id, tick.at);
    }
  }

  private followBatch(id: string, at: number): BatchShown {
    let batch = this.batches.get(id);
    if (batch) batch.lastAt = Math.max(batch.lastAt, at);
    else {
      batch = { id, n: 0, ended: 0, failed: 0, seenAt: at, lastAt: at };
      this.batches.set(id, batch);
      if (this.batches.size > maxBatches) this.batches.delete(this.batches.keys().next().value!);
    }
    return batch;
  }

  /** Hosts, queues and batches now: the queues' and batches' commands sent at once (each to its shard under Redis Cluster). */
  private async view(): Promise<ClusterView> {
    const { redis, keys } = this.ctx;
    const hosts = await this.ctx.hosts();
    const names = [...new Set(hosts.filter((h) => h.alive).flatMap((h) => h.queues.flatMap((q) => [q, queueName(q, h.name)])))].sort();
    const batches = [...this.batches.values()];
    const [queueReplies, batchReplies] = await Promise.all([
      Promise.all(names.map((name) => Promise.all([redis.llen(keys.bullKey(name, 'wait')), redis.zcard(keys.bullKey(name, 'prioritized')), redis.lindex(keys.bullKey(name, 'wait'), -1)]))),
      Promise.all(batches.map((batch) => redis.hmget(keys.batchMeta(batch.id), 'n', 'ended', 'failed'))),
    ]);
    // The oldest waiting job's timestamp, for each queue with one: a second round trip, only for those.
    const oldestIds = queueReplies.map(([, , oldest]) => oldest);
    const stamps = oldestIds.some(Boolean) ? await Promise.all(names.map((name, k) => (oldestIds[k] ? redis.hget(keys.bullKey(name, oldestIds[k]!), 'timestamp') : null))) : [];
    const now = Date.now();
    const queues = names
      .map((name, k) => ({ name, depth: queueReplies[k][0] + queueReplies[k][1], oldestWaitMs: stamps[k] ? Math.max(0, now - Number(stamps[k])) : 0 }))
      // A host's own queues only while calls wait there: they would crowd out the rest.
      .filter((q) => q.depth > 0 || !(q.name.includes('.host.') || q.name.startsWith('host.')));
    for (const [k, batch] of batches.entries()) {
      const [n, ended, failed] = batchReplies[k];
      if (n) batch.n = Number(n);
      if (ended) batch.ended = Number(ended);
      if (failed) batch.failed = Number(failed);
      const done = batch.n > 0 && batch.ended >= batch.n;
      if ((done || !n) && now - batch.lastAt > finishedBatchKeptMs) this.batches.delete(batch.id);
    }
    this.lastView = { at: now, hosts, queues, batches };
    this.waiting.push([Math.floor(now / 1000), queues.reduce((sum, q) => sum + q.depth, 0)]);
    if (this.waiting.length > seriesSeconds) this.waiting.shift();
    return this.lastView;
  }
}
