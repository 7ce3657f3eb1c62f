import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Keys } from '../keys.js';

/** BullMQ Queue objects by our queue name, made on first use over one shared connection. */
export class QueueCache {
  private readonly queues = new Map<string, Queue>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  get(name: string): Queue {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new Queue(this.keys.bullQueue(name), { connection: this.redis, prefix: this.keys.prefix });
      this.queues.set(name, queue);
    }
    return queue;
  }

  /** Calls waiting (queued, prioritized or delayed) in each queue named, by name. */
  async waiting(names: string[]): Promise<Record<string, number>> {
    const counts = await Promise.all(names.map((name) => this.get(name).getJobCounts('wait', 'prioritized', 'delayed')));
    return Object.fromEntries(names.map((name, k) => [name, (counts[k].wait ?? 0) + (counts[k].prioritized ?? 0) + (counts[k].delayed ?? 0)]));
  }

  /** Forgets a queue (after it was obliterated). */
  async drop(name: string): Promise<void> {
    const queue = this.queues.get(name);
    this.queues.delete(name);
    await queue?.close();
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    this.queues.clear();
  }
}
