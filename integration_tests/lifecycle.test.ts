import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { Client, py } from '../src/index.js';
import { withHugePages } from '../src/worker/executor.js';
import { Capture, freePort, repoRoot, startNode, startRedis, testPythonPath, waitFor, type TestRedis } from './harness.js';

/** Pids of the processes in a process group. */
function groupMembers(pgid: number): number[] {
  const out = execFileSync('ps', ['-eo', 'pid=,pgid=']).toString();
  return out
    .trim()
    .split('\n')
    .map((l) => l.trim().split(/\s+/).map(Number))
    .filter(([, g]) => g === pgid)
    .map(([p]) => p);
}

describe('node lifecycle', function () {
  let redis: TestRedis;

  before(async function () {
    redis = await startRedis();
  });
  after(async function () {
    await redis?.stop();
  });

  it('finishes a running call on SIGTERM, deregisters and leaves no child behind', async function () {
    const node = await startNode(redis.url, 'leaving');
    const client = new Client(node.url, { output: new Capture() });
    try {
      client.bc(py`
        import time, subprocess
        def f():
            subprocess.Popen(["sleep", "31.5"])
            time.sleep(1)
            return "finished"`);
      await client.execute();
      const r = redis.client();
      await waitFor(async () => (await r.keys('ks:claim:*')).length > 0, 'the call to start');
      const pgid = node.process.pid!;
      process.kill(pgid, 'SIGTERM');
      assert.deepEqual(await client.br(), ['finished']);
      await waitFor(() => node.process.exitCode !== null, 'the node to exit');
      assert.equal(node.process.exitCode, 0);
      assert.equal(await r.hexists('ks:hosts', 'leaving'), 0);
      assert.equal(await r.exists('ks:alive:leaving'), 0);
      await waitFor(() => groupMembers(pgid).length === 0, 'every child of the node to be gone');
      // Interpreters run in process groups of their own; what they started goes with them.
      await waitFor(() => !execFileSync('ps', ['-eo', 'args=']).toString().includes('sleep 31.5'), 'the call\'s subprocess to be gone');
    } finally {
      client.close();
      await node.kill();
    }
  });

  it('does not wait at stop for connections that carry no request (one never used, one left by an aborted feed)', async function () {
    const node = await startNode(redis.url, 'unused-connections');
    const idle = connect(Number(new URL(node.url).port), '127.0.0.1');
    try {
      await new Promise((resolve, reject) => idle.once('connect', resolve).once('error', reject));
      const viewer = new AbortController();
      const feed = await fetch(`${node.url}/api/v1/events`, { signal: viewer.signal });
      await feed.body!.getReader().read();
      viewer.abort();
      process.kill(node.process.pid!, 'SIGTERM');
      await waitFor(() => node.process.exitCode !== null, 'the node to exit');
      assert.equal(node.process.exitCode, 0);
      assert.doesNotMatch(node.logs(), /closing the web server: gave up/);
      assert.ok(idle.destroyed || idle.readableEnded || (await new Promise((resolve) => idle.once('close', () => resolve(true)))), 'the unused connection was closed by the node');
    } finally {
      idle.destroy();
      await node.kill();
    }
  });

  it('stops within bounded time even when Redis is gone', async function () {
    const ownRedis = await startRedis();
    const node = await startNode(ownRedis.url, 'orphan');
    try {
      await ownRedis.stop();
      process.kill(node.process.pid!, 'SIGTERM');
      await waitFor(() => node.process.exitCode !== null, 'the node to exit without Redis', 20_000);
      assert.equal(node.process.exitCode, 0);
      assert.match(node.logs(), /deregistering: gave up after/);
    } finally {
      await node.kill();
    }
  });

  it('answers 503 "starting", never a hang, while its interpreters start', async function () {
    const port = await freePort();
    const datadir = mkdtempSync(join(tmpdir(), 'ks-starting-'));
    const release = join(datadir, 'release');
    const child = spawn(
      process.execPath,
      [join(repoRoot, 'dist/node/cli.js'), 'start', '--no-redis', '--redis-connection', redis.url, '--datadir', datadir, '--node-port', String(port), '--num-workers', '1', '--module', 'kstest_held_import'],
      { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, PYTHONPATH: testPythonPath, KSTEST_RELEASE: release } },
    );
    let logs = '';
    child.stdout!.on('data', (c: Buffer) => (logs += c));
    child.stderr!.on('data', (c: Buffer) => (logs += c));
    const url = `http://127.0.0.1:${port}`;
    try {
      // The port answers once bound; the interpreter is held in its --module import meanwhile.
      const health = await waitFor(() => fetch(`${url}/health`).catch(() => undefined), 'the port to answer');
      assert.equal(health.status, 503);
      assert.equal(health.headers.get('retry-after'), '1');
      assert.equal(((await health.json()) as { error: string }).error, 'starting');
      const client = new Client(url, { output: new Capture() });
      const early = await client.call('operator:add', [2, 3], {}, { async: false }).catch((e: Error) => e);
      assert.ok(early instanceof Error && /503 starting/.test(early.message), String(early));
      assert.doesNotMatch(logs, /ready at/);
      writeFileSync(release, '');
      await waitFor(() => /ready at/.test(logs), 'the node to be ready');
      assert.equal((await fetch(`${url}/health`)).status, 200);
      assert.equal(await client.call('operator:add', [2, 3]), 5);
      client.close();
    } finally {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
      rmSync(datadir, { recursive: true, force: true });
    }
  });

  it('starts its own redis-server when none answers, and stops it on exit', async function () {
    const port = await freePort();
    const datadir = mkdtempSync(join(tmpdir(), 'ks-own-redis-'));
    const child = spawn(process.execPath, [join(repoRoot, 'dist/node/cli.js'), 'start', '--datadir', datadir, '--redis-connection', `redis://127.0.0.1:${port}`, '--node-port', '0', '--num-workers', '1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let logs = '';
    child.stdout!.on('data', (c: Buffer) => (logs += c));
    child.stderr!.on('data', (c: Buffer) => (logs += c));
    try {
      const url = await waitFor(() => /ready at (\S+)/.exec(logs)?.[1], 'the node to start');
      assert.match(logs, /starting redis-server/);
      const client = new Client(url, { output: new Capture() });
      assert.equal(await client.call('operator:add', [2, 3]), 5);
      client.close();
      const redisPids = () => execFileSync('ps', ['-eo', 'pid=,args=']).toString().split('\n').filter((l) => l.includes(`redis-server 127.0.0.1:${port}`));
      assert.equal(redisPids().length, 1);
      process.kill(child.pid!, 'SIGTERM');
      await waitFor(() => child.exitCode !== null, 'the node to exit');
      await waitFor(() => redisPids().length === 0, 'its redis-server to stop');
    } finally {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
      rmSync(datadir, { recursive: true, force: true });
    }
  });

  it('recycles an interpreter after --max-requests calls', async function () {
    const node = await startNode(redis.url, 'recycler', ['--max-requests', '2']);
    const client = new Client(node.url, { output: new Capture() });
    try {
      const pids: number[] = [];
      for (let k = 0; k < 6; k++) pids.push(await client.call<number>('os:getpid', [], {}, { host: 'recycler' }));
      assert.equal(new Set(pids).size, 3, `pids ${pids.join(',')}`);
      assert.equal(pids[0], pids[1]);
      assert.notEqual(pids[1], pids[2]);
    } finally {
      client.close();
      await node.stop();
    }
  });

  it('runs with the memory settings of its #! line, which its interpreters do not inherit, and reports memory', async function () {
    const node = await startNode(redis.url, 'frugal');
    const client = new Client(node.url, { output: new Capture() });
    try {
      const cmdline = readFileSync(`/proc/${node.process.pid}/cmdline`, 'utf8').split('\0');
      assert.ok(cmdline.includes('--max-semi-space-size=2'), cmdline.join(' '));
      assert.match(readFileSync(`/proc/${node.process.pid}/environ`, 'utf8'), /(^|\0)MALLOC_ARENA_MAX=1\0/);
      const seen = await client.call(py`
        import os
        def env(): return [os.environ.get("MALLOC_ARENA_MAX"), os.environ.get("KS_NODE_MALLOC"), os.environ.get("GLIBC_TUNABLES")]`);
      // Interpreters get huge pages for large allocations instead (a 256 MB read: 3 x faster).
      assert.deepEqual(seen, [null, null, withHugePages(process.env.GLIBC_TUNABLES)]);
      const metrics = await (await fetch(`${node.url}/metrics`)).text();
      for (const gauge of ['process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_heap_size_total_bytes', 'nodejs_external_memory_bytes']) {
        const value = Number(new RegExp(`^${gauge}\\{node="frugal"\\} (\\d+)$`, 'm').exec(metrics)?.[1]);
        assert.ok(value > 0, `${gauge} in:\n${metrics}`);
      }
    } finally {
      client.close();
      await node.stop();
    }
  });

  it('refuses to start with a --module that does not import, and says why', async function () {
    const error = await startNode(redis.url, 'badmodule', ['--module', 'no_such_module_here']).catch((e: Error) => e);
    assert.ok(error instanceof Error);
    assert.match(error.message, /no_such_module_here/);
  });

  it('kills a call that runs past its timeout and serves again', async function () {
    const node = await startNode(redis.url, 'timer');
    const client = new Client(node.url, { output: new Capture() });
    try {
      const error = await client.call(py`
        def f():
            while True: pass`, [], {}, { timeout: 0.5, host: 'timer' }).catch((e: unknown) => e);
      assert.equal((error as { kind: string }).kind, 'timeout');
      assert.equal(await client.call('operator:add', [1, 1], {}, { host: 'timer' }), 2);
    } finally {
      client.close();
      await node.stop();
    }
  });
});
