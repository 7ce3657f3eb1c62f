import assert from 'node:assert/strict';
import { Client, type AllOutcome } from '../src/index.js';
import { Capture, runCli, startNode, startRedis, stopCluster, waitFor, type TestNode, type TestRedis } from './harness.js';

interface Info {
  workers: number;
  minWorkers: number;
  maxWorkers: number;
  workersAdded: number;
  workersRetired: number;
  executorPids: number[];
}

describe('autoscaling: --min-workers, --max-workers', function () {
  let redis: TestRedis;
  let node: TestNode;
  let client: Client;

  before(async function () {
    redis = await startRedis();
    node = await startNode(redis.url, 'elastic', ['--num-workers', '1', '--max-workers', '3', '--scale-up-after', '100', '--retire-idle', '1']);
    client = new Client(node.url, { output: new Capture() });
  });

  after(async function () {
    await stopCluster(redis, [node], client);
  });

  const info = async () => (await (await fetch(`${node.url}/info`)).json()) as Info;
  const scaled = async (change: string) => Number(new RegExp(`^ks_workers_scaled_total\\{[^}]*change="${change}"[^}]*\\} (\\d+)`, 'm').exec(await (await fetch(`${node.url}/metrics`)).text())?.[1] ?? 0);

  it('adds interpreters while calls wait, each with the persisted setup, and retires them once idle', async function () {
    assert.deepEqual((await info()).workers, 1);
    await client.call({ exec: 'setup = "loaded"' }, [], {}, { on: 'all', persist: true });
    // Six calls of 0.5 s on one interpreter: the later ones wait, so the node grows to three.
    const work = { exec: 'import os, time\ntime.sleep(0.5)\nseen = [setup, os.getpid()]', returns: ['seen'] };
    for (let k = 0; k < 6; k++) client.bc(work);
    await client.execute();
    const results = await client.br<{ seen: [string, number] }>();
    assert.deepEqual(new Set(results.map((r) => r.seen[0])), new Set(['loaded']));
    const grown = await info();
    assert.ok(grown.workersAdded >= 1, `added ${grown.workersAdded}`);
    assert.ok(new Set(results.map((r) => r.seen[1])).size >= 2, 'the calls ran on more than one interpreter');
    assert.ok(await scaled('added') >= 1);
    assert.match(node.logs(), /worker \d: added \(a call waited \d+ ms for an interpreter\); \d interpreters now, between 1 and 3/);
    // Idle for --retire-idle 1: back to --min-workers (1), never below.
    await waitFor(async () => (await info()).workers === 1, 'the node to retire its idle interpreters');
    const shrunk = await info();
    assert.equal(shrunk.workersRetired, shrunk.workersAdded);
    assert.equal(shrunk.executorPids.length, 1);
    assert.equal(await scaled('retired'), shrunk.workersRetired);
    assert.match(node.logs(), /worker \d: retired \(idle for \d+ s\); 1 interpreters now/);
    const everywhere = await client.call<AllOutcome<string>[]>({ eval: 'setup' }, [], {}, { on: 'all' });
    assert.deepEqual(everywhere.map((o) => o.ok && o.value), ['loaded']);
  });

  it('refuses worker counts that contradict each other, in one line', async function () {
    const { code, stderr } = await runCli(['start', '--datadir', '/tmp', '--num-workers', '4', '--max-workers', '2']);
    assert.equal(code, 1);
    assert.match(stderr, /--num-workers 4 must lie between --min-workers 2 and --max-workers 2/);
  });
});
