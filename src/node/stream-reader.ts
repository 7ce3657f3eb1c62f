import type { Redis } from 'ioredis';
import { compareStreamIds, toEntries, type EventSource, type StreamEntry, type XReadReply } from './event-reader.js';

interface Waiter {
  cursor: string;
  resolve(entries: StreamEntry[]): void;
}

/** Blocking connections kept for the next stream to wait on. */
const idleConnectionsKept = 8;

/**
 * Long-polls under Redis Cluster, where one `XREAD` may not span streams of different slots
 * (every batch has its own): one blocking read per stream waited on, each on a connection of
 * its own from a small pool. A stream's waiters share its read; each settles at its deadline.
 */
export class StreamReader implements EventSource {
  private readonly waiters = new Map<string, Set<Waiter>>();
  private readonly idle: Redis[] = [];
  private readonly open = new Set<Redis>();
  private closed = false;

  constructor(
    private readonly redis: Redis,
    private readonly connect: () => Redis,
    private readonly maxEntries: number,
  ) {}

  async read(key: string, cursor: string, waitMs: number, signal?: AbortSignal): Promise<StreamEntry[]> {
    const reply = (await this.redis.xreadBuffer('COUNT', this.maxEntries, 'STREAMS', key, cursor)) as XReadReply;
    if (reply?.length || waitMs <= 0 || this.closed || signal?.aborted) return reply?.length ? toEntries(reply[0][1]) : [];
    const first = !this.waiters.has(key);
    const waiting = this.waiters.get(key) ?? new Set<Waiter>();
    this.waiters.set(key, waiting);
    return new Promise((resolve) => {
      const settle = (entries: StreamEntry[]) => {
        if (!waiting.delete(waiter)) return;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (!waiting.size && this.waiters.get(key) === waiting) this.waiters.delete(key);
        resolve(entries);
      };
      const onAbort = () => settle([]);
      const waiter: Waiter = { cursor, resolve: settle };
      const timer = setTimeout(() => settle([]), waitMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      waiting.add(waiter);
      if (first) void this.follow(key);
    });
  }

  get waiting(): number {
    let count = 0;
    for (const waiting of this.waiters.values()) count += waiting.size;
    return count;
  }

  close(): void {
    this.closed = true;
    for (const waiting of this.waiters.values()) for (const waiter of [...waiting]) waiter.resolve([]);
    for (const connection of this.open) connection.disconnect();
  }

  /** Reads `key` while somebody waits on it, from the earliest cursor of those waiting. */
  private async follow(key: string): Promise<void> {
    const connection = this.idle.pop() ?? this.opened();
    try {
      for (let waiting = this.waiters.get(key); waiting?.size && !this.closed; waiting = this.waiters.get(key)) {
        const cursor = [...waiting].map((w) => w.cursor).reduce((a, b) => (compareStreamIds(a, b) <= 0 ? a : b));
        let reply: XReadReply;
        try {
          // At most a second blocked: then it looks again whether anybody still waits.
          reply = (await connection.xreadBuffer('COUNT', this.maxEntries, 'BLOCK', 1_000, 'STREAMS', key, cursor)) as XReadReply;
        } catch {
          if (this.closed) return;
          reply = null;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        const entries = reply?.length ? toEntries(reply[0][1]) : [];
        for (const waiter of [...(this.waiters.get(key) ?? [])]) {
          const fresh = entries.filter((e) => compareStreamIds(e.id, waiter.cursor) > 0);
          if (fresh.length) waiter.resolve(fresh);
        }
      }
    } finally {
      if (this.closed || this.idle.length >= idleConnectionsKept) {
        this.open.delete(connection);
        connection.disconnect();
      } else {
        this.idle.push(connection);
      }
    }
  }

  private opened(): Redis {
    const connection = this.connect();
    this.open.add(connection);
    return connection;
  }
}
