import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, dobj, py, RemoteData } from '../src/index.js';
import { Capture, exactPathRequest, freePort, rawRequest, runCli, startNodeWith, startRedis, stopCluster, type TestNode, type TestRedis } from './harness.js';

const whereAndSum = py`
  import os
  def where_and_sum(table):
      return [os.environ["KS_NODE_NAME"], sum(table.obj()["rows"])]`;

const madeInPython = py`
  from kitchensink import RemoteData
  def make(n): return RemoteData(obj={"made": n}).save(prefix="py/")`;

/**
 * Runs what a new user runs on three nodes through `client`: bulk calls, a save on one host,
 * a call routed to its data, a save from Python, a copy to every host, reads and a delete.
 */
async function exerciseCluster(client: Client): Promise<void> {
  for (let i = 0; i < 30; i++) client.bc('operator:add', [i, 1000]);
  await client.execute();
  assert.deepEqual(await client.br(), Array.from({ length: 30 }, (_, i) => i + 1000));

  const hosts = (await client.hosts()).map((h) => h.name).sort();
  assert.equal(hosts.length, 3);
  const table = await dobj({ rows: [1, 2, 3, 4] }, { client }).save({ host: hosts[1], prefix: 'first-use/' });
  assert.deepEqual((await client.dataInfo([table.dataUrl!]))[table.dataUrl!].holders, [hosts[1]]);
  for (let k = 0; k < 3; k++) client.bc(whereAndSum, [table]);
  await client.execute();
  assert.deepEqual(await client.br(), [
    [hosts[1], 10],
    [hosts[1], 10],
    [hosts[1], 10],
  ]);
  assert.deepEqual(await table.obj(), { rows: [1, 2, 3, 4] });

  const made = await client.call<RemoteData>(madeInPython, [7]);
  assert.deepEqual(await made.obj(), { made: 7 });

  assert.deepEqual(await table.pipeline(), hosts);
  assert.deepEqual((await client.dataInfo([table.dataUrl!]))[table.dataUrl!].holders, hosts);
  assert.deepEqual(await new RemoteData({ dataUrl: table.dataUrl!, client }).obj(), { rows: [1, 2, 3, 4] });

  await table.delete();
  await made.delete();
  assert.deepEqual(await client.dataInfo([table.dataUrl!, made.dataUrl!]), {});
}

describe("first use: three nodes started as kitchensink's README starts them", function () {
  let redis: TestRedis;
  let nodes: TestNode[] = [];
  let ports: number[] = [];
  let connection: string;
  let client: Client;

  before(async function () {
    redis = await startRedis([], { tcpPort: await freePort() });
    connection = `tcp://127.0.0.1:${redis.url.split(':').pop()}?db=3`;
    ports = [await freePort(), await freePort(), await freePort()];
    nodes = await Promise.all(
      ports.map((port, k) =>
        startNodeWith(`readme${k}`, ['--no-redis', `--node-url=http://127.0.0.1:${port}/`, '--num-workers', '1', '--redis-connection', connection]),
      ),
    );
    client = new Client(`http://127.0.0.1:${ports[0]}/`, { output: new Capture() });
  });

  after(async function () {
    await stopCluster(redis, nodes, client);
  });

  it('listens on the port of --node-url and registers that url', async function () {
    for (const [k, node] of nodes.entries()) {
      assert.equal(node.url, `http://127.0.0.1:${ports[k]}`);
      assert.equal((await rawRequest(`http://127.0.0.1:${ports[k]}`, 'GET', '/health')).status, 200);
    }
    const urls = (await client.hosts()).map((h) => h.url).sort();
    assert.deepEqual(urls, ports.map((p) => `http://127.0.0.1:${p}`).sort());
  });

  it('answers a route glued to a url with a trailing slash, as curl users write it', async function () {
    const put = await exactPathRequest(nodes[0].url, 'PUT', '//api/v1/data/glued/x?fmt=raw', 'hello');
    assert.equal(put.status, 201, put.body);
    const hosts = await exactPathRequest(nodes[0].url, 'GET', '//api/v1/hosts');
    assert.equal(JSON.parse(hosts.body).hosts.length, 3);
    assert.equal((await exactPathRequest(nodes[0].url, 'DELETE', '//api/v1/data/glued/x')).status, 200);
  });

  it('keeps its keys in the db the connection names', async function () {
    const db3 = redis.client();
    await db3.select(3);
    assert.equal(await db3.hlen('ks:hosts'), 3);
    const db0 = redis.client();
    assert.equal(await db0.exists('ks:hosts'), 0);
  });

  it('runs bulk calls, saves, routes by data, copies and deletes through urls with a trailing slash', async function () {
    await exerciseCluster(client);
  });

  it('lists the nodes with ks status on the same tcp:// connection', async function () {
    const status = await runCli(['status', '--redis-connection', connection]);
    assert.equal(status.code, 0, status.stderr);
    for (const port of ports) assert.match(status.stdout, new RegExp(`http://127\\.0\\.0\\.1:${port}\\s`));
  });
});

/** One HTTP proxy in front of several nodes: `/<prefix>/...` goes to that node's port, without the prefix. */
function startPrefixProxy(targets: Map<string, number>): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const m = /^\/([^/]+)(\/.*)$/.exec(req.url ?? '');
    const port = m && targets.get(m[1]);
    if (!m || !port) {
      res.writeHead(502, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'bad_gateway', detail: `no node at ${req.url}` }));
      return;
    }
    const upstream = httpRequest({ host: '127.0.0.1', port, method: req.method, path: m[2], headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port })));
}

describe('nodes behind a proxy that adds a path prefix (--node-url and --node-port both given)', function () {
  let redis: TestRedis;
  let proxy: { server: Server; port: number };
  let nodes: TestNode[] = [];
  let client: Client;

  before(async function () {
    redis = await startRedis();
    const ports = [await freePort(), await freePort(), await freePort()];
    proxy = await startPrefixProxy(new Map(ports.map((port, k) => [`n${k}`, port])));
    nodes = await Promise.all(
      ports.map((port, k) =>
        startNodeWith(`proxied${k}`, ['--no-redis', '--redis-connection', redis.url, '--num-workers', '1', '--node-url', `http://127.0.0.1:${proxy.port}/n${k}/`, '--node-port', String(port)]),
      ),
    );
    client = new Client(`http://127.0.0.1:${proxy.port}/n0/`, { output: new Capture() });
  });

  after(async function () {
    client?.close();
    await Promise.all(nodes.map((n) => n.stop()));
    proxy?.server.closeAllConnections();
    await new Promise((resolve) => (proxy ? proxy.server.close(resolve) : resolve(undefined)));
    await redis?.stop();
  });

  it('registers the proxy url and serves every route through it', async function () {
    const urls = (await client.hosts()).map((h) => h.url).sort();
    assert.deepEqual(urls, [0, 1, 2].map((k) => `http://127.0.0.1:${proxy.port}/n${k}`));
    await exerciseCluster(client);
  });

  it('serves the dashboard, its assets and its live feed through the prefix, by relative urls', async function () {
    const page = `http://127.0.0.1:${proxy.port}/n1/dashboard`;
    const redirect = await fetch(`${page}/`, { redirect: 'manual' });
    assert.equal(redirect.status, 301);
    assert.equal(new URL(redirect.headers.get('location')!, `${page}/`).href, page);
    const html = await (await fetch(page)).text();
    const assets = [...html.matchAll(/(?:href|src)="(dashboard\/[^"]+)"/g)].map((m) => new URL(m[1], page).href);
    assert.equal(assets.length, 4);
    for (const asset of assets) {
      assert.ok(asset.startsWith(`http://127.0.0.1:${proxy.port}/n1/dashboard/`), asset);
      assert.equal((await fetch(asset)).status, 200, asset);
    }
    // The page reads its feed at 'api/v1/events', relative to itself.
    const stop = new AbortController();
    const feed = await fetch(new URL('api/v1/events', page), { signal: stop.signal });
    assert.match(feed.headers.get('content-type')!, /text\/event-stream/);
    const reader = feed.body!.getReader();
    let text = '';
    while (!text.includes('event: cluster')) text += new TextDecoder().decode((await reader.read()).value);
    assert.match(text, new RegExp(`"url":"http://127\\.0\\.0\\.1:${proxy.port}/n2"`));
    stop.abort();
  });
});

describe('ks: user errors end in one line and a non-zero exit', function () {
  let scratch: string;

  before(function () {
    scratch = mkdtempSync(join(tmpdir(), 'ks-cli-errors-'));
  });
  after(function () {
    rmSync(scratch, { recursive: true, force: true });
  });

  async function assertOneLineError(args: string[], why: RegExp): Promise<void> {
    const { code, stdout, stderr } = await runCli(args);
    assert.notEqual(code, 0, `${args.join(' ')} exited 0`);
    assert.equal(stdout, '');
    const lines = stderr.trim().split('\n');
    assert.equal(lines.length, 1, `${args.join(' ')} wrote:\n${stderr}`);
    assert.match(lines[0], why);
    assert.doesNotMatch(stderr, /\n\s+at /);
  }

  it('names the accepted forms of a bad --redis-connection', async function () {
    await assertOneLineError(['status', '--redis-connection', 'localhost:6379'], /accepted|give redis:\/\/.*tcp:\/\/host:port\?db=N/);
    await assertOneLineError(['start', '--datadir', scratch, '--redis-connection', 'ftp://h:1'], /unknown scheme ftp:.*unix:\/\/\/path/);
  });

  it('says when no Redis answers', async function () {
    const port = await freePort();
    await assertOneLineError(['status', '--redis-connection', `tcp://127.0.0.1:${port}?db=9`], /no Redis answers at tcp:\/\/127\.0\.0\.1:\d+\?db=9: .*ECONNREFUSED/);
    await assertOneLineError(['start', '--datadir', scratch, '--no-redis', '--redis-connection', `redis://127.0.0.1:${port}`], /no Redis answers.*--no-redis/);
  });

  it('advertises the port it picked for a --node-url with port 0', async function () {
    const redis = await startRedis();
    try {
      const node = await startNodeWith('port0', ['--no-redis', '--redis-connection', redis.url, '--num-workers', '1', '--node-url', 'http://127.0.0.1:0/']);
      try {
        const port = Number(/^http:\/\/127\.0\.0\.1:(\d+)$/.exec(node.url)?.[1]);
        assert.ok(port > 0, node.url);
        assert.equal((await rawRequest(node.url, 'GET', '/health')).status, 200);
      } finally {
        await node.stop();
      }
    } finally {
      await redis.stop();
    }
  });

  it('refuses a --node-url that is not an http url', async function () {
    await assertOneLineError(['start', '--datadir', scratch, '--node-url', '127.0.0.1:6323'], /node url "127.0.0.1:6323" is not a url: give http:\/\/host:port\//);
  });

  it('says which port it cannot listen on, and where that port came from', async function () {
    const redis = await startRedis();
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const port = (taken.address() as { port: number }).port;
      await assertOneLineError(
        ['start', '--datadir', scratch, '--no-redis', '--redis-connection', redis.url, '--node-url', `http://127.0.0.1:${port}/`],
        new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(the port of --node-url.*EADDRINUSE`),
      );
    } finally {
      await new Promise((resolve) => taken.close(resolve));
      await redis.stop();
    }
  });
});
