import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Client, py, RemoteError } from '../src/index.js';
import { Capture, startNode, startNodeWith, startRedis, stopCluster, type TestNode, type TestRedis } from './harness.js';

/** Heartbeats, claims and the dead-host sweep go by Redis's clock: a node ten minutes ahead changes nothing. */
describe('a node whose clock is ten minutes ahead (libfaketime)', function () {
  this.timeout(90_000);
  let redis: TestRedis;
  let normal: TestNode;
  let ahead: TestNode;
  let client: Client;

  before(async function () {
    // Debian's faketime; .ci/run installs it when missing.
    execFileSync('faketime', ['+10 minutes', 'true']);
    redis = await startRedis();
    normal = await startNode(redis.url, 'clock-normal');
    ahead = await startNodeWith('clock-ahead', ['--no-redis', '--redis-connection', redis.url, '--node-port', '0', '--node-name', 'clock-ahead', '--num-workers', '1'], {}, ['faketime', '+10 minutes']);
    client = new Client(normal.url, { output: new Capture() });
  });

  after(async function () {
    await stopCluster(redis, [normal, ahead], client);
  });

  it('is live, and runs the calls pinned to it', async function () {
    const skewed = py`
      import time
      def now(): return time.time()`;
    assert.deepEqual((await client.hosts()).map((h) => h.name).sort(), ['clock-ahead', 'clock-normal']);
    const seen = await client.call<number>(skewed, [], {}, { host: 'clock-ahead' });
    assert.ok(seen - Date.now() / 1000 > 500, `the interpreter's clock reads ${seen}, not ten minutes ahead`);
    for (let i = 0; i < 20; i++) client.bc('operator:add', [i, 1], {}, { host: i % 2 ? 'clock-ahead' : 'clock-normal' });
    await client.execute();
    assert.equal((await client.br<number>()).length, 20);
  });

  it('is found dead by the others soon after it dies: its pinned calls end lost, not ten minutes later', async function () {
    const sleeper = py`
      import time
      def sleep(): time.sleep(60)`;
    client.bc(sleeper, [], {}, { host: 'clock-ahead' });
    client.bc(sleeper, [], {}, { host: 'clock-ahead' });
    await client.execute();
    await new Promise((r) => setTimeout(r, 500));
    await ahead.kill();
    const started = Date.now();
    const outcomes = await client.br({ collect: true });
    const waited = Date.now() - started;
    for (const outcome of outcomes) {
      assert.ok(!outcome.ok && outcome.error instanceof RemoteError);
      assert.equal(outcome.error.kind, 'lost');
    }
    assert.ok(waited < 60_000, `the calls ended lost after ${waited} ms`);
    assert.deepEqual((await client.hosts()).map((h) => h.name), ['clock-normal']);
  });
});
