import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Client, py, RemoteError } from '../src/index.js';
import { Capture, startNode, startRedis, stopCluster, waitFor, type TestNode, type TestRedis } from './harness.js';

function rssMb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'm').exec(text)![1]);
}

describe('bounded resources and Redis restarts', function () {
  this.timeout(120_000);
  let redis: TestRedis;
  let nodes: TestNode[] = [];
  let client: Client;
  let out: Capture;

  before(async function () {
    // Append-only persistence, fsynced on every write: a restart keeps everything queued.
    redis = await startRedis(['--appendonly', 'yes', '--appendfsync', 'always']);
    nodes = await Promise.all([
      startNode(redis.url, 'safe1', ['--max-output', '2000000', '--result-ttl', '3']),
      startNode(redis.url, 'safe2', ['--max-memory', '60', '--queue', 'fat']),
    ]);
    out = new Capture();
    client = new Client(nodes[0].url, { output: out });
  });

  after(async function () {
    await stopCluster(redis, nodes, client);
  });

  beforeEach(() => {
    out.text = '';
  });

  it('times out a call stuck in C', async function () {
    const error = await client.call(py`
      import ctypes
      def f():
          ctypes.CDLL(None).sleep(100)`, [], {}, { timeout: 0.5, host: 'safe1' }).catch((e: unknown) => e);
    assert.ok(error instanceof RemoteError);
    assert.equal(error.kind, 'timeout');
    assert.equal(await client.call('operator:add', [1, 1], {}, { host: 'safe1' }), 2);
  });

  it('caps a 100 MB print flood with a notice, and the node stays small', async function () {
    const before = rssMb(nodes[0].process.pid!);
    const value = await client.call(py`
      import sys
      def flood():
          line = "x" * 65535 + "\n"
          for _ in range(1600):
              sys.stdout.write(line)
          return "flooded"`, [], {}, { host: 'safe1' });
    assert.equal(value, 'flooded');
    assert.match(out.text, /output truncated after 2000000 bytes \(--max-output\)/);
    assert.ok(out.text.length < 2_100_000, `${out.text.length} bytes of output reached the client`);
    const grewMb = rssMb(nodes[0].process.pid!) - before;
    assert.ok(grewMb < 100, `the node grew by ${grewMb.toFixed(0)} MB`);
  });

  it('recycles an interpreter whose memory passes --max-memory', async function () {
    const fat = py`
      import os
      KEEP = []
      def f(mb):
          KEEP.append(bytearray(mb * 1024 * 1024))
          return os.getpid()`;
    const first = await client.call<number>(fat, [100], {}, { queue: 'fat' });
    const second = await client.call<number>(fat, [1], {}, { queue: 'fat' });
    assert.notEqual(first, second, 'a fresh interpreter took the slot');
    assert.match(nodes[1].logs(), /passed --max-memory 60 MB/);
  });

  it('serves 500 concurrent long-polls over one Redis connection', async function () {
    client.bc(py`
      import time
      def f():
          time.sleep(1)
          return "ready"`, [], {}, { host: 'safe1' });
    const [taskId] = await client.execute();
    const batchId = taskId.split('-')[0];
    const body = JSON.stringify({ batchId, cursor: '0-0', waitMs: 5_000, remaining: 1 });
    const polls = Array.from({ length: 500 }, () =>
      fetch(`${nodes[0].url}/api/v1/results`, { method: 'POST', body, headers: { 'content-type': 'application/json', accept: 'application/json' } }).then(
        (res) => res.json() as Promise<{ events: { t: string }[] }>,
      ),
    );
    await waitFor(async () => (await metric(nodes[0].url, 'ks_long_polls')) >= 400, 'the polls to be waiting');
    const connections = (await redis.client().client('LIST')) as string;
    assert.ok(connections.trim().split('\n').length < 60, `${connections.trim().split('\n').length} Redis connections`);
    const pages = await Promise.all(polls);
    assert.ok(pages.every((p) => p.events.some((e) => e.t === 'result')));
    assert.deepEqual(await client.br(), ['ready']);
    assert.equal(await metric(nodes[0].url, 'ks_long_polls'), 0);
  });

  it('drops the long-polls of clients that went away', async function () {
    client.bc(py`
      import time
      def f(): time.sleep(3)`, [], {}, { host: 'safe1' });
    const [taskId] = await client.execute();
    const body = JSON.stringify({ batchId: taskId.split('-')[0], cursor: '9999999999999-0', waitMs: 5_000 });
    const aborts = Array.from({ length: 50 }, () => new AbortController());
    const polls = aborts.map((a) => fetch(`${nodes[0].url}/api/v1/results`, { method: 'POST', body, signal: a.signal, headers: { 'content-type': 'application/json' } }).catch(() => undefined));
    await waitFor(async () => (await metric(nodes[0].url, 'ks_long_polls')) >= 50, 'the polls to be waiting');
    for (const a of aborts) a.abort();
    await Promise.all(polls);
    await waitFor(async () => (await metric(nodes[0].url, 'ks_long_polls')) === 0, 'the node to drop them');
    await client.bulkCancel();
    await client.br({ collect: true });
  });

  it('expires every key of 1,000 finished calls', async function () {
    const r = redis.client();
    const batchesBefore = new Set(await r.keys('ks:batch:*'));
    const results = await client.map('operator:add', Array.from({ length: 1000 }, (_, k) => [k, 1]), { host: 'safe1' });
    assert.equal(results.length, 1000);
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await r.scan(cursor, 'COUNT', 1000);
      cursor = next;
      keys.push(...found);
    } while (cursor !== '0');
    const perCall = keys.filter((k) => /^ks:(claim|batch):/.test(k));
    assert.ok(perCall.length >= 1000, `${perCall.length} per-call keys`);
    // -1 would be a key without expiry; -2 one that expired since the scan.
    for (const key of perCall) assert.notEqual(await r.ttl(key), -1, `${key} expires`);
    assert.deepEqual(keys.filter((k) => /^ks:(?!claim:)[^:]+:b[0-9a-f]{16}-\d+$/.test(k)), [], 'no BullMQ job is left');
    const batchKeys = (await r.keys('ks:batch:*')).filter((k) => !batchesBefore.has(k));
    assert.equal(batchKeys.length, 2, 'one stream and one meta');
    // The batch expires --result-ttl (3 s) after its last call ended; claims last 10 minutes, to outlive queued copies.
    await waitFor(async () => (await r.exists(...batchKeys)) === 0, 'the batch to expire', 10_000);
  });

  it('survives a Redis restart mid-batch without losing a call', async function () {
    for (let k = 0; k < 30; k++) client.bc(py`
      import time
      def f(k):
          time.sleep(0.1)
          return k`, [k]);
    await client.execute();
    await redis.restart();
    assert.deepEqual(await client.br(), Array.from({ length: 30 }, (_, k) => k));
    assert.equal(await client.call('operator:add', [1, 2]), 3, 'both nodes serve after the restart');
    assert.deepEqual((await client.hosts()).map((h) => h.name).sort(), ['safe1', 'safe2']);
  });
});
