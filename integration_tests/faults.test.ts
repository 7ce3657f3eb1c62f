import assert from 'node:assert/strict';
import { Client, NodeRequestError, py, RemoteError } from '../src/index.js';
import { Capture, startNode, startRedis, waitFor, type TestNode, type TestRedis } from './harness.js';

// A node killed with -9 takes its heartbeat with it: what it ran is re-run elsewhere,
// what only it could run ends `lost`, and no client waits forever.
describe('dead nodes', function () {
  this.timeout(120_000);
  let redis: TestRedis;
  let nodes: TestNode[] = [];
  let client: Client;

  before(async function () {
    redis = await startRedis();
    // The client talks to node1; calls of the queue 'work' run on node2 or node3 only.
    nodes = await Promise.all([startNode(redis.url, 'node1'), startNode(redis.url, 'node2', ['--queue', 'work']), startNode(redis.url, 'node3', ['--queue', 'work'])]);
    client = new Client(nodes[0].url, { output: new Capture() });
  });

  after(async function () {
    client?.close();
    await Promise.all(nodes.map((n) => n.stop()));
    await redis?.stop();
  });

  /** The host whose claim holds a task, once one does. */
  async function runningOn(taskId: string): Promise<string> {
    const r = redis.client();
    return waitFor(async () => (await r.get(`ks:claim:${taskId}`))?.split('/')[0], `${taskId} to start`);
  }

  it('re-runs the call of a node killed mid-call on another node', async function () {
    client.bc(py`
      import os, time
      def f():
          time.sleep(2)
          return os.environ["KS_NODE_NAME"]`, [], {}, { queue: 'work' });
    const [taskId] = await client.execute();
    const victim = await runningOn(taskId);
    await nodes.find((n) => n.name === victim)!.kill();
    const [host] = await client.br<string>();
    assert.deepEqual([host, victim].sort(), ['node2', 'node3'], 'the other node of the queue ran it');
  });

  it('says what was lost when Redis restarts without persistence', async function () {
    const bare = await startRedis();
    const node = await startNode(bare.url, 'forgetful');
    const forgetful = new Client(node.url, { output: new Capture() });
    try {
      forgetful.bc(py`
        import time
        def f(): time.sleep(2)`);
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

  it('ends calls pinned to a killed node lost, and forgets the node', async function () {
    // A node still running (the previous test killed one; its heartbeat may linger for seconds).
    const victim = nodes.find((n) => n.name !== 'node1' && n.process.exitCode === null && n.process.signalCode === null)!.name;
    client.bc(py`
      import time
      def f(): time.sleep(60)`, [], {}, { host: victim });
    client.bc('operator:add', [1, 2], {}, { host: victim });
    const [first] = await client.execute();
    await runningOn(first);
    await nodes.find((n) => n.name === victim)!.kill();
    const outcomes = await client.br({ collect: true });
    for (const outcome of outcomes) {
      assert.equal(outcome.ok, false);
      const error = (outcome as { error: RemoteError }).error;
      assert.equal(error.kind, 'lost');
      assert.match(error.message, new RegExp(victim));
    }
    const r = redis.client();
    // The sweeper ends the calls first, then drops the queue and the host's entry.
    await waitFor(async () => (await r.hexists('ks:hosts', victim)) === 0, 'the dead host to be forgotten');
    assert.ok(!(await client.hosts()).some((h) => h.name === victim));
    assert.equal(await client.call('operator:add', [2, 2]), 4, 'the cluster still serves');
  });
});
