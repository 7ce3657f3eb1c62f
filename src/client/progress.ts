import { config } from '../config.js';

/** A one-line progress bar on stderr, for large batches when stderr is a terminal. */
export class Progress {
  private done = 0;
  private lastDraw = 0;
  private readonly enabled: boolean;

  constructor(private readonly total: number) {
    this.enabled = !!process.stderr.isTTY && total >= config.progressMinCalls;
  }

  advance(count = 1): void {
    if (!this.enabled) return;
    this.done += count;
    const now = Date.now();
    if (now - this.lastDraw < 100 && this.done < this.total) return;
    this.lastDraw = now;
    const width = 30;
    const filled = Math.round((width * this.done) / this.total);
    process.stderr.write(`\r[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${this.done}/${this.total}`);
  }

  end(): void {
    if (this.enabled) process.stderr.write('\n');
  }
}
