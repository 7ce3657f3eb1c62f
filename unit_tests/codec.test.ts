import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { decode, encode, encodePayload, encodePieces, jsonSafe, Spliced } from '../src/codec.js';
import { NDArray, ndarray } from '../src/ndarray.js';
import { repoRoot } from '../integration_tests/harness.js';

/** Decodes with Python's msgpack the way the executor does, and returns repr() of the value. */
function pythonRepr(bytes: Buffer): string {
  return execFileSync('python3', ['-c', 'import sys; from kitchensink import wire; print(repr(wire.unpack(sys.stdin.buffer.read())))'], {
    input: bytes,
    env: { ...process.env, PYTHONPATH: `${repoRoot}/python` },
  })
    .toString()
    .trim();
}

describe('codec', function () {
  it('round-trips plain values, bytes and nested structures', function () {
    const value = { a: 1, b: 'two', c: [1.5, null, true], d: { e: new Uint8Array([1, 2, 3]) } };
    const back = decode<typeof value>(encode(value));
    assert.deepEqual(back.c, value.c);
    assert.deepEqual(Buffer.from(back.d.e), Buffer.from([1, 2, 3]));
  });

  it('keeps ints past 2^53 exact as BigInt and small ones as numbers', function () {
    assert.equal(decode(encode(2n ** 60n)), 2n ** 60n);
    assert.equal(decode(encode(-(2n ** 63n))), -(2n ** 63n));
    assert.equal(decode(encode(2 ** 40)), 2 ** 40);
    assert.equal(typeof decode(encode(12345)), 'number');
  });

  it('packs undefined as nil and never emits records', function () {
    const bytes = encode({ x: undefined, y: [{ k: 1 }, { k: 2 }] });
    assert.equal(pythonRepr(bytes), "{'x': None, 'y': [{'k': 1}, {'k': 2}]}");
  });

  it('packs typed arrays with their real bytes and decodes them as NDArrays', function () {
    const back = decode<NDArray<Float64Array>>(encode(new Float64Array([1.5, -2, 3.25])));
    assert.ok(back instanceof NDArray);
    assert.equal(back.dtype, '<f8');
    assert.deepEqual(back.shape, [3]);
    assert.ok(back.data instanceof Float64Array);
    assert.deepEqual(Array.from(back.data), [1.5, -2, 3.25]);
    assert.deepEqual(Array.from(decode<NDArray<Float64Array>>(encode(new Int32Array([7, -8]))).data), [7, -8]);
    // A view into a larger buffer packs only its own elements.
    const view = new Float64Array(new Float64Array([9, 1, 2, 9]).buffer, 8, 2);
    assert.deepEqual(Array.from(decode<NDArray<Float64Array>>(encode(view)).data), [1, 2]);
  });

  it('decodes an array as a view of the received bytes when they are aligned, else one copy', function () {
    const bytes = encode({ a: ndarray(new Float64Array([1, 2, 3, 4]), [2, 2]) });
    const elementsAt = bytes.indexOf(Buffer.from(new Float64Array([1]).buffer));
    // Place the message so the elements start at a multiple of 8: the view shares its memory.
    const store = new Uint8Array(bytes.length + 16);
    const start = (8 - (elementsAt % 8)) % 8;
    store.set(bytes, start);
    const aligned = decode<{ a: NDArray<Float64Array> }>(store.subarray(start, start + bytes.length)).a;
    assert.equal(aligned.data.buffer, store.buffer);
    assert.deepEqual(aligned.shape, [2, 2]);
    store.set(bytes, start + 1);
    const moved = decode<{ a: NDArray<Float64Array> }>(store.subarray(start + 1, start + 1 + bytes.length)).a;
    assert.notEqual(moved.data.buffer, store.buffer);
    assert.deepEqual(Array.from(moved.data), [1, 2, 3, 4]);
  });

  it('packs as pieces that read as the one message, big bytes and arrays left where they are', function () {
    const bytes = new Uint8Array(2 << 20).fill(7);
    const doubles = new Float64Array(300_000).map((_, k) => k / 2);
    const value = { a: 1, blob: new Spliced([bytes.subarray(0, 10), bytes.subarray(10)]), arrays: [ndarray(doubles, [1000, 300]), new Int8Array([1, -1])], z: 'end' };
    const pieces = encodePieces(value);
    assert.ok(pieces.some((p) => p.buffer === bytes.buffer), 'the bytes are a piece, not a copy');
    assert.ok(pieces.some((p) => p.buffer === doubles.buffer), 'the big array is a piece, not a copy');
    const back = decode<{ a: number; blob: Uint8Array; arrays: NDArray[]; z: string }>(Buffer.concat(pieces));
    assert.deepEqual([back.a, back.z, back.blob.length, back.blob[5]], [1, 'end', 2 << 20, 7]);
    assert.deepEqual(back.arrays[0].shape, [1000, 300]);
    assert.equal((back.arrays[0].data as Float64Array)[299_999], 299_999 / 2);
    assert.deepEqual(Array.from(back.arrays[1].data as Int8Array), [1, -1]);
    assert.deepEqual(encodePieces({ small: 1 }), [encode({ small: 1 })]);
    assert.throws(() => encode({ blob: new Spliced([bytes]) }), /packed by encodePieces\(\) only/);
  });

  it("puts a payload's big arrays after its msgpack, 64-byte aligned, for numpy to view where they arrived", function () {
    assert.equal(encodePayload([new Float64Array(10)], {})[0][0], 0x92, 'small arrays stay inside the msgpack');
    const doubles = Float64Array.from({ length: 3 * 65536 }, (_, k) => k / 4);
    const ints = Int32Array.from({ length: 300_000 }, (_, k) => -k);
    const pieces = encodePayload([ndarray(doubles, [3, 65536]), 'between', new Float32Array([1.5])], { ints });
    const payload = Buffer.concat(pieces);
    assert.equal(payload[0], 0xc1);
    // Python reads the payload into a bytearray (as the executor does) and checks every array.
    const report = execFileSync(
      'python3',
      [
        '-c',
        `import sys, numpy as np
from kitchensink import wire
payload = bytearray(sys.stdin.buffer.read())
start = np.frombuffer(payload, np.uint8).ctypes.data
(doubles, text, small), kwargs = wire.unpack(payload)
ints = kwargs["ints"]
for name, a in (("doubles", doubles), ("ints", ints)):
    print(name, a.dtype.str, a.shape, (a.ctypes.data - start) % 64, a.flags.writeable, float(a.sum()))
print(text, small.dtype.str, small.tolist(), doubles[2, 65535], ints[-1])`,
      ],
      { input: payload, env: { ...process.env, PYTHONPATH: `${repoRoot}/python` } },
    ).toString();
    const sum = (a: ArrayLike<number>) => Array.from(a).reduce((x, y) => x + y, 0);
    assert.equal(
      report,
      [
        `doubles <f8 (3, 65536) 0 False ${sum(doubles).toFixed(1)}`,
        `ints <i4 (300000,) 0 False ${sum(ints).toFixed(1)}`,
        `between <f4 [1.5] ${doubles[3 * 65536 - 1]} ${ints[299_999]}`,
        '',
      ].join('\n'),
    );
  });

  it('checks ndarray() shapes and dtypes', function () {
    assert.deepEqual(ndarray(new Float32Array(6), [2, 3]).shape, [2, 3]);
    assert.equal(ndarray(new Uint8Array(2), [2], '|b1').dtype, '|b1');
    assert.equal(ndarray(new Float64Array(4), [2], '<c16').size, 2);
    assert.throws(() => ndarray(new Float32Array(6), [4, 2]), /shape \[4, 2\] does not fit 6 elements of <f4/);
    assert.throws(() => ndarray(new Float32Array(6), [2, 3], '<f8'), /dtype "<f8" is not held by a Float32Array/);
    assert.throws(() => ndarray([1, 2] as unknown as Float64Array), /takes a TypedArray/);
  });

  it('is read by Python: bytes as bytes, big ints exact, typed arrays as numpy arrays', function () {
    assert.equal(pythonRepr(encode([new Uint8Array([0, 255]), 2n ** 62n, 'é'])), "[b'\\x00\\xff', 4611686018427387904, 'é']");
    assert.match(pythonRepr(encode(new Float64Array([1.5, 2]))), /array\(\[1\.5, 2\. *\]\)|'dtype': '<f8'/);
    assert.match(pythonRepr(encode(ndarray(new Int16Array([1, 2, 3, 4]), [2, 2]))), /array\(\[\[1, 2\],\s+\[3, 4\]\], dtype=int16\)|'dtype': '<i2'/);
  });

  it('turns bytes and BigInts into JSON-safe values', function () {
    assert.deepEqual(jsonSafe({ b: new Uint8Array([1]), n: 2n ** 60n }), { b: { $bytes: 'AQ==' }, n: '1152921504606846976' });
  });
});
