import { setTimeout as delay } from 'node:timers/promises';
import type { Redis } from 'ioredis';

/** A raw stream entry: its id and its field/value pairs. */
export interface StreamEntry {
  id: string;
  fields: Map<string, Buffer>;
}

interface Waiter {
  key: string;
  cursor: string;
  deadline: number;
  resolve(entries: StreamEntry[]): void;
}

/** Orders stream ids `ms-seq` numerically. */
export function compareStreamIds(a: string, b: string): number {
  const [am, as = '0'] = a.split('-');
  const [bm, bs = '0'] = b.split('-');
  if (am.length !== bm.length) return am.length - bm.length;
  if (am !== bm) return am < bm ? -1 : 1;
  return Number(as) - Number(bs);
}

export type XReadReply = [Buffer, [Buffer, Buffer[]][]][] | null;

export function toEntries(raw: [Buffer, Buffer[]][]): StreamEntry[] {
  return raw.map(([id, flat]) => {
    const fields = new Map<string, Buffer>();
    for (let k = 0; k < flat.length; k += 2) fields.set(flat[k].toString(), flat[k + 1]);
    return { id: id.toString(), fields };
  });
}

/** What serves long-polls on batch streams: `EventReader`, or `StreamReader` under Redis Cluster. */
export interface EventSource {
  /** Entries after `cursor`, waiting up to `waitMs` for the first; [] when none came. */
  read(key: string, cursor: string, waitMs: number, signal?: AbortSignal): Promise<StreamEntry[]>;
  /** Long-polls waiting now (the `ks_long_polls` gauge). */
  readonly waiting: number;
  close(): void;
}

/**
 * Long-polls of many clients over one blocking connection: a single `XREAD BLOCK` covers
 * every waited-on stream, and is interrupted (`CLIENT UNBLOCK`) when a new waiter comes.
 * So 500 concurrent long-polls cost one Redis connection, not 500.
 */
export class EventReader implements EventSource {
  private readonly waiters = new Set<Waiter>();
  private loopRunning = false;
  private blockedRead?: number;
  private readGeneration = 0;
  private blockingClientId?: number;
  private closed = false;

  constructor(
    private readonly redis: Redis,
    private readonly blocking: Redis,
    private readonly maxEntries: number,
  ) {
    this.blocking.on('ready', () => {
      this.blockingClientId = undefined;
    });
  }

  /** Entries after `cursor`, waiting up to `waitMs` for the first; [] when none came. */
  async read(key: string, cursor: string, waitMs: number, signal?: AbortSignal): Promise<StreamEntry[]> {
    if (waitMs <= 0 || this.loopRunning) {
      const reply = (await this.redis.xreadBuffer('COUNT', this.maxEntries, 'STREAMS', key, cursor)) as XReadReply;
      if (reply?.length || waitMs <= 0) return reply?.length ? toEntries(reply[0][1]) : [];
    }
    if (this.closed || signal?.aborted) return [];
    return new Promise((resolve) => {
      // A caller that reads again and again with one signal (the dashboard) must not pile up listeners on it.
      const onAbort = () => this.settle(waiter, []);
      const waiter: Waiter = {
        key,
        cursor,
        deadline: Date.now() + waitMs,
        resolve: (entries) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(entries);
        },
      };
      this.waiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.kick();
    });
  }

  /** Long-polls waiting now (the `ks_long_polls` gauge). */
  get waiting(): number {
    return this.waiters.size;
  }

  close(): void {
    this.closed = true;
    for (const waiter of [...this.waiters]) this.settle(waiter, []);
    this.blocking.disconnect();
  }

  private settle(waiter: Waiter, entries: StreamEntry[]): void {
    if (this.waiters.delete(waiter)) waiter.resolve(entries);
  }

  private kick(): void {
    if (!this.loopRunning) {
      this.loopRunning = true;
      void this.loop();
    } else if (this.blockedRead !== undefined) {
      void this.unblock(this.blockedRead);
    }
  }

  /** Interrupts the blocked read so it restarts with the new waiter; retries if it was not yet blocked. */
  private async unblock(generation: number): Promise<void> {
    try {
      this.blockingClientId ??= Number(await this.blocking.client('ID'));
    } catch {
      return;
    }
    while (this.blockedRead === generation && !this.closed) {
      const done = Number(await this.redis.client('UNBLOCK', this.blockingClientId).catch(() => 0));
      if (done || this.blockedRead !== generation) return;
      await delay(1);
    }
  }

  private async loop(): Promise<void> {
    try {
      while (!this.closed && this.waiters.size) {
        const now = Date.now();
        const cursors = new Map<string, string>();
        let soonest = Infinity;
        for (const waiter of [...this.waiters]) {
          if (waiter.deadline <= now) {
            this.settle(waiter, []);
            continue;
          }
          soonest = Math.min(soonest, waiter.deadline);
          const known = cursors.get(waiter.key);
          if (known === undefined || compareStreamIds(waiter.cursor, known) < 0) cursors.set(waiter.key, waiter.cursor);
        }
        if (!cursors.size) break;
        const generation = ++this.readGeneration;
        this.blockedRead = generation;
        let reply: XReadReply;
        try {
          reply = (await this.blocking.xreadBuffer(
            'COUNT',
            this.maxEntries,
            'BLOCK',
            Math.max(1, soonest - now),
            'STREAMS',
            ...cursors.keys(),
            ...cursors.values(),
          )) as XReadReply;
        } catch {
          reply = null;
          await delay(100);
        } finally {
          this.blockedRead = undefined;
        }
        for (const [keyBuf, raw] of reply ?? []) this.deliver(keyBuf.toString(), toEntries(raw));
      }
    } finally {
      this.loopRunning = false;
      if (this.waiters.size && !this.closed) this.kick();
    }
  }

  private deliver(key: string, entries: StreamEntry[]): void {
    for (const waiter of [...this.waiters]) {
      if (waiter.key !== key) continue;
      const fresh = entries.filter((e) => compareStreamIds(e.id, waiter.cursor) > 0);
      if (fresh.length) this.settle(waiter, fresh);
    }
  }
}
