import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { decode, encode, jsonSafe } from '../src/codec.js';
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

  it('packs typed arrays with their real bytes (not msgpackr 2.1.3 garbage)', function () {
    const doubles = new Float64Array([1.5, -2, 3.25]);
    const back = decode<Float64Array>(encode(doubles));
    assert.ok(back instanceof Float64Array);
    assert.deepEqual(Array.from(back), [1.5, -2, 3.25]);
    const ints = new Int32Array([7, -8]);
    assert.deepEqual(Array.from(decode<Int32Array>(encode(ints))), [7, -8]);
    // A view into a larger buffer packs only its own elements.
    const view = new Float64Array(new Float64Array([9, 1, 2, 9]).buffer, 8, 2);
    assert.deepEqual(Array.from(decode<Float64Array>(encode(view))), [1, 2]);
  });

  it('is read by Python: bytes as bytes, big ints exact, typed arrays as numpy arrays', function () {
    assert.equal(pythonRepr(encode([new Uint8Array([0, 255]), 2n ** 62n, 'é'])), "[b'\\x00\\xff', 4611686018427387904, 'é']");
    assert.match(pythonRepr(encode(new Float64Array([1.5, 2]))), /array\(\[1\.5, 2\. *\]\)|'dtype': '<f8'/);
  });

  it('turns bytes and BigInts into JSON-safe values', function () {
    assert.deepEqual(jsonSafe({ b: new Uint8Array([1]), n: 2n ** 60n }), { b: { $bytes: 'AQ==' }, n: '1152921504606846976' });
  });
});
