import assert from 'node:assert/strict';
import { Client, dr, py } from '../src/index.js';
import { Capture, waitFor } from './harness.js';
import { makeNetwork, startNodeOn, startRedisOn, type Network } from './netns.js';

const token = 'netns-secret';
/** Sleeps, then says which host ran it. */
const nap = py`
  import os, time
  def nap(s):
      time.sleep(s)
      return os.environ["KS_NODE_NAME"]`;

interface JsonEvent {
  t: string;
  i: number;
  h?: string;
}

describe('hosts on a private network: Redis on one, a node on each of three others (network namespaces)', function () {
  this.timeout(180_000);
  let net: Network;
  let client: Client;
  let redisUrl = '';
  const urls: string[] = [];

  before(async function () {
    net = makeNetwork(4);
    const [redisHost, ...nodeHosts] = net.hosts;
    redisUrl = await startRedisOn(redisHost);
    for (const host of nodeHosts) urls.push((await startNodeOn(host, redisUrl, ['--token', token])).url);
    client = new Client(urls[0], { token, output: new Capture() });
  });

  after(async function () {
    client?.close();
    await net?.destroy();
  });

  /** A batch's events from its start, as JSON. */
  async function eventsOf(batchId: string): Promise<JsonEvent[]> {
    const events: JsonEvent[] = [];
    for (let cursor = '0-0'; ; ) {
      const answer = await fetch(`${urls[0]}/api/v1/results`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ batchId, cursor, waitMs: 0 }) });
      const page = (await answer.json()) as { cursor: string; events: JsonEvent[] };
      if (!page.events.length) return events;
      events.push(...page.events);
      cursor = page.cursor;
    }
  }

  it('runs bulk calls on the three hosts, each at its own address, and routes a call to the host holding its data', async function () {
    assert.deepEqual((await client.hosts()).map((h) => h.url).sort(), [...urls].sort());
    for (let i = 0; i < 30; i++) client.bc(nap, [0.05]);
    await client.execute();
    const ran = await client.br<string>();
    assert.deepEqual([...new Set(ran)].sort(), ['host1', 'host2', 'host3']);
    const data = await dr(Buffer.alloc(1 << 20, 7), { client }).save({ host: 'host3' });
    const where = await client.call<string>(py`
      import os
      def where(d): return [os.environ["KS_NODE_NAME"], len(d.raw())]`, [data]);
    assert.deepEqual(where, ['host3', 1 << 20]);
    // Copied across the network on demand, checksum-checked: host1 reads it from host3.
    const copied = await client.call<number>(py`def size(d): return len(d.raw())`, [data], {}, { host: 'host1' });
    assert.equal(copied, 1 << 20);
    assert.deepEqual((await client.dataInfo([data.dataUrl!]))[data.dataUrl!].holders, ['host1', 'host3']);
  });

  it('re-runs elsewhere the call of a host whose link is cut mid-call; healed, the host rejoins and its late result is dropped', async function () {
    const [, , , third] = net.hosts;
    for (let i = 0; i < 3; i++) client.bc(nap, [6]);
    const [first] = await client.execute();
    const batchId = first.split('-')[0];
    const onThird = await waitFor(async () => (await eventsOf(batchId)).find((e) => e.t === 'started' && e.h === 'host3'), 'a call to start on host3');
    third.cut();
    const ran = await client.br<string>();
    assert.equal(ran.length, 3);
    assert.notEqual(ran[onThird.i], 'host3', 'the cut host cannot have delivered it');
    third.heal();
    await waitFor(async () => (await client.hosts()).some((h) => h.name === 'host3'), 'host3 to rejoin', 60_000);
    // A call pinned to host3 now: its claim and result go after host3's late finish on the same connection.
    assert.equal(await client.call(nap, [0], {}, { host: 'host3' }), 'host3');
    const ends = (await eventsOf(batchId)).filter((e) => e.t === 'result');
    assert.deepEqual(ends.map((e) => e.i).sort(), [0, 1, 2], 'one result per call, the late one dropped');
  });

  it('answers 503 on a host that clients reach but Redis does not, while the others work on; healed, it takes work again', async function () {
    const [redisHost, first] = net.hosts;
    const post = (url: string, path: string, body: unknown) =>
      fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(body), signal: AbortSignal.timeout(5_000) });
    const batch = { calls: [{ fn: 'operator:add', args: [1, 2] }] };
    first.blackhole(redisHost.address);
    try {
      const refused = await waitFor(async () => {
        const answer = await post(urls[0], '/api/v1/calls', batch).catch(() => undefined);
        return answer?.status === 503 ? answer : undefined;
      }, 'host1 to refuse work it cannot record', 30_000);
      assert.equal(refused.headers.get('retry-after'), '1');
      const body = (await refused.json()) as { error: string; detail: string };
      assert.equal(body.error, 'redis_unreachable');
      assert.match(body.detail, /has not reached Redis for \d+ s/);
      assert.equal((await fetch(`${urls[0]}/health`)).status, 503);
      // The rest of the cluster goes on meanwhile.
      const other = new Client(urls[1], { token, output: new Capture() });
      for (let i = 0; i < 10; i++) other.bc('operator:add', [i, 1]);
      await other.execute();
      assert.equal((await other.br<number>())[9], 10);
      other.close();
    } finally {
      first.unblackhole(redisHost.address);
    }
    await waitFor(async () => (await fetch(`${urls[0]}/health`).catch(() => undefined))?.status === 200, 'host1 to reach Redis again', 90_000);
    const answer = await post(urls[0], '/api/v1/calls', batch);
    assert.equal(answer.status, 200);
  });
});
