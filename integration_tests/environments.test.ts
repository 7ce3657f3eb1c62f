import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, ndarray, py, RemoteError, type AllOutcome } from '../src/index.js';
import { startNode, startRedis, stopCluster, type TestNode, type TestRedis } from './harness.js';

interface EnvironmentInfo {
  name: string;
  queue: string;
  prefix: string;
  python: string;
  pythonVersion: string;
  workers: number;
}

/** A venv made as users make one: `lean` with msgpack only, `full` seeing the system's numpy. */
function makeVenvs(root: string): { lean: string; full: string } {
  const lean = join(root, 'lean');
  const full = join(root, 'full');
  execFileSync('python3', ['-m', 'venv', lean]);
  execFileSync(join(lean, 'bin', 'python'), ['-m', 'pip', 'install', '--retries', '0', '-q', 'msgpack'], { stdio: 'ignore' });
  execFileSync('python3', ['-m', 'venv', '--system-site-packages', full]);
  return { lean, full };
}

describe('environments: --env NAME=PYTHON and opts.env', function () {
  let redis: TestRedis;
  let node: TestNode;
  let plain: TestNode;
  let client: Client;
  let root: string;
  let venvs: { lean: string; full: string };

  before(async function () {
    root = realpathSync(mkdtempSync(join(tmpdir(), 'ks-venvs-')));
    venvs = makeVenvs(root);
    redis = await startRedis();
    [node, plain] = await Promise.all([
      startNode(redis.url, 'multi', ['--env', `lean=${venvs.lean}/bin/python`, '--env', `full=${venvs.full}/bin/python`]),
      startNode(redis.url, 'plain'),
    ]);
    client = new Client(node.url);
  });

  after(async function () {
    await stopCluster(redis, [node, plain], client);
    rmSync(root, { recursive: true, force: true });
  });

  const prefix = py`
    import sys
    def prefix(): return sys.prefix`;

  it("lists each environment's sys.prefix and Python version in /info", async function () {
    const info = (await (await fetch(`${node.url}/info`)).json()) as { environments: EnvironmentInfo[]; prefix: string };
    const byName = Object.fromEntries(info.environments.map((e) => [e.name, e]));
    assert.deepEqual(Object.keys(byName).sort(), ['full', 'lean']);
    assert.equal(byName.lean.prefix, venvs.lean);
    assert.equal(byName.full.prefix, venvs.full);
    assert.equal(byName.lean.queue, 'env.lean');
    assert.equal(byName.lean.workers, 1);
    assert.match(byName.lean.pythonVersion, /^3\.\d+\.\d+/);
    assert.notEqual(info.prefix, venvs.lean);
  });

  it('runs calls in the environment opts.env names, queued, direct, in batches and as eval', async function () {
    assert.equal(await client.call(prefix, [], {}, { env: 'lean' }), venvs.lean);
    assert.equal(await client.call(prefix, [], {}, { env: 'full', async: false }), venvs.full);
    assert.notEqual(await client.call(prefix), venvs.lean);
    client.bc(prefix, [], {}, { env: 'lean' });
    client.bc(prefix, [], {}, { env: 'full' });
    await client.execute();
    assert.deepEqual(await client.br(), [venvs.lean, venvs.full]);
    assert.equal(await client.eval('__import__("sys").prefix', {}, { env: 'full' }), venvs.full);
  });

  it('runs everything but numpy where numpy is missing, and numpy where it is there', async function () {
    const mean = py`
      def mean(a):
          import numpy
          return float(numpy.asarray(a).mean())`;
    assert.equal(await client.call(mean, [[1, 2, 3]], {}, { env: 'full' }), 2);
    await assert.rejects(client.call(mean, [[1, 2, 3]], {}, { env: 'lean' }), (error: RemoteError) => error.pythonType === 'ModuleNotFoundError');
    // An array sent to an interpreter without numpy arrives as {dtype, shape, data}.
    const seen = await client.call(py`def f(a): return [a["dtype"], a["shape"], len(a["data"])]`, [ndarray(new Float64Array([1, 2]))], {}, { env: 'lean' });
    assert.deepEqual(seen, ['<f8', [2], 16]);
    // A big one too (it travels after the payload's msgpack).
    const big = await client.call(py`def f(a): return [a["dtype"], a["shape"], len(a["data"]), a["data"][8:16]]`, [ndarray(new Float64Array(200_000).fill(2), [2, 100_000])], {}, { env: 'lean' });
    assert.deepEqual(big, ['<f8', [2, 100_000], 1_600_000, Buffer.from(new Float64Array([2]).buffer)]);
    assert.deepEqual(await client.call(py`def f(x): return {"x": x, "b": b"\x01"}`, [5], {}, { env: 'lean' }), { x: 5, b: Buffer.from([1]) });
  });

  it("runs on: 'all' over one environment's interpreters only", async function () {
    const outcomes = await client.call<AllOutcome<string>[]>(prefix, [], {}, { on: 'all', env: 'lean' });
    assert.deepEqual(
      outcomes.map((o) => [o.host, o.ok && o.value]),
      [['multi', venvs.lean]],
    );
  });

  it('refuses an unknown environment naming the known ones, and env beside queue', async function () {
    const unknown = await client.call(prefix, [], {}, { env: 'gpu' }).catch((e: unknown) => e);
    assert.ok(unknown instanceof RemoteError);
    assert.equal(unknown.kind, 'rejected');
    assert.match(unknown.message, /no live node has environment "gpu" \(ks start --env gpu=PYTHON\); the live nodes have: full, lean/);
    const here = await new Client(plain.url).call(prefix, [], {}, { env: 'lean', async: false }).catch((e: unknown) => e);
    assert.ok(here instanceof RemoteError);
    assert.match(here.message, /this node has no environment "lean": it was started without --env/);
    await assert.rejects(client.call(prefix, [], {}, { env: 'lean', queue: 'default' }), /give env or queue, not both/);
  });

  it('stops ks start when an environment cannot start, naming it', async function () {
    await assert.rejects(startNode(redis.url, 'broken', ['--env', 'gone=/nonexistent/python']), /--env gone=\/nonexistent\/python: /);
  });
});
