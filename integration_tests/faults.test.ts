import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Client, dr, NodeRequestError, py, RemoteError } from '../src/index.js';
import { parseTaskId } from '../src/keys.js';
import { dataPath } from '../src/node-url.js';
import { Capture, rawRequest, startNode, startRedis, stopCluster, testKeys, waitFor, type TestNode, type TestRedis } from './harness.js';

/** The host whose claim holds a task, once one does. */
function runningOn(redis: TestRedis, taskId: string): Promise<string> {
  const r = redis.client();
  return waitFor(async () => (await r.get(testKeys.claim(taskId)))?.split('/')[0], `${taskId} to start`);
}

/** The end event of each of a batch's first `calls` calls, read through the node at `url` (plain JSON). */
async function batchEnds(url: string, taskId: string, calls: number, timeoutMs: number): Promise<Map<number, { t: string; i: number; h?: string; value?: unknown }>> {
  const { batchId } = parseTaskId(taskId)!;
  const ends = new Map<number, { t: string; i: number; h?: string; value?: unknown }>();
  let cursor = '0-0';
  await waitFor(
    async () => {
      const reply = await rawRequest(url, 'POST', '/api/v1/results', JSON.stringify({ batchId, cursor, waitMs: 1000 }));
      const page = reply.json as unknown as { cursor: string; events: { t: string; i: number; h?: string; value?: unknown }[] };
      cursor = page.cursor;
      for (const e of page.events) if (!['started', 'stdout', 'stderr'].includes(e.t)) ends.set(e.i, e);
      return ends.size >= calls;
    },
    `the calls of ${batchId} to end`,
    timeoutMs,
  );
  return ends;
}

// A node killed with -9 takes its heartbeat with it: what it ran is re-run elsewhere,
// what only it could run ends `lost`, and no client waits forever.
describe('dead nodes', function () {
  this.timeout(120_000);
  let redis: TestRedis;
  let nodes: TestNode[] = [];
  let client: Client;

  before(async function () {
    redis = await startRedis();
    // The client talks to node1; calls of the queue 'work' run on node2, node3 or node4 only.
    nodes = await Promise.all([
      startNode(redis.url, 'node1'),
      ...['node2', 'node3', 'node4'].map((name) => startNode(redis.url, name, ['--queue', 'work'])),
    ]);
    client = new Client(nodes[0].url, { output: new Capture() });
  });

  after(async function () {
    await stopCluster(redis, nodes, client);
  });

  it('re-runs the call of a node killed mid-call on another node', async function () {
    client.bc(py`
      import os, time
      def f():
          time.sleep(2)
          return os.environ["KS_NODE_NAME"]`, [], {}, { queue: 'work' });
    const [taskId] = await client.execute();
    const victim = await runningOn(redis, taskId);
    await nodes.find((n) => n.name === victim)!.kill();
    const [host] = await client.br<string>();
    assert.notEqual(host, victim, 'another node of the queue ran it');
    assert.match(host, /^node[234]$/);
  });

  it('says what was lost when Redis restarts without persistence', async function () {
    const bare = await startRedis([], { single: true });
    const node = await startNode(bare.url, 'forgetful');
    const forgetful = new Client(node.url, { output: new Capture() });
    try {
      // Long enough to outlast the restart: a call that ends after it writes its result into
      // the fresh Redis, and br() would then find it (seen once under load with 2 s).
      forgetful.bc(py`
        import time
        def f(): time.sleep(6)`);
      await forgetful.execute();
      await bare.restart();
      const error = await forgetful.br().catch((e: unknown) => e);
      assert.ok(error instanceof NodeRequestError && error.status === 404, String(error));
      assert.match(error.detail, /Redis restarted without persistence/);
      await waitFor(() => /Redis no longer knew this host/.test(node.logs()), 'the node to say Redis forgot it');
      assert.equal(await forgetful.call('operator:add', [2, 3]), 5, 'the node serves again');
    } finally {
      forgetful.close();
      await node.stop();
      await bare.stop();
    }
  });

  it('ends calls pinned to a killed node lost, runs those routed to it by their data on another, and forgets the node', async function () {
    // Nodes still running (the previous test killed one; its heartbeat may linger for seconds).
    const [victim, survivor] = nodes.filter((n) => n.name !== 'node1' && n.process.exitCode === null && n.process.signalCode === null).map((n) => n.name);
    // The datum is on node1 (which does not serve 'work') and on the victim: under a 100 kB
    // threshold, a 'work' call reading it is routed to the victim alone.
    const datum = await dr(randomBytes(1_000_000), { client }).save({ host: 'node1' });
    const replicated = await fetch(`${nodes.find((n) => n.name === victim)!.url}/api/v1/data/${datum.dataUrl}/replicate`, { method: 'POST' });
    assert.equal(replicated.status, 200);
    const routing = new Client(nodes[0].url, { output: new Capture(), dataThreshold: 100_000 });
    routing.bc(py`
      import os, time
      def f(d, victim):
          d.local_path()
          if os.environ["KS_NODE_NAME"] == victim:
              time.sleep(60)  # outlives the kill
          return os.environ["KS_NODE_NAME"]`, [datum, victim], {}, { queue: 'work' });
    const [routed] = await routing.execute();
    assert.equal(await runningOn(redis, routed), victim);
    // Queued behind it on the victim's one interpreter.
    client.bc(py`
      import time
      def f(): time.sleep(60)`, [], {}, { host: victim });
    client.bc('operator:add', [1, 2], {}, { host: victim });
    await client.execute();
    await nodes.find((n) => n.name === victim)!.kill();
    try {
      assert.deepEqual(await routing.br(), [survivor], 'the routed call ran on the live node of its queue, copying its datum from node1');
    } finally {
      routing.close();
    }
    const outcomes = await client.br({ collect: true });
    for (const outcome of outcomes) {
      assert.equal(outcome.ok, false);
      const error = (outcome as { error: RemoteError }).error;
      assert.equal(error.kind, 'lost');
      assert.match(error.message, new RegExp(victim));
    }
    const r = redis.client();
    // The sweeper ends the calls first, then drops the queue and the host's entry.
    await waitFor(async () => (await r.hexists(testKeys.hosts, victim)) === 0, 'the dead host to be forgotten');
    assert.ok(!(await client.hosts()).some((h) => h.name === victim));
    assert.equal(await client.call('operator:add', [2, 2]), 4, 'the cluster still serves');
  });
});

// Data a node copies from another comes over HTTP; the holder may die with the copy half done.
describe('a holder dying mid-transfer', function () {
  this.timeout(180_000);
  const size = 400 * 1024 * 1024;
  let redis: TestRedis;
  let holders: TestNode[] = [];
  let reader: TestNode;
  let client: Client;

  before(async function () {
    redis = await startRedis();
    [reader, ...holders] = await Promise.all([startNode(redis.url, 'reader'), startNode(redis.url, 'holderA'), startNode(redis.url, 'holderB')]);
    client = new Client(reader.url, { output: new Capture() });
  });

  after(async function () {
    client?.close();
    for (const node of holders) {
      try {
        process.kill(node.process.pid!, 'SIGCONT');
      } catch {
        /* gone */
      }
    }
    await Promise.all([reader, ...holders].filter(Boolean).map((n) => n.stop()));
    await redis?.stop();
  });

  const partials = () => readdirSync(join(reader.datadir, '.tmp'));

  /** Starts `reader` copying `url`, and freezes every holder once some bytes have arrived. */
  async function copyAndFreezeMidway(url: string, alive: TestNode[]) {
    const copy = rawRequest(reader.url, 'POST', `${dataPath(url)}/replicate`, '{}');
    // Poll without sleeping: the copy must still be running when the holders freeze.
    for (let tries = 0; ; tries++) {
      const part = partials()[0];
      const bytes = part ? statSync(join(reader.datadir, '.tmp', part), { throwIfNoEntry: false })?.size ?? 0 : 0;
      if (bytes > 0) break;
      if (tries > 2_000_000) throw new Error('the copy never started');
      await new Promise((r) => setImmediate(r));
    }
    for (const node of alive) process.kill(node.process.pid!, 'SIGSTOP');
    const part = partials()[0];
    const arrived = statSync(join(reader.datadir, '.tmp', part)).size;
    assert.ok(arrived < size, 'the holders froze with the copy half done');
    return { copy, serving: servingHolder(alive) };
  }

  /** The holder the reader has a connection to (the one it is copying from). */
  function servingHolder(candidates: TestNode[]): TestNode {
    const readerSockets = new Set<string>();
    for (const fd of readdirSync(`/proc/${reader.process.pid}/fd`)) {
      const target = (() => {
        try {
          return readlinkSync(`/proc/${reader.process.pid}/fd/${fd}`);
        } catch {
          return '';
        }
      })();
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      if (inode) readerSockets.add(inode);
    }
    const remotePorts = new Set<number>();
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      for (const line of readFileSync(table, 'utf8').trim().split('\n').slice(1)) {
        const fields = line.trim().split(/\s+/);
        if (fields[3] === '01' && readerSockets.has(fields[9])) remotePorts.add(parseInt(fields[2].split(':').pop()!, 16));
      }
    }
    const serving = candidates.filter((n) => remotePorts.has(Number(new URL(n.url).port)));
    assert.equal(serving.length, 1, `the reader copies from one holder, not from ${serving.map((n) => n.name).join(', ') || 'none'}`);
    return serving[0];
  }

  it('copies from the other holder and registers a whole, CRC-checked copy', async function () {
    const blob = randomBytes(size);
    const data = await dr(blob, { client }).save({ host: 'holderA', url: 'mid/two-holders.bin' });
    assert.equal((await rawRequest(holders[1].url, 'POST', `${dataPath(data.dataUrl!)}/replicate`, '{}')).status, 200);
    const { copy, serving } = await copyAndFreezeMidway(data.dataUrl!, holders);
    await serving.kill();
    for (const node of holders) if (node !== serving) process.kill(node.process.pid!, 'SIGCONT');
    const answer = await copy;
    assert.equal(answer.status, 200, JSON.stringify(answer.json));
    const info = (await client.dataInfo([data.dataUrl!]))[data.dataUrl!];
    assert.ok(info.holders.includes('reader'), `holders: ${info.holders}`);
    assert.equal(info.crc32, crc32(blob).toString(16).padStart(8, '0'));
    const copied = readFileSync(join(reader.datadir, 'data', 'mid', 'two-holders.bin'));
    assert.ok(copied.equals(blob), 'the copy is the data');
    assert.match(reader.logs(), new RegExp(`fetching mid/two-holders.bin from ${serving.name} failed`));
    assert.deepEqual(partials(), []);
    holders = holders.filter((n) => n !== serving);
  });

  it('names the url when its only holder dies, and keeps nothing of the half copy', async function () {
    const [last] = holders;
    const data = await dr(randomBytes(size), { client }).save({ host: last.name, url: 'mid/one-holder.bin' });
    const { copy } = await copyAndFreezeMidway(data.dataUrl!, [last]);
    await last.kill();
    const answer = await copy;
    assert.equal(answer.status, 404, JSON.stringify(answer.json));
    assert.match(JSON.stringify(answer.json), /mid\/one-holder\.bin.*could not be fetched/);
    assert.match(JSON.stringify(answer.json), new RegExp(last.name));
    const info = await redis.client().smembers(testKeys.dataHosts('mid/one-holder.bin'));
    assert.deepEqual(info, [last.name], 'the reader registered no copy');
    assert.equal(statSync(join(reader.datadir, 'data', 'mid', 'one-holder.bin'), { throwIfNoEntry: false }), undefined);
    await waitFor(() => partials().length === 0, 'the half copy to be deleted');
  });
});

// A single call sent to a node with a free interpreter starts there at once; its queued copy
// waits, and is what runs it again should that node die.
describe('a call started at once on its node', function () {
  this.timeout(120_000);
  let redis: TestRedis;
  let nodes: TestNode[] = [];

  before(async function () {
    redis = await startRedis();
    nodes = await Promise.all([startNode(redis.url, 'node1'), startNode(redis.url, 'node2', ['--queue', 'work']), startNode(redis.url, 'node3', ['--queue', 'work'])]);
  });

  after(async function () {
    await stopCluster(redis, nodes);
  });

  it('runs again on another node when its node is killed mid-call', async function () {
    const toNode2 = new Client(nodes[1].url, { output: new Capture() });
    toNode2.bc(py`
      import os, time
      def f():
          time.sleep(2)
          return os.environ["KS_NODE_NAME"]`, [], {}, { queue: 'work' });
    const [taskId] = await toNode2.execute();
    toNode2.close();
    assert.equal(await runningOn(redis, taskId), 'node2');
    await nodes[1].kill();
    const ends = await batchEnds(nodes[0].url, taskId, 1, 60_000);
    assert.deepEqual(ends.get(0), { t: 'result', i: 0, h: 'node3', value: 'node3' });
  });
});

// A node stopping (SIGTERM) lets running calls finish for 30 s, then kills them. A call that
// had claimed itself as the next for an interpreter, but never got one, is not lost with it.
describe('a call claimed early on a node that stops', function () {
  this.timeout(120_000);
  let redis: TestRedis;
  let nodes: TestNode[] = [];

  before(async function () {
    redis = await startRedis();
    nodes = [await startNode(redis.url, 'stopping', ['--queue', 'work'])];
  });

  after(async function () {
    await stopCluster(redis, nodes);
  });

  it('runs on another node once the stopping node gives up on it', async function () {
    const client = new Client(nodes[0].url, { output: new Capture() });
    try {
      // 8 calls on one node with one interpreter go as jobs of two: call 0 outlives the grace,
      // call 1 claims itself behind it and waits.
      client.bc(py`
        import time
        def long():
            time.sleep(90)`, [], {}, { queue: 'work' });
      for (let k = 1; k < 8; k++) client.bc('kstest_funcs:where', [], {}, { queue: 'work' });
      const taskIds = await client.execute();
      assert.equal(await runningOn(redis, taskIds[1]), 'stopping', 'call 1 claimed itself behind call 0');
      nodes.push(await startNode(redis.url, 'taking-over', ['--queue', 'work']));
      process.kill(nodes[0].process.pid!, 'SIGTERM');
      const ends = await batchEnds(nodes[1].url, taskIds[0], 8, 100_000);
      assert.equal(ends.get(0)!.t, 'cancelled', 'the call still running when the grace ran out was stopped');
      assert.deepEqual(ends.get(1), { t: 'result', i: 1, h: 'taking-over', value: 'taking-over' });
      for (let k = 2; k < 8; k++) assert.equal(ends.get(k)!.t, 'result');
    } finally {
      client.close();
    }
  });
});

// A call started at once keeps a delayed copy in its queue; past the job lock time a worker
// of the same node takes that copy, finds the call running, and puts the copy back. The
// running call's claim must go on being refreshed, or it lapses and the copy runs the call
// a second time.
describe('a long call started at once, and its copy on the same node', function () {
  this.timeout(120_000);
  let redis: TestRedis;
  let node: TestNode;

  before(async function () {
    redis = await startRedis();
    node = await startNode(redis.url, 'twice', ['--num-workers', '2']);
  });

  after(async function () {
    await stopCluster(redis, [node]);
  });

  it('keeps refreshing the claim after the copy looked at it', async function () {
    const client = new Client(node.url, { output: new Capture() });
    try {
      client.bc(py`
        import time
        def long():
            time.sleep(90)`);
      const [taskId] = await client.execute();
      const r = redis.client();
      const claimKey = testKeys.claim(taskId);
      assert.equal(await runningOn(redis, taskId), 'twice');
      // The copy (job id = task id) is taken once its delay is over, and put back delayed.
      await waitFor(async () => (await r.hget(testKeys.bullKey('default', taskId), 'processedOn')) !== null, 'the copy to be taken', 30_000);
      await waitFor(async () => (await r.zscore(testKeys.bullKey('default', 'delayed'), taskId)) !== null, 'the copy to be put back', 30_000);
      // Refreshed every 10 s back to 30 s: its time to live goes up again within 10 s, where
      // a claim nobody refreshes only counts down.
      let last = await r.pttl(claimKey);
      await waitFor(
        async () => {
          const now = await r.pttl(claimKey);
          const refreshed = now > last + 500;
          last = now;
          return refreshed;
        },
        'the claim to be refreshed after the copy looked at it',
        15_000,
      );
      assert.equal(await client.cancel(taskId), true);
      const [outcome] = await client.br({ collect: true });
      assert.equal(outcome.ok, false);
    } finally {
      client.close();
    }
  });
});
