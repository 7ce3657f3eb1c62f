import type { Redis } from 'ioredis';
import type { OutputStream } from './executor.js';

/** Output bytes a call may have on their way to Redis before its interpreter is made to wait. */
const maxInFlightBytes = 4 * 1024 * 1024;

/** A call's output capped at `maxBytes`, then one truncation notice on stderr. */
export class CappedOutput {
  private bytes = 0;
  private truncated = false;

  constructor(
    private readonly maxBytes: number,
    private readonly emit: (stream: OutputStream, chunk: Buffer) => void | Promise<void>,
  ) {}

  /** Passes a chunk on; a promise means: pause the interpreter's pipes until it settles. */
  write(stream: OutputStream, chunk: Buffer): void | Promise<void> {
    if (this.truncated) return;
    if (this.bytes + chunk.length > this.maxBytes) {
      chunk = chunk.subarray(0, this.maxBytes - this.bytes);
      this.truncated = true;
    }
    this.bytes += chunk.length;
    const wait = chunk.length ? this.emit(stream, chunk) : undefined;
    if (!this.truncated) return wait;
    return this.emit('stderr', Buffer.from(`\n[kitchensink: output truncated after ${this.maxBytes} bytes (--max-output)]\n`));
  }
}

/**
 * A call's output on its way to the batch stream: written as it comes (or held until the
 * result when `intermediateResults` is off). When Redis falls behind a flood of prints, the
 * interpreter's pipes pause, so the node's memory stays bounded and Python blocks in write().
 */
export class StreamedOutput {
  private readonly capped: CappedOutput;
  private readonly held: [OutputStream, Buffer][] = [];
  private inFlight = 0;
  private drained?: { promise: Promise<void>; resolve(): void };

  constructor(
    private readonly redis: Redis,
    private readonly streamKey: string,
    private readonly index: number,
    maxBytes: number,
    private readonly live: boolean,
  ) {
    this.capped = new CappedOutput(maxBytes, (stream, chunk) => this.emit(stream, chunk));
  }

  write(stream: OutputStream, chunk: Buffer): void | Promise<void> {
    return this.capped.write(stream, chunk);
  }

  /** Sends held output; the result goes after it on the same connection, so in order. */
  flush(): void {
    for (const [stream, chunk] of this.held.splice(0)) void this.send(stream, chunk);
  }

  private emit(stream: OutputStream, chunk: Buffer): void | Promise<void> {
    if (!this.live) {
      this.held.push([stream, Buffer.from(chunk)]);
      return;
    }
    return this.send(stream, chunk);
  }

  private send(stream: OutputStream, chunk: Buffer): void | Promise<void> {
    this.inFlight += chunk.length;
    void this.redis
      .xadd(this.streamKey, '*', 't', stream, 'i', this.index, 'd', chunk)
      .catch(() => {})
      .finally(() => {
        this.inFlight -= chunk.length;
        if (this.inFlight <= maxInFlightBytes / 2 && this.drained) {
          this.drained.resolve();
          this.drained = undefined;
        }
      });
    if (this.inFlight <= maxInFlightBytes) return;
    if (!this.drained) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.drained = { promise, resolve };
    }
    return this.drained.promise;
  }
}
