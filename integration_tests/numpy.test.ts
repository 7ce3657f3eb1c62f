import assert from 'node:assert/strict';
import { Client, NDArray, ndarray, py, RemoteError, type DataFrame, type Series } from '../src/index.js';
import { startNode, startRedis, stopCluster, type TestNode, type TestRedis } from './harness.js';

/** Each numeric dtype: what Python makes of `np.arange(6).reshape(2, 3)`, and what TypeScript reads. */
const dtypes: [dtype: string, numpy: string, Class: new (n: number) => ArrayLike<unknown>, elements: unknown[]][] = [
  ['|b1', 'bool', Uint8Array, [0, 1, 1, 1, 1, 1]],
  ['|u1', 'uint8', Uint8Array, [0, 1, 2, 3, 4, 5]],
  ['|i1', 'int8', Int8Array, [0, 1, 2, 3, 4, 5]],
  ['<u2', 'uint16', Uint16Array, [0, 1, 2, 3, 4, 5]],
  ['<i2', 'int16', Int16Array, [0, 1, 2, 3, 4, 5]],
  ['<u4', 'uint32', Uint32Array, [0, 1, 2, 3, 4, 5]],
  ['<i4', 'int32', Int32Array, [0, 1, 2, 3, 4, 5]],
  ['<u8', 'uint64', BigUint64Array, [0n, 1n, 2n, 3n, 4n, 5n]],
  ['<i8', 'int64', BigInt64Array, [0n, 1n, 2n, 3n, 4n, 5n]],
  // float16 arrives as its bits: 0, 1, 2, 3, 4, 5 in IEEE half precision.
  ['<f2', 'float16', Uint16Array, [0, 0x3c00, 0x4000, 0x4200, 0x4400, 0x4500]],
  ['<f4', 'float32', Float32Array, [0, 1, 2, 3, 4, 5]],
  ['<f8', 'float64', Float64Array, [0, 1, 2, 3, 4, 5]],
  // complex: (re, im) pairs.
  ['<c8', 'complex64', Float32Array, [0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0]],
  ['<c16', 'complex128', Float64Array, [0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0]],
  ['<M8[s]', 'datetime64[s]', BigInt64Array, [0n, 1n, 2n, 3n, 4n, 5n]],
  ['<m8[ms]', 'timedelta64[ms]', BigInt64Array, [0n, 1n, 2n, 3n, 4n, 5n]],
];

describe('numpy arrays and pandas frames between Python and TypeScript', function () {
  let redis: TestRedis;
  let node: TestNode;
  let client: Client;

  before(async function () {
    redis = await startRedis();
    node = await startNode(redis.url, 'numpy');
    client = new Client(node.url);
  });

  after(async function () {
    await stopCluster(redis, [node], client);
  });

  it('returns every numeric dtype as an NDArray whose data is the right TypedArray', async function () {
    const arrays = await client.call<NDArray[]>(
      py`
      import numpy as np
      def f(names):
          return [np.arange(6).astype(name).reshape(2, 3) for name in names]`,
      [dtypes.map(([, numpy]) => numpy)],
    );
    for (const [k, [dtype, , Class, elements]] of dtypes.entries()) {
      const array = arrays[k];
      assert.ok(array instanceof NDArray, dtype);
      assert.equal(array.dtype, dtype);
      assert.deepEqual(array.shape, [2, 3], dtype);
      assert.ok(array.data instanceof Class, `${dtype} arrives in a ${array.data.constructor.name}`);
      assert.deepEqual(Array.from(array.data as ArrayLike<unknown>), elements, dtype);
    }
  });

  it('makes Fortran-ordered, strided, big-endian and 0-d arrays C-contiguous little-endian', async function () {
    const [fortran, strided, big, scalar] = await client.call<NDArray<Float64Array>[]>(py`
      import numpy as np
      def f():
          a = np.asfortranarray(np.arange(6.0).reshape(2, 3))
          return [a, np.arange(10.0)[::3], np.arange(3, dtype=">f8"), np.array(7.5)]`);
    assert.deepEqual([fortran.shape, Array.from(fortran.data)], [[2, 3], [0, 1, 2, 3, 4, 5]]);
    assert.deepEqual(Array.from(strided.data), [0, 3, 6, 9]);
    assert.deepEqual([big.dtype, Array.from(big.data)], ['<f8', [0, 1, 2]]);
    assert.deepEqual([scalar.shape, scalar.size, Array.from(scalar.data)], [[], 1, [7.5]]);
  });

  it('sends ndarray() to Python as a read-only numpy array over the received bytes', async function () {
    const seen = await client.call<[string, number[], number, boolean, boolean]>(
      py`
      def f(a):
          return [str(a.dtype), list(a.shape), float(a.sum()), a.flags.writeable, a.base is not None]`,
      [ndarray(new Float32Array([1, 2, 3, 4, 5, 6]), [3, 2])],
    );
    assert.deepEqual(seen, ['float32', [3, 2], 21, false, true]);
    const flags = await client.call<string[]>(
      py`
      def f(b, h, c):
          return [str(b.dtype), str(b.tolist()), str(h.dtype), str(h.tolist()), str(c.tolist())]`,
      [ndarray(new Uint8Array([1, 0]), [2], '|b1'), ndarray(new Uint16Array([0x3c00]), [1], '<f2'), ndarray(new Float64Array([1, 2]), [1], '<c16')],
    );
    assert.deepEqual(flags, ['bool', '[True, False]', 'float16', '[1.0]', '[(1+2j)]']);
  });

  it('round-trips an array Python receives and returns, in a batch of calls', async function () {
    const twice = py`def f(a): return a * 2`;
    client.bc(twice, [ndarray(new Int32Array([1, 2, 3]))]);
    client.bc(twice, [ndarray(new Float64Array([0.5, 1]), [1, 2])]);
    await client.execute();
    const results = await client.br<NDArray>();
    assert.deepEqual([results[0].dtype, Array.from(results[0].data as Int32Array)], ['<i4', [2, 4, 6]]);
    assert.deepEqual([results[1].shape, Array.from(results[1].data as Float64Array)], [[1, 2], [1, 2]]);
  });

  it('carries arrays of megabytes both ways, queued and direct, written from where they are', async function () {
    // 2 M doubles (16 MB): over the size that is spliced rather than copied, on every hop.
    const big = new Float64Array(2 * 1024 * 1024).map((_, k) => k);
    // Where `a` lives: the payload as read from the pipe (a bytearray), not a copy of it.
    const reverse = py`
      import numpy as np
      def reverse(a, tag):
          base = a
          while isinstance(base, np.ndarray):
              base = base.base
          return [[tag, a.flags.writeable, type(base.obj).__name__], a[::-1], np.arange(3)]`;
    for (const opts of [{}, { async: false }]) {
      const [tag, back, small] = await client.call<[unknown[], NDArray<Float64Array>, NDArray]>(reverse, [ndarray(big), 'ok'], {}, opts);
      assert.deepEqual(tag, ['ok', false, 'bytearray']);
      assert.equal(back.data.length, big.length);
      assert.deepEqual([back.data[0], back.data[big.length - 1]], [big.length - 1, 0]);
      assert.equal(back.data.reduce((sum, x) => sum + x, 0), big.reduce((sum, x) => sum + x, 0));
      assert.deepEqual(small.shape, [3]);
    }
    // Big bytes too (a direct call's big payload follows its msgpack to the node).
    const bytes = Buffer.alloc(3 * 1024 * 1024, 7);
    bytes.write('head');
    const ends = py`def ends(b, n): return [len(b), b[:4], b[-2:], n]`;
    assert.deepEqual(await client.call(ends, [bytes, 1], {}, { async: false }), [bytes.length, Buffer.from('head'), Buffer.from([7, 7]), 1]);
  });

  it('hands big arrays of any dtype and shape to TypeScript as views of the answer, not copies', async function () {
    const arrays = py`
      import numpy as np
      def arrays():
          return {"tag": "odd length", "f8": np.ones((1024, 257)), "c16": np.ones((3, 50000), dtype="c16"),
                  "i2": np.arange(900000, dtype="i2").reshape(300, 3000), "M8": np.zeros(200000, dtype="M8[ns]")}`;
    const got = await client.call<Record<string, NDArray>>(arrays, [], {}, { async: false });
    for (const name of ['f8', 'c16', 'i2', 'M8']) {
      const { data } = got[name];
      // A copy would own a buffer of exactly its own size; a view shares the answer's.
      assert.ok(data.buffer.byteLength > data.byteLength, `${name} was copied`);
    }
    assert.deepEqual(got.i2.shape, [300, 3000]);
    assert.equal((got.i2.data as Int16Array)[899_999], 899_999 % 65536 > 32767 ? (899_999 % 65536) - 65536 : 899_999 % 65536);
    assert.deepEqual([got.c16.shape, (got.c16.data as Float64Array).length], [[3, 50000], 300_000]);
  });

  it('returns a DataFrame column by column: numbers as NDArrays, the rest as lists with null', async function () {
    const frame = await client.call<DataFrame>(py`
      import numpy as np, pandas as pd
      def f():
          return pd.DataFrame({
              "x": [1, 2],
              "name": ["a", None],
              "when": pd.to_datetime(["2020-01-01", "2020-01-02"]).astype("datetime64[s]"),
              "kind": pd.Categorical(["u", "v"]),
              "count": pd.array([3, None], dtype="Int64"),
          }, index=[10, 20])`);
    assert.deepEqual(frame.columns, ['x', 'name', 'when', 'kind', 'count']);
    const { x, name, when, kind, count } = frame.data as Record<string, NDArray | unknown[]>;
    assert.deepEqual([(x as NDArray).dtype, Array.from((x as NDArray<BigInt64Array>).data)], ['<i8', [1n, 2n]]);
    assert.deepEqual(Array.from((frame.index as NDArray<BigInt64Array>).data), [10n, 20n]);
    assert.deepEqual(name, ['a', null]);
    assert.deepEqual([(when as NDArray).dtype, Array.from((when as NDArray<BigInt64Array>).data)], ['<M8[s]', [1577836800n, 1577923200n]]);
    assert.deepEqual(kind, ['u', 'v']);
    assert.deepEqual(count, [3, null]);
    const series = await client.call<Series>(py`
      import pandas as pd
      def f(): return pd.Series([1.5, 2.5], name="price")`);
    assert.deepEqual([series.name, Array.from((series.data as NDArray<Float64Array>).data)], ['price', [1.5, 2.5]]);
  });

  it('refuses a DataFrame it cannot send, naming why', async function () {
    const error = await client.call(py`
      import pandas as pd
      def f(): return pd.DataFrame([[1, 2]], columns=["a", "a"])`).catch((e: unknown) => e);
    assert.ok(error instanceof RemoteError);
    assert.match(error.message, /repeated column names/);
  });
});
