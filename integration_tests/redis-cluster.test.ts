import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, dobj, py, RemoteError } from '../src/index.js';
import { Keys, parseTaskId } from '../src/keys.js';
import { Capture, rawRequest, runCli, spawnRedisServer, freePort, startNode, stopCluster, waitFor, waitsAnswered, type TestNode } from './harness.js';
import { startRedisCluster, type TestRedisCluster } from './redis-cluster.js';

const keys = new Keys('ks', true);

describe('Redis Cluster (redis-cluster://): three masters with a replica each', function () {
  this.timeout(120_000);
  let cluster: TestRedisCluster;
  let nodes: TestNode[] = [];
  let client: Client;
  let out: Capture;

  before(async function () {
    cluster = await startRedisCluster();
    // The client's node (shard1) does not serve `work`: a call killed there is the test's, not the client's.
    nodes = await Promise.all([startNode(cluster.url, 'shard1', ['--num-workers', '2']), startNode(cluster.url, 'shard2', ['--num-workers', '2', '--queue', 'work'])]);
    out = new Capture();
    client = new Client(nodes[0].url, { output: out });
  });

  after(async function () {
    await stopCluster(undefined, nodes, client);
    await cluster?.stop();
  });

  /** Which node holds the claim of `taskId` (runs it). */
  const runningOn = (taskId: string) => {
    const r = cluster.client();
    return waitFor(async () => (await r.get(keys.claim(taskId)))?.split('/')[0], `${taskId} to start`);
  };

  it('runs batches with their output, direct and ALL calls, and tracebacks; batches spread over the shards', async function () {
    const batchIds: string[] = [];
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 5; i++) client.bc(py`def f(i): print("call", i); return i * 2`, [round * 5 + i]);
      batchIds.push(parseTaskId((await client.execute())[0])!.batchId);
      assert.deepEqual(await client.br(), [0, 1, 2, 3, 4].map((i) => (round * 5 + i) * 2));
    }
    assert.match(out.text, /call 99/);
    const status = await runCli(['status', '--redis-connection', cluster.url]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /shard1[\s\S]*shard2|shard2[\s\S]*shard1/);
    const masters = new Set(await Promise.all(batchIds.map((b) => cluster.masterOf(keys.batchEvents(b)))));
    assert.ok(masters.size > 1, 'batches are on more than one master');
    assert.equal(await client.call('operator:add', [20, 22], {}, { async: false }), 42);
    const everywhere = await client.call('operator:add', [1, 1], {}, { on: 'all' });
    assert.equal((everywhere as unknown[]).length, 4, 'two nodes, two interpreters each');
    await assert.rejects(
      client.call(py`def f(): return 1 / 0`, []),
      (error: RemoteError) => error.pythonType === 'ZeroDivisionError' && /1 \/ 0/.test(error.traceback ?? ''),
    );
  });

  it('routes a call to the node holding its data, copies data between nodes, and finds it by glob', async function () {
    const onSecond = new Client(nodes[1].url, { output: new Capture() });
    try {
      const data = await dobj({ rows: [1, 2, 3] }, { client: onSecond }).save({ url: 'cluster/rows' });
      const here = py`
        import os
        def f(d): return [os.environ["KS_NODE_NAME"], sum(d.obj()["rows"])]`;
      assert.deepEqual(await client.call(here, [data]), ['shard2', 6], 'ran where the data is');
      assert.deepEqual(await client.call(here, [data], {}, { host: 'shard1' }), ['shard1', 6], 'copied to the node the call had to run on');
      assert.deepEqual(await client.pathSearch('cluster/*'), ['cluster/rows']);
      assert.deepEqual((await client.dataInfo([data.dataUrl!]))[data.dataUrl!].holders, ['shard1', 'shard2']);
    } finally {
      onSecond.close();
    }
  });

  it('cancels a running call, and re-runs the call of a node killed mid-call on another node', async function () {
    client.bc(py`
      import time
      def f(): time.sleep(30)`, [], {}, { queue: 'work' });
    const [cancelled] = await client.execute();
    await runningOn(cancelled);
    await client.cancel(cancelled);
    const [outcome] = await client.br({ collect: true });
    assert.equal((outcome as { error: RemoteError }).error.kind, 'cancelled');

    const spare = await startNode(cluster.url, 'shard3', ['--queue', 'work']);
    nodes.push(spare);
    client.bc(py`
      import os, time
      def f():
          time.sleep(2)
          return os.environ["KS_NODE_NAME"]`, [], {}, { queue: 'work' });
    const [taskId] = await client.execute();
    const victim = await runningOn(taskId);
    await nodes.find((n) => n.name === victim)!.kill();
    const [host] = await client.br<string>();
    assert.deepEqual([host, victim].sort(), ['shard2', 'shard3'], 'the other node of the queue ran it');
  });

  it('goes on when a master dies: what its replica had is kept, and calls queued and direct still run', async function () {
    const live = nodes.filter((n) => n.process.exitCode === null && n.process.signalCode === null);
    const c = new Client(live[0].url, { output: new Capture() });
    try {
      for (let i = 0; i < 10; i++) c.bc('operator:add', [i, 10]);
      const taskIds = await c.execute();
      assert.deepEqual(await c.br(), [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
      const master = await cluster.masterOf(keys.batchEvents(parseTaskId(taskIds[0])!.batchId));
      // The node answered the batch once a replica of each master had it.
      assert.ok((await waitsAnswered(master)) >= 1, 'the node asked the master to WAIT for its replica');
      // Results and everything else written so far have reached the replicas too (the README
      // says what Redis's asynchronous replication can lose of a master's last writes).
      await cluster.replicated();
      await cluster.kill(master);
      await waitFor(async () => (await cluster.masterOf(keys.batchEvents(parseTaskId(taskIds[0])!.batchId)).catch(() => master)) !== master, 'a replica to take over', 30_000);
      // Meanwhile nodes whose heartbeats could not be written answered 503; they serve again once they reach the new master.
      await waitFor(async () => (await fetch(`${live[0].url}/health`)).status === 200, 'the node to reach Redis again', 30_000);
      // The whole batch read again from its start: every result the replica had is still there.
      const { batchId } = parseTaskId(taskIds[0])!;
      const page = (await rawRequest(live[0].url, 'POST', '/api/v1/results', JSON.stringify({ batchId, cursor: '0-0', waitMs: 0 }))).json as unknown as { events: { t: string; i: number; value?: number }[] };
      const values = page.events.filter((e) => e.t === 'result').sort((a, b) => a.i - b.i).map((e) => e.value);
      assert.deepEqual(values, [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
      for (let i = 0; i < 10; i++) c.bc('operator:add', [i, 1]);
      await c.execute();
      assert.deepEqual(await c.br(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.equal(await c.call('operator:add', [2, 2], {}, { async: false }), 4);
    } finally {
      c.close();
    }
  });
});

describe('redis-cluster:// that names no cluster', function () {
  it('says in one line that a plain Redis is not a cluster, and that nothing answers', async function () {
    const dir = mkdtempSync(join(tmpdir(), 'ks-not-cluster-'));
    const port = await freePort();
    const plain = spawnRedisServer(['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]);
    try {
      await waitFor(async () => (await runCli(['status', '--redis-connection', `redis://127.0.0.1:${port}`])).code === 0, 'redis-server to answer');
      const started = await runCli(['start', '--datadir', join(dir, 'node'), '--redis-connection', `redis-cluster://127.0.0.1:${port}`, '--node-port', '0']);
      assert.equal(started.code, 1);
      assert.equal(started.stderr.trim().split('\n').length, 1, started.stderr);
      assert.match(started.stderr, /127\.0\.0\.1:\d+ is not part of a Redis Cluster \(cluster_enabled:0\): give redis:\/\/127\.0\.0\.1:\d+ for a single Redis$/m);
      await plain.stop();
      const silent = await runCli(['start', '--datadir', join(dir, 'node'), '--redis-connection', `redis-cluster://127.0.0.1:${port}`, '--node-port', '0']);
      assert.equal(silent.code, 1);
      assert.match(silent.stderr, /no Redis answers at redis-cluster:\/\/127\.0\.0\.1:\d+: 127\.0\.0\.1:\d+: .*ECONNREFUSED/);
    } finally {
      await plain.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
