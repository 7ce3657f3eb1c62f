import assert from 'node:assert/strict';
import { decode, encode, joined, Spliced } from '../src/codec.js';
import { FrameReader, resultPieces } from '../src/worker/frames.js';

/** A frame as the interpreter writes it: its length, then the body. */
function framed(body: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length);
  return Buffer.concat([header, body]);
}

/** Feeds bytes in chunks of `size`; answers the frames completed. */
function readAll(bytes: Buffer, size: number): (Buffer | Spliced)[] {
  const reader = new FrameReader();
  const frames: (Buffer | Spliced)[] = [];
  for (let at = 0; at < bytes.length; at += size) frames.push(...reader.push(bytes.subarray(at, at + size)));
  return frames;
}

describe('interpreter frames', function () {
  const value = encode(Buffer.alloc(3_000_000, 7));

  for (const seq of [5, 200, 70_000, 5_000_000]) {
    it(`reads a big result (seq ${seq}) out of the chunks it came in, without joining them`, function () {
      const [frame] = readAll(framed(encode(['result', seq, value, true])), 65_536);
      assert.ok(frame instanceof Spliced && frame.pieces.length > 1);
      const [readSeq, pieces, marked] = resultPieces(frame)!;
      assert.equal(readSeq, seq);
      assert.equal(marked, true);
      assert.ok(joined(pieces).equals(value));
    });
  }

  it('leaves to whole decoding a big frame laid out otherwise, and keeps small frames whole', function () {
    const frames = readAll(Buffer.concat([framed(encode(['error', 1, { message: 'x'.repeat(2_000_000) }, false])), framed(encode(['result', 2, Buffer.from([1]), false]))]), 65_536);
    assert.equal(frames.length, 2);
    assert.ok(frames[0] instanceof Spliced);
    assert.equal(resultPieces(frames[0]), undefined);
    assert.equal(decode<[string]>(joined(frames[0]))[0], 'error');
    assert.ok(Buffer.isBuffer(frames[1]));
    assert.deepEqual(decode(frames[1]), ['result', 2, Buffer.from([1]), false]);
  });
});
