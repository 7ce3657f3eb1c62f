import { TooManyRequests } from '../errors.js';

export interface AdmissionOptions {
  /** Calls that may run at once; undefined: no limit. */
  maxConcurrency?: number;
  /** Calls that may wait, in arrival order, for one of those places; the rest are refused. */
  maxQueue: number;
}

/**
 * Racetrack's `max_concurrency` / `max_concurrency_queue` for a node's direct calls and
 * performs: at most N run at once, M more wait in order, the rest get 429 with `Retry-After`.
 */
export class Admission {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  /** Calls refused so far (for `/metrics`). */
  rejected = 0;

  constructor(private readonly opts: AdmissionOptions) {}

  /** Runs `work` once a place is free; throws TooManyRequests when none is and the queue is full. */
  async run<T>(work: () => Promise<T>): Promise<T> {
    const limit = this.opts.maxConcurrency;
    if (limit === undefined) return work();
    if (this.running >= limit) {
      if (this.waiting.length >= this.opts.maxQueue) {
        this.rejected += 1;
        throw new TooManyRequests(`this node runs ${limit} calls at once (--max-concurrency) and ${this.opts.maxQueue} more wait (--max-concurrency-queue): try again shortly`);
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running += 1;
    }
    try {
      return await work();
    } finally {
      // The place passes straight to the next in line, so `running` never dips below the limit while some wait.
      const next = this.waiting.shift();
      if (next) next();
      else this.running -= 1;
    }
  }
}
