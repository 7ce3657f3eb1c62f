import assert from 'node:assert/strict';
import { Client, dobj, dr, du, NDArray, py, RemoteError, type AllOutcome } from '../src/index.js';
import { startNode, startRedis, stopCluster, type TestNode, type TestRedis } from './harness.js';

describe('zero-copy reads in Python, ndarray data, and the obj() cache', function () {
  let redis: TestRedis;
  let node: TestNode;
  let tight: TestNode;
  let client: Client;

  before(async function () {
    redis = await startRedis();
    [node, tight] = await Promise.all([startNode(redis.url, 'mapper', ['--num-workers', '2']), startNode(redis.url, 'tight', ['--data-cache-mb', '1'])]);
    client = new Client(node.url);
  });

  after(async function () {
    await stopCluster(redis, [node, tight], client);
  });

  it('saves a TypedArray as .npy (fmt ndarray) that Python maps read-only and TypeScript reads back', async function () {
    const values = new Float64Array(1000).map((_, k) => k);
    const data = await dobj(values, { client }).save({ url: 'arrays/ramp.npy' });
    assert.equal(data.fmt, 'ndarray');
    assert.equal((await client.dataInfo(['arrays/ramp.npy']))['arrays/ramp.npy'].fmt, 'ndarray');
    const seen = await client.call(py`
      def f(d):
          a = d.obj()
          return [type(a).__name__, str(a.dtype), list(a.shape), a.flags.writeable, float(a.sum())]`, [data]);
    assert.deepEqual(seen, ['memmap', 'float64', [1000], false, 499500]);
    const back = await du('arrays/ramp.npy', { client }).obj<NDArray<Float64Array>>();
    assert.deepEqual([back.dtype, back.shape, back.data[999]], ['<f8', [1000], 999]);
  });

  it('maps one file into every interpreter of a node: buffer() and array() copy nothing', async function () {
    const size = 64 * 1024 * 1024;
    const data = await dobj(new Float64Array(size / 8).fill(1), { client }).save({ url: 'arrays/ones.npy' });
    const measure = py`
      def f(d):
          def anon_kb():
              with open("/proc/self/status") as status:
                  return int(next(line for line in status if line.startswith("RssAnon:")).split()[1])
          before = anon_kb()
          view = d.buffer()
          total = float(d.array("<u1")[-8:].sum()) + float(d.obj().sum())
          grew = anon_kb() - before
          mapped = any(d.local_path() in line for line in open("/proc/self/maps"))
          return [view.readonly, view.nbytes, total, grew, mapped]`;
    const outcomes = await client.call<AllOutcome<[boolean, number, number, number, boolean]>[]>(measure, [data], {}, { on: 'all', host: 'mapper' });
    assert.equal(outcomes.length, 2);
    for (const outcome of outcomes) {
      assert.ok(outcome.ok, JSON.stringify(outcome));
      const [readonly, nbytes, total, grewKb, mapped] = outcome.value;
      assert.equal(readonly, true);
      assert.ok(nbytes > size && nbytes < size + 256, `the file holds the array and its header: ${nbytes}`);
      // The last double's bytes (1.0: ... 0xf0 0x3f) and the sum of the array.
      assert.equal(total, 0xf0 + 0x3f + size / 8);
      assert.ok(grewKb < 16 * 1024, `anonymous memory grew by ${grewKb} kB: the data was copied`);
      assert.equal(mapped, true);
    }
  });

  it('names a dtype and shape that do not fit the data', async function () {
    const raw = await dr(Buffer.alloc(10), { client }).save({ url: 'arrays/ten-bytes' });
    const error = await client.call(py`def f(d): return d.array("<f8").tolist()`, [raw]).catch((e: unknown) => e);
    assert.ok(error instanceof RemoteError);
    assert.match(error.message, /holds 10 bytes, not a whole number of float64 items \(8 bytes each\)/);
    const shaped = await client.call(py`def f(d): return d.array("<u1", (3, 4)).tolist()`, [raw]).catch((e: unknown) => e);
    assert.match((shaped as RemoteError).message, /shape \(3, 4\) of uint8 needs 12 bytes; data '\S+' holds 10/);
  });

  // Counts, in the object obj() gives, the calls that saw it: more than 1 once it is kept.
  const seenBy = py`
    def f(d):
        o = d.obj()
        o["calls"] = o.get("calls", 0) + 1
        return o["calls"]`;
  const counts = async (c: Client, data: unknown) => {
    const seen: number[] = [];
    for (let k = 0; k < 6; k++) seen.push(await c.call<number>(seenBy, [data], {}, { async: false }));
    return seen;
  };

  it('decodes obj() once per interpreter and data checksum, and shares it between calls (msgpack, json, pickle)', async function () {
    const small = await dobj({ rows: [1, 2, 3] }, { client }).save();
    // Six calls over two interpreters: each decodes once, then every call there sees the same object.
    assert.ok(Math.max(...(await counts(client, small))) >= 3, 'the object was decoded again');
    // Another url is another object.
    const other = await dobj({ rows: [1, 2, 3] }, { client }).save();
    assert.equal(Math.min(...(await counts(client, other))), 1);
    // The same url with other bytes (deleted, saved again) is decoded afresh.
    const url = small.dataUrl!;
    await small.delete();
    const again = await dobj({ rows: [4] }, { client }).save({ url });
    const fresh = await client.call<[number, number[]]>(py`
      def f(d):
          o = d.obj()
          return [o.get("calls", 0), o["rows"]]`, [again], {}, { async: false });
    assert.deepEqual(fresh, [0, [4]]);
  });

  it('keeps nothing bigger than --data-cache-mb', async function () {
    const tightClient = new Client(tight.url);
    try {
      const big = await dobj({ blob: new Uint8Array(2 * 1024 * 1024) }, { client: tightClient }).save();
      assert.deepEqual(await counts(tightClient, big), [1, 1, 1, 1, 1, 1]);
      const small = await dobj({ rows: [1] }, { client: tightClient }).save();
      assert.deepEqual(await counts(tightClient, small), [1, 2, 3, 4, 5, 6]);
    } finally {
      tightClient.close();
    }
  });
});
