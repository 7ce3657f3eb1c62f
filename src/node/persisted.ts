import type { Redis } from 'ioredis';
import { NotFound } from '../errors.js';
import { newBatchId, type Keys } from '../keys.js';
import type { FnSpec, WireCall } from '../types.js';

/** An ALL call recorded to run again on every interpreter that starts later (`persist: true`). */
export interface PersistedCall {
  id: string;
  queue: string;
  fn: FnSpec;
  /** base64 of the msgpack `[args, kwargs]`. */
  payload: string;
  timeoutS?: number;
  recordedAt: number;
}

/**
 * The persisted ALL calls, in order, one Redis list per queue (`ks:persist:<queue>`), and the
 * set of queues that have any (`ks:persist:queues`).
 */
export class PersistedCalls {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  /** Records a call for `queue`; resolves to its id. */
  async record(queue: string, call: WireCall): Promise<string> {
    const entry: PersistedCall = {
      id: `p${newBatchId().slice(1)}`,
      queue,
      fn: call.fn,
      payload: Buffer.from(call.payload).toString('base64'),
      timeoutS: call.opts?.timeout,
      recordedAt: Date.now(),
    };
    await this.redis.multi().rpush(this.keys.persisted(queue), JSON.stringify(entry)).sadd(this.keys.persistedQueues, queue).exec();
    return entry.id;
  }

  /** The calls recorded for these queues, each queue's in the order they were recorded. */
  async forQueues(queues: string[]): Promise<PersistedCall[]> {
    const lists = await Promise.all(queues.map((queue) => this.redis.lrange(this.keys.persisted(queue), 0, -1)));
    return lists.flat().map((json) => JSON.parse(json) as PersistedCall);
  }

  /** Every recorded call, of every queue. */
  async all(): Promise<PersistedCall[]> {
    return this.forQueues((await this.redis.smembers(this.keys.persistedQueues)).sort());
  }

  /** Removes a recorded call; NotFound when no call has that id. */
  async forget(id: string): Promise<void> {
    for (const queue of await this.redis.smembers(this.keys.persistedQueues)) {
      const key = this.keys.persisted(queue);
      const found = (await this.redis.lrange(key, 0, -1)).find((json) => (JSON.parse(json) as PersistedCall).id === id);
      if (found && (await this.redis.lrem(key, 1, found)) > 0) return;
    }
    throw new NotFound(`no persisted call ${JSON.stringify(id)} (GET /api/v1/persisted lists them)`);
  }
}
