import { Spliced, spliceBytes } from '../codec.js';

/**
 * Cuts a byte stream into the interpreter's frames (4-byte big-endian length, then the body).
 * A frame of `spliceBytes` or more that spans chunks comes as `Spliced` views of them, never
 * copied (`resultPieces` reads a result out of it); a smaller one is copied at most once,
 * when it is complete: appending every chunk of a 64 MB result to what came before copied
 * gigabytes and took minutes.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;
  /** The length of the frame being read; -1 while its header is still to come. */
  private length = -1;

  /** The frames this chunk completes, in order. */
  push(chunk: Buffer): (Buffer | Spliced)[] {
    this.chunks.push(chunk);
    this.size += chunk.length;
    const frames: (Buffer | Spliced)[] = [];
    for (;;) {
      if (this.length < 0) {
        if (this.size < 4) break;
        this.length = this.take(4).readUInt32BE(0);
      }
      if (this.size < this.length) break;
      frames.push(this.length >= spliceBytes && this.chunks[0].length < this.length ? new Spliced(this.takePieces(this.length)) : this.take(this.length));
      this.length = -1;
    }
    return frames;
  }

  /** The next n bytes as views of the chunks that hold them. */
  private takePieces(n: number): Buffer[] {
    this.size -= n;
    const pieces: Buffer[] = [];
    for (let left = n; left > 0; ) {
      const chunk = this.chunks[0];
      const k = Math.min(chunk.length, left);
      pieces.push(chunk.subarray(0, k));
      left -= k;
      if (k === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(k);
    }
    return pieces;
  }

  /** The next n bytes: a view when one chunk holds them, else one copy. */
  private take(n: number): Buffer {
    const pieces = this.takePieces(n);
    if (pieces.length === 1) return pieces[0];
    const out = Buffer.allocUnsafeSlow(n);
    let at = 0;
    for (const piece of pieces) at += piece.copy(out, at);
    return out;
  }
}

/** The first `n` bytes of pieces (fewer if they hold fewer), copied. */
function head(pieces: Uint8Array[], n: number): Buffer {
  const out: Buffer[] = [];
  for (let k = 0, left = n; k < pieces.length && left > 0; k++) {
    out.push(Buffer.from(pieces[k].buffer, pieces[k].byteOffset, Math.min(left, pieces[k].byteLength)));
    left -= out[out.length - 1].length;
  }
  return Buffer.concat(out);
}

/** Views of bytes `start` to `end` of pieces. */
function slicePieces(pieces: Uint8Array[], start: number, end: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  for (const piece of pieces) {
    const from = Math.max(start - at, 0);
    const to = Math.min(end - at, piece.byteLength);
    if (from < to) out.push(piece.subarray(from, to));
    at += piece.byteLength;
    if (at >= end) break;
  }
  return out;
}

/** msgpack's `"result"`, as the interpreter's reply starts after its array header. */
const resultTag = Buffer.from([0xa6, ...Buffer.from('result')]);

/**
 * A big `["result", seq, value, marked]` reply read without joining it: `[seq, value's pieces,
 * marked]`, or undefined when the frame is laid out otherwise (the caller then decodes it
 * whole). The interpreter writes it so (`_send_result`): array of 4, the fixstr, seq as a
 * msgpack uint, the value as bin, then true or false.
 */
export function resultPieces(frame: Spliced): [number, Spliced, boolean] | undefined {
  const bytes = head(frame.pieces, 32);
  if (bytes[0] !== 0x94 || !bytes.subarray(1, 8).equals(resultTag)) return undefined;
  let at = 8;
  const uint = (tag: number): number | undefined => {
    if (tag < 0x80) return tag;
    const width = { 0xcc: 1, 0xcd: 2, 0xce: 4 }[tag];
    if (!width) return undefined;
    const value = bytes.readUIntBE(at, width);
    at += width;
    return value;
  };
  const seq = uint(bytes[at++]);
  const binWidth = { 0xc4: 1, 0xc5: 2, 0xc6: 4 }[bytes[at++]];
  if (seq === undefined || !binWidth) return undefined;
  const size = bytes.readUIntBE(at, binWidth);
  at += binWidth;
  const tail = slicePieces(frame.pieces, at + size, frame.byteLength);
  if (at + size + 1 !== frame.byteLength || (tail[0][0] !== 0xc2 && tail[0][0] !== 0xc3)) return undefined;
  return [seq, new Spliced(slicePieces(frame.pieces, at, at + size)), tail[0][0] === 0xc3];
}
