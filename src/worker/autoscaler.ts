import type { ExecutorPool } from './pool.js';

export interface AutoscalerOptions {
  min: number;
  max: number;
  /** Add an interpreter when a call has waited this long for one (Apex's starvation check). */
  scaleUpAfterMs: number;
  /** Retire an interpreter free for this long, while more than `min` remain. */
  retireIdleMs: number;
  /** How often to look. */
  checkMs: number;
  /** Told of every change: the slot, what happened, why, and how many interpreters there are now. */
  onChange(slot: number, change: 'added' | 'retired', reason: string, size: number): void;
}

/**
 * Grows and shrinks a node's interpreters, as Apex's Python operator does: when a call has
 * been starved of an interpreter longer than `scaleUpAfterMs`, one more starts (one at a time,
 * up to `max`); an interpreter idle for `retireIdleMs` stops (down to `min`). A new
 * interpreter replays the persisted ALL calls before it takes work, like any fresh one.
 */
export class Autoscaler {
  private timer?: NodeJS.Timeout;
  /** An interpreter is starting: wait for it before judging again. */
  private growing = false;
  added = 0;
  retired = 0;

  constructor(
    private readonly pool: ExecutorPool,
    private readonly opts: AutoscalerOptions,
  ) {}

  start(): void {
    if (this.opts.max <= this.opts.min) return;
    this.timer = setInterval(() => this.check(), this.opts.checkMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private check(): void {
    const waitedMs = this.pool.longestWaitMs();
    if (waitedMs >= this.opts.scaleUpAfterMs) {
      if (!this.growing && this.pool.size < this.opts.max) void this.grow(waitedMs);
      return;
    }
    if (waitedMs > 0 || this.pool.size <= this.opts.min) return;
    // The interpreter idle longest, highest slot first among equals, so slots stay low.
    const idle = this.pool.idleFor().filter(([, ms]) => ms >= this.opts.retireIdleMs);
    const [slot, ms] = idle.sort((a, b) => b[1] - a[1] || b[0] - a[0])[0] ?? [];
    if (slot === undefined || !this.pool.retire(slot)) return;
    this.retired += 1;
    this.opts.onChange(slot, 'retired', `idle for ${(ms! / 1000).toFixed(0)} s`, this.pool.size);
  }

  private async grow(waitedMs: number): Promise<void> {
    this.growing = true;
    try {
      const slot = await this.pool.grow();
      if (slot === undefined) return;
      this.added += 1;
      this.opts.onChange(slot, 'added', `a call waited ${waitedMs} ms for an interpreter`, this.pool.size);
    } finally {
      this.growing = false;
    }
  }
}
