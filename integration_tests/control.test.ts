import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { Client, dr, du, py, RemoteError, NodeRequestError } from '../src/index.js';
import { Capture, rawRequest, startNode, startRedis, stopCluster, waitFor, waitsAnswered, type TestNode, type TestRedis } from './harness.js';

describe('cancellation, token and --no-code', function () {
  let redis: TestRedis;
  let node: TestNode;
  let client: Client;

  before(async function () {
    redis = await startRedis();
    node = await startNode(redis.url, 'ctl');
    client = new Client(node.url, { output: new Capture() });
  });
  after(async function () {
    await stopCluster(redis, [node], client);
  });

  it('cancel(id) stops a running call and ends it cancelled; the node serves again', async function () {
    client.bc(py`
      import time
      def f():
          time.sleep(60)`);
    const [taskId] = await client.execute();
    const r = redis.client();
    await waitFor(async () => (await r.get(`ks:claim:${taskId}`))?.startsWith('ctl/'), 'the call to start');
    assert.equal(await client.cancel(taskId), true);
    const [outcome] = await client.br({ collect: true });
    assert.equal(outcome.ok, false);
    assert.equal((outcome as { error: RemoteError }).error.kind, 'cancelled');
    // The call started at once on its node: its delayed fallback copy goes once it has ended.
    await waitFor(async () => (await r.zcard('ks:default:delayed')) === 0, 'the fallback copy to be removed');
    assert.equal(await client.call('operator:add', [1, 1]), 2);
  });

  it('bulkCancel() and cancelAll() end waiting calls before they run', async function () {
    client.bc(py`
      import time
      def f():
          time.sleep(60)`);
    for (let k = 0; k < 5; k++) client.bc('operator:add', [k, 1]);
    const [blocker] = await client.execute();
    const r = redis.client();
    await waitFor(async () => (await r.get(`ks:claim:${blocker}`))?.startsWith('ctl/'), 'the blocker to start');
    assert.ok((await client.cancelAll()) >= 4, 'the waiting calls were cancelled');
    assert.ok((await client.bulkCancel()) >= 1, 'the running blocker was cancelled');
    const outcomes = await client.br({ collect: true });
    assert.equal(outcomes.length, 6);
    assert.ok(outcomes.every((o) => !o.ok && o.error.kind === 'cancelled'), JSON.stringify(outcomes));
  });

  it('requires the bearer token on every route but /health', async function () {
    const guarded = await startNode(redis.url, 'guarded', ['--token', 's3cret', '--no-code']);
    try {
      assert.equal((await rawRequest(guarded.url, 'GET', '/health')).status, 200);
      const refused = await rawRequest(guarded.url, 'POST', '/api/v1/calls', JSON.stringify({ calls: [{ fn: 'operator:add', args: [1, 2] }] }));
      assert.equal(refused.status, 401);
      assert.equal(refused.json?.error, 'unauthorized');
      const wrong = new Client(guarded.url, { token: 'wrong', output: new Capture() });
      for (const async of [false, true]) {
        const error = await wrong.call('operator:add', [1, 2], {}, { async }).catch((e: unknown) => e);
        assert.ok(error instanceof NodeRequestError && error.status === 401, `async ${async}: ${String(error)}`);
      }
      wrong.close();
      const right = new Client(guarded.url, { token: 's3cret', output: new Capture() });
      assert.equal(await right.call('operator:add', [1, 2], {}, { async: false }), 3);
      assert.equal(await right.call('operator:add', [1, 2]), 3);
      const noCode = await right.call(py`def f(): return 1`, [], {}, { async: false }).catch((e: unknown) => e);
      assert.ok(noCode instanceof NodeRequestError && noCode.status === 403, String(noCode));
      assert.match(noCode.detail, /--no-code/);
      right.close();
    } finally {
      await guarded.stop();
    }
  });

  it('uses the token for node-to-node data transfers', async function () {
    const [one, two] = await Promise.all([
      startNode(redis.url, 'tok1', ['--token', 'shared-secret', '--queue', 'tokq']),
      startNode(redis.url, 'tok2', ['--token', 'shared-secret', '--queue', 'tokq']),
    ]);
    const right = new Client(one.url, { token: 'shared-secret', output: new Capture() });
    try {
      const data = await dr(Buffer.alloc(10_000, 1), { client: right }).save({ host: 'tok1' });
      // Run it on tok2, which must fetch the data from tok1 with the token.
      const [host, size] = await right.call<[string, number]>('kstest_funcs:data_size', [data], {}, { host: 'tok2' });
      assert.deepEqual([host, size], ['tok2', 10_000]);
      assert.deepEqual((await right.dataInfo([data.dataUrl!]))[data.dataUrl!].holders, ['tok1', 'tok2']);
      const anonymous = await rawRequest(one.url, 'GET', `/api/v1/data/${data.dataUrl}`);
      assert.equal(anonymous.status, 401, 'data is not served without the token');
      // The client's downloads carry the token too, and a wrong one gets the node's 401.
      assert.ok((await du(data.dataUrl!, { client: right }).raw()).equals(Buffer.alloc(10_000, 1)));
      const file = await du(data.dataUrl!, { client: right }).localPath();
      assert.ok(readFileSync(file).equals(Buffer.alloc(10_000, 1)));
      rmSync(file);
      const wrong = new Client(one.url, { token: 'wrong', output: new Capture() });
      const refused = await wrong.http.download(`${one.url}/api/v1/data/${data.dataUrl}`).catch((e: unknown) => e);
      wrong.close();
      assert.ok(refused instanceof NodeRequestError && refused.status === 401, String(refused));
    } finally {
      right.close();
      await Promise.all([one.stop(), two.stop()]);
    }
  });

  it('answers a batch without waiting on replicas when Redis has none', async function () {
    for (let i = 0; i < 5; i++) client.bc('operator:add', [i, 1]);
    await client.execute();
    assert.deepEqual(await client.br(), [1, 2, 3, 4, 5]);
    assert.equal(await waitsAnswered(redis.client()), 0, 'no WAIT: it would sit out its timeout on a Redis without replicas');
  });

  it('warns at start when Redis may evict keys', async function () {
    const evicting = await startRedis(['--maxmemory-policy', 'allkeys-lru']);
    const node = await startNode(evicting.url, 'warned');
    try {
      assert.match(node.logs(), /WARNING: Redis maxmemory-policy is allkeys-lru/);
    } finally {
      await node.stop();
      await evicting.stop();
    }
  });

  it('cancels its batch when the client process gets Ctrl-C during br()', async function () {
    const script = `
      import { Client, py } from ${JSON.stringify(new URL('../src/index.ts', import.meta.url).pathname)};
      const c = new Client(process.env.KS_TEST_URL, { output: process.stderr });
      for (let k = 0; k < 3; k++) c.bc(py\`
        import time
        def f(): time.sleep(60)\`);
      const [taskId] = await c.execute();
      console.log('batch ' + taskId.split('-')[0]);
      await c.br();
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, KS_TEST_URL: node.url } });
    let text = '';
    child.stdout!.on('data', (c: Buffer) => (text += c));
    const batchId = await waitFor(() => /batch (b[0-9a-f]{16})/.exec(text)?.[1], 'the child to submit');
    const r = redis.client();
    await waitFor(async () => (await r.get(`ks:claim:${batchId}-0`))?.startsWith('ctl/'), 'the first call to start');
    child.kill('SIGINT');
    await waitFor(() => child.exitCode !== null || child.signalCode !== null, 'the child to exit');
    const ends = new Map<number, string>();
    let cursor = '0-0';
    while (ends.size < 3) {
      const page = await client.http.request<{ cursor: string; events: { t: string; i: number }[] }>('POST', '/api/v1/results', { batchId, cursor });
      cursor = page.cursor;
      for (const e of page.events) if (e.t !== 'started') ends.set(e.i, e.t);
    }
    assert.deepEqual([...ends.values()], ['cancelled', 'cancelled', 'cancelled']);
  });

  it('kills calls that pass the node-wide --timeout', async function () {
    const strict = await startNode(redis.url, 'strict', ['--timeout', '0.5', '--queue', 'strictq']);
    const strictClient = new Client(strict.url, { output: new Capture() });
    try {
      const queued = await strictClient.call(py`
        import time
        def f(): time.sleep(30)`, [], {}, { queue: 'strictq' }).catch((e: unknown) => e);
      assert.ok(queued instanceof RemoteError && queued.kind === 'timeout', String(queued));
      const direct = await strictClient.call(py`
        import time
        def f(): time.sleep(30)`, [], {}, { async: false }).catch((e: unknown) => e);
      assert.ok(direct instanceof RemoteError && direct.kind === 'timeout', String(direct));
      assert.equal(await strictClient.call('operator:add', [1, 1], {}, { queue: 'strictq' }), 2, 'a fresh interpreter took the slot');
    } finally {
      strictClient.close();
      await strict.stop();
    }
  });

  it('refuses to bind a public address without --token or --insecure', async function () {
    const error = await startNode(redis.url, 'exposed', ['--host', '0.0.0.0']).catch((e: Error) => e);
    assert.ok(error instanceof Error);
    assert.match(error.message, /--token/);
  });
});
