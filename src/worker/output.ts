import type { Redis } from 'ioredis';
import { config } from '../config.js';
import type { OutputStream } from './executor.js';


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
 * A call's output on its way to the batch stream. Chunks wait up to `coalesceMs` (or
 * `outputCoalesceBytes`) for more output, and go out as one entry per stream; whatever is still
 * waiting when the call ends rides in the same round trip as its result (`takeRest`). So a
 * quick call that prints costs one Redis command, not two, and a long one still streams.
 * With `live` off (`intermediateResults: false`) all output waits for the result. When Redis
 * falls behind a flood of prints, the interpreter's pipes pause, so the node's memory stays
 * bounded and Python blocks in write().
 */
export class StreamedOutput {
  private readonly capped: CappedOutput;
  private pending: [OutputStream, Buffer][] = [];
  private pendingBytes = 0;
  private timer?: NodeJS.Timeout;
  private inFlight = 0;
  private drained?: { promise: Promise<void>; resolve(): void };

  constructor(
    private readonly redis: Redis,
    private readonly streamKey: string,
    private readonly index: number,
    maxBytes: number,
    private readonly live: boolean,
    private readonly coalesceMs: number,
  ) {
    this.capped = new CappedOutput(maxBytes, (stream, chunk) => this.emit(stream, chunk));
  }

  write(stream: OutputStream, chunk: Buffer): void | Promise<void> {
    return this.capped.write(stream, chunk);
  }

  /**
   * The output that has not gone out yet, as `stream, chunk` pairs in order, for the result's
   * round trip; it goes after the output already sent, on the same connection.
   */
  takeRest(): (string | Buffer)[] {
    clearTimeout(this.timer);
    const rest = merged(this.pending).flat();
    this.pending = [];
    this.pendingBytes = 0;
    return rest;
  }

  private emit(stream: OutputStream, chunk: Buffer): void | Promise<void> {
    this.pending.push([stream, Buffer.from(chunk)]);
    this.pendingBytes += chunk.length;
    if (!this.live) return;
    if (this.pendingBytes >= config.outputCoalesceBytes) return this.sendPending();
    this.timer ??= setTimeout(() => void this.sendPending(), this.coalesceMs);
  }

  private sendPending(): void | Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const bytes = this.pendingBytes;
    for (const [stream, chunk] of merged(this.pending)) {
      void this.redis
        .xadd(this.streamKey, '*', 't', stream, 'i', this.index, 'd', chunk)
        .catch(() => {})
        .finally(() => this.sent(chunk.length));
    }
    this.pending = [];
    this.pendingBytes = 0;
    this.inFlight += bytes;
    if (this.inFlight <= config.outputInFlightBytes) return;
    if (!this.drained) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.drained = { promise, resolve };
    }
    return this.drained.promise;
  }

  private sent(bytes: number): void {
    this.inFlight -= bytes;
    if (this.inFlight <= config.outputInFlightBytes / 2 && this.drained) {
      this.drained.resolve();
      this.drained = undefined;
    }
  }
}

/** Consecutive chunks of the same stream joined: one stream entry each. */
function merged(chunks: [OutputStream, Buffer][]): [OutputStream, Buffer][] {
  const out: [OutputStream, Buffer][] = [];
  for (let k = 0; k < chunks.length; ) {
    let end = k + 1;
    while (end < chunks.length && chunks[end][0] === chunks[k][0]) end++;
    out.push([chunks[k][0], end === k + 1 ? chunks[k][1] : Buffer.concat(chunks.slice(k, end).map((c) => c[1]))]);
    k = end;
  }
  return out;
}
