/**
 * Cuts a byte stream into the interpreter's frames (4-byte big-endian length, then the body).
 * Each frame's bytes are copied at most once, when the frame is complete: appending every
 * chunk of a 64 MB result to what came before copied gigabytes and took minutes.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;
  /** The length of the frame being read; -1 while its header is still to come. */
  private length = -1;

  /** The frames this chunk completes, in order. */
  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.size += chunk.length;
    const frames: Buffer[] = [];
    for (;;) {
      if (this.length < 0) {
        if (this.size < 4) break;
        this.length = this.take(4).readUInt32BE(0);
      }
      if (this.size < this.length) break;
      frames.push(this.take(this.length));
      this.length = -1;
    }
    return frames;
  }

  /** The next n bytes: a view when one chunk holds them, else one copy. */
  private take(n: number): Buffer {
    this.size -= n;
    const first = this.chunks[0];
    if (first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafeSlow(n);
    for (let at = 0; at < n; ) {
      const chunk = this.chunks[0];
      const k = Math.min(chunk.length, n - at);
      chunk.copy(out, at, 0, k);
      at += k;
      if (k === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(k);
    }
    return out;
  }
}
