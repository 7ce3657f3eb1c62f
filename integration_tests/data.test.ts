import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, py, RemoteData, RemoteError, NodeRequestError, dobj, dr, dp, du } from '../src/index.js';
import { Capture, exactPathRequest, rawRequest, startNode, startRedis, stopCluster, testKeys, type TestNode, type TestRedis } from './harness.js';

const hostOf = py`
  import os, time
  def where(*data, pause=0):
      for d in data:
          d.local_path()
      time.sleep(pause)
      return os.environ["KS_NODE_NAME"]`;

describe('remote data on three nodes', function () {
  let redis: TestRedis;
  let nodes: TestNode[] = [];
  let client: Client;
  let scratch: string;

  before(async function () {
    redis = await startRedis();
    nodes = await Promise.all([
      startNode(redis.url, 'node1'),
      startNode(redis.url, 'node2'),
      startNode(redis.url, 'node3'),
      startNode(redis.url, 'reader', ['--read-only', '--queue', 'readers']),
    ]);
    client = new Client(nodes[0].url, { output: new Capture() });
    scratch = mkdtempSync(join(tmpdir(), 'ks-data-test-'));
  });

  after(async function () {
    await stopCluster(redis, nodes, client);
    rmSync(scratch, { recursive: true, force: true });
  });

  it('runs calls where their data was saved', async function () {
    const data = await dobj({ rows: [1, 2, 3] }, { client }).save({ host: 'node2', prefix: 'where/' });
    assert.match(data.dataUrl!, /^where\//);
    assert.deepEqual((await client.dataInfo([data.dataUrl!]))[data.dataUrl!].holders, ['node2']);
    for (let k = 0; k < 3; k++) client.bc(hostOf, [data]);
    await client.execute();
    assert.deepEqual(await client.br(), Array(3).fill('node2'));
  });

  it('ranks hosts by bytes to copy: 1 MB on node1, 100 kB on node2', async function () {
    const big = await dr(randomBytes(1_000_000), { client }).save({ host: 'node1' });
    const small = await dr(randomBytes(100_000), { client }).save({ host: 'node2' });
    for (let k = 0; k < 3; k++) client.bc(hostOf, [big, small], { pause: 1 });
    await client.execute();
    const hosts = await client.br<string>();
    assert.equal(hosts[0], 'node1', 'the first call runs where the most bytes already are');
    assert.deepEqual([...hosts].sort(), ['node1', 'node2', 'node3'], 'idle hosts take the copies queued for them');
    // The calls that ran on node2 and node3 copied what they lacked, and the copies are registered.
    const info = await client.dataInfo([big.dataUrl!, small.dataUrl!]);
    assert.deepEqual(info[big.dataUrl!].holders, ['node1', 'node2', 'node3']);
    assert.deepEqual(info[small.dataUrl!].holders, ['node1', 'node2', 'node3']);
  });

  it('gathers calls that would copy dataThreshold or more anywhere on one host, copying each datum there once', async function () {
    const gathering = new Client(nodes[0].url, { output: new Capture(), dataThreshold: 100_000 });
    try {
      const a = await dr(randomBytes(300_000), { client }).save({ host: 'node1' });
      const b = await dr(randomBytes(200_000), { client }).save({ host: 'node2' });
      const c = await dr(randomBytes(250_000), { client }).save({ host: 'node3' });
      // Every call copies 200 kB or more wherever it runs. Gathered on node1, b and c are
      // copied once (450 kB); on their own cheapest hosts the calls would copy to two hosts.
      for (const args of [[a, b], [b, c], [c, a], [a, b]]) gathering.bc(hostOf, args);
      await gathering.execute();
      assert.deepEqual(await gathering.br(), Array(4).fill('node1'));
      const info = await gathering.dataInfo([a.dataUrl!, b.dataUrl!, c.dataUrl!]);
      assert.deepEqual([a, b, c].map((d) => info[d.dataUrl!].holders), [['node1'], ['node1', 'node2'], ['node1', 'node3']]);
      await Promise.all([a, b, c].map((d) => d.delete()));
    } finally {
      gathering.close();
    }
  });

  it('converts obj, raw and localPath both ways', async function () {
    const obj = await dobj({ a: [1, 2], b: 'x', c: new Uint8Array([5]) }, { client }).save();
    const back = await du(obj.dataUrl!, { client }).obj<{ a: number[]; b: string; c: Uint8Array }>();
    assert.deepEqual([back.a, back.b, [...back.c]], [[1, 2], 'x', [5]]);
    const bytes = randomBytes(50_000);
    const raw = await dr(bytes, { client }).save();
    assert.ok((await du(raw.dataUrl!, { client }).raw()).equals(bytes));
    const file = join(scratch, 'upload.bin');
    writeFileSync(file, bytes);
    const fromFile = await dp(file, { client }).save({ url: 'files/upload.bin' });
    const downloaded = await du(fromFile.dataUrl!, { client }).localPath();
    assert.ok(readFileSync(downloaded).equals(bytes));
    rmSync(downloaded);
    const seen = await client.call(py`
      import hashlib
      def f(o, r, p):
          return [o.obj()["b"], hashlib.md5(r.raw()).hexdigest(), open(p.local_path(), "rb").read() == r.raw()]`, [obj, raw, fromFile]);
    assert.deepEqual(seen, ['x', createHash('md5').update(bytes).digest('hex'), true]);
  });

  it('lets Python save data the client reads and passes on', async function () {
    const made = await client.call<RemoteData>(py`
      from kitchensink import RemoteData
      def make(n):
          return RemoteData(obj={"squares": [k * k for k in range(n)]}).save(prefix="made/")`, [5], {}, { host: 'node1' });
    assert.ok(made instanceof RemoteData);
    assert.match(made.dataUrl!, /^made\//);
    assert.deepEqual(await made.obj(), { squares: [0, 1, 4, 9, 16] });
    const total = await client.call(py`def total(d): return sum(d.obj()["squares"])`, [made]);
    assert.equal(total, 30);
    const auto = await client.call<RemoteData>(py`
      from kitchensink import RemoteData
      def f(): return RemoteData(raw=b"unsaved on return")`, [], {}, { host: 'node2' });
    assert.equal((await auto.raw()).toString(), 'unsaved on return');
    // Python's saves are checksummed like any upload.
    assert.equal((await client.dataInfo([auto.dataUrl!]))[auto.dataUrl!].crc32, crc32(Buffer.from('unsaved on return')).toString(16).padStart(8, '0'));
  });

  it('never stores data on a read-only node, yet runs calls on data there', async function () {
    const data = await dr(Buffer.from('read me'), { client }).save({ host: 'node3' });
    const value = await client.call(py`def f(d): return d.raw().decode()`, [data], {}, { queue: 'readers' });
    assert.equal(value, 'read me');
    assert.deepEqual((await client.dataInfo([data.dataUrl!]))[data.dataUrl!].holders, ['node3']);
    const refused = await dr(Buffer.from('x'), { client }).save({ host: 'reader' }).catch((e: unknown) => e);
    assert.ok(refused instanceof NodeRequestError && refused.status === 403, String(refused));
  });

  it('pipelines a copy to every host that stores data, and deletes every copy', async function () {
    const data = await dr(randomBytes(200_000), { client }).save({ host: 'node1', url: 'shared/everywhere.bin' });
    assert.deepEqual(await data.pipeline(), ['node1', 'node2', 'node3']);
    assert.deepEqual((await client.dataInfo([data.dataUrl!]))[data.dataUrl!].holders, ['node1', 'node2', 'node3']);
    assert.deepEqual(await client.pathSearch('shared/*'), ['shared/everywhere.bin']);
    await data.delete();
    assert.deepEqual(await client.dataInfo([data.dataUrl!]), {});
    assert.deepEqual(await client.pathSearch('shared/*'), []);
  });

  it('checks every copy against its CRC-32: a corrupt holder is passed over, never served whole, and alone registers nothing', async function () {
    const blob = randomBytes(3_000_000);
    const replicate = (node: TestNode, url: string) => rawRequest(node.url, 'POST', `/api/v1/data/${url}/replicate`, '{}');
    const corrupt = (node: TestNode, url: string) => {
      const path = join(node.datadir, 'data', url);
      const bytes = readFileSync(path);
      bytes[1_234_567] ^= 0xff; // same size, one byte flipped: only the checksum can tell
      writeFileSync(path, bytes);
    };
    // The upload's CRC is registered, and a download is checked against it.
    const lone = await dr(blob, { client }).save({ host: 'node1', url: 'crc/lone.bin' });
    assert.equal((await client.dataInfo([lone.dataUrl!]))[lone.dataUrl!].crc32, crc32(blob).toString(16).padStart(8, '0'));
    assert.ok((await du(lone.dataUrl!, { client }).raw()).equals(blob));
    // Only a corrupt copy: the holder refuses to send it whole and says why in its log; the
    // copy fails naming the url and the holder, and leaves nothing.
    corrupt(nodes[0], lone.dataUrl!);
    const refused = await replicate(nodes[1], lone.dataUrl!);
    assert.equal(refused.status, 404, JSON.stringify(refused.json));
    assert.match(JSON.stringify(refused.json), /crc\/lone\.bin.*could not be fetched from any holder \(node1: /);
    assert.match(nodes[0].logs(), /data "crc\/lone\.bin" on this host has crc32 [0-9a-f]{8}, expected [0-9a-f]{8}: its copy is corrupt and is not served/);
    assert.deepEqual((await client.dataInfo([lone.dataUrl!]))[lone.dataUrl!].holders, ['node1']);
    assert.equal(existsSync(join(nodes[1].datadir, 'data', lone.dataUrl!)), false);
    await assert.rejects(du(lone.dataUrl!, { client }).raw(), /crc\/lone\.bin: the download broke off .*fails its CRC/);
    // A corrupt and a good holder: whichever the reader tries first, it keeps the good bytes.
    const two = await dr(blob, { client }).save({ host: 'node1', url: 'crc/two.bin' });
    assert.equal((await replicate(nodes[1], two.dataUrl!)).status, 200);
    corrupt(nodes[0], two.dataUrl!);
    for (let round = 0; round < 4; round++) {
      const copied = await replicate(nodes[2], two.dataUrl!);
      assert.equal(copied.status, 200, JSON.stringify(copied.json));
      assert.ok(readFileSync(join(nodes[2].datadir, 'data', two.dataUrl!)).equals(blob), 'the copy holds the good bytes');
      assert.equal((await rawRequest(nodes[2].url, 'DELETE', `/api/v1/data/${two.dataUrl!}`)).status, 200);
    }
    // A holder that lost its file answers 404: the copy says so, naming the holder.
    rmSync(join(nodes[0].datadir, 'data', lone.dataUrl!));
    const missing = await replicate(nodes[1], lone.dataUrl!);
    assert.equal(missing.status, 404, JSON.stringify(missing.json));
    assert.match(JSON.stringify(missing.json), /node1: http:\S+: 404 not_found: no data/);
    await lone.delete();
    await two.delete();
  });

  it('reads an entry written before CRCs: checks a copy by its md5 once, then registers the CRC in its place', async function () {
    const r = redis.client();
    const md5 = (bytes: Buffer) => createHash('md5').update(bytes).digest('hex');
    // As the md5 version left them: a file on node1, and its entry with an md5 and no CRC.
    const leave = async (url: string, bytes: Buffer, registeredMd5: string) => {
      mkdirSync(join(nodes[0].datadir, 'data', 'legacy'), { recursive: true });
      writeFileSync(join(nodes[0].datadir, 'data', url), bytes);
      await r.hset(testKeys.data(url), { size: bytes.length, md5: registeredMd5, fmt: 'raw', createdAt: 1 });
      await r.sadd(testKeys.dataHosts(url), 'node1');
    };
    const blob = randomBytes(500_000);
    await leave('legacy/old.bin', blob, md5(blob));
    const before = (await client.dataInfo(['legacy/old.bin']))['legacy/old.bin'];
    assert.deepEqual([before.md5, before.crc32], [md5(blob), undefined]);
    assert.equal((await rawRequest(nodes[1].url, 'POST', '/api/v1/data/legacy/old.bin/replicate', '{}')).status, 200);
    const after = (await client.dataInfo(['legacy/old.bin']))['legacy/old.bin'];
    assert.deepEqual([after.crc32, after.md5, after.holders], [crc32(blob).toString(16).padStart(8, '0'), undefined, ['node1', 'node2']]);
    assert.equal(await r.hget(testKeys.data('legacy/old.bin'), 'createdAt'), '1');
    // An old entry whose bytes fail their md5 is not served, and the copy is refused.
    await leave('legacy/bad.bin', blob, md5(Buffer.from('other bytes')));
    const refused = await rawRequest(nodes[1].url, 'POST', '/api/v1/data/legacy/bad.bin/replicate', '{}');
    assert.equal(refused.status, 404);
    assert.match(JSON.stringify(refused.json), /legacy\/bad\.bin.*could not be fetched from any holder \(node1: /);
    assert.match(nodes[0].logs(), /data "legacy\/bad\.bin" on this host has md5 [0-9a-f]{32}, expected [0-9a-f]{32}/);
    for (const url of ['legacy/old.bin', 'legacy/bad.bin']) await du(url, { client }).delete();
  });

  it('refuses traversal, odd urls and duplicates, and names a missing url', async function () {
    const url = nodes[0].url;
    for (const bad of ['..%2F..%2Fetc%2Fpasswd', 'a/../../b', 'a/%2e%2e/%2e%2e/b', '%2Fabs', 'a//b', 'nul%00byte', 'a/./b', 'co:lon', 'bad%zz', 'x'.repeat(1100)]) {
      const res = await exactPathRequest(url, 'PUT', `/api/v1/data/${bad}`, 'x');
      assert.equal(res.status, 400, `${bad} -> ${res.status} ${res.body}`);
      assert.ok(JSON.parse(res.body).detail);
    }
    assert.equal((await exactPathRequest(url, 'GET', '/api/v1/data/../../../etc/passwd')).status, 400);
    await dr(Buffer.from('one'), { client }).save({ url: 'dup/once' });
    const again = await dr(Buffer.from('two'), { client }).save({ url: 'dup/once' }).catch((e: unknown) => e);
    assert.ok(again instanceof NodeRequestError && again.status === 409, String(again));
    assert.equal((await du('dup/once', { client }).raw()).toString(), 'one');
    await dr(Buffer.from('in a folder'), { client }).save({ url: 'clash/inner' });
    for (const url of ['clash', 'dup/once/under']) {
      const clash = await dr(Buffer.from('x'), { client }).save({ url }).catch((e: unknown) => e);
      assert.ok(clash instanceof NodeRequestError && clash.status === 409, `${url}: ${String(clash)}`);
    }
    assert.equal((await rawRequest(url, 'GET', '/api/v1/data/clash')).status, 404, 'a folder of urls is not data');
    const missing = await client.call(py`def f(d): return 1`, [du('no/such/url', { client })]).catch((e: unknown) => e);
    assert.ok(missing instanceof RemoteError);
    assert.equal(missing.kind, 'rejected');
    assert.match(missing.message, /no\/such\/url/);
    assert.equal((await rawRequest(url, 'GET', '/api/v1/data/no/such/url')).status, 404);
  });

  it('downloads into one buffer or a file: every byte, an empty file, and a 404 naming the url', async function () {
    const blob = randomBytes(40 * 1024 * 1024 + 7);
    const data = await dr(blob, { client }).save({ host: 'node3' });
    // A pointer, not the RemoteData that holds the bytes: raw() must fetch them from node3.
    assert.ok((await du(data.dataUrl!, { client }).raw()).equals(blob));
    const file = await du(data.dataUrl!, { client }).localPath();
    assert.ok(readFileSync(file).equals(blob), 'localPath() streams it to a file, 1 MB at a time');
    rmSync(file);
    const empty = await dr(Buffer.alloc(0), { client }).save();
    assert.equal((await du(empty.dataUrl!, { client }).raw()).length, 0);
    const missing = await client.http.download(`${nodes[2].url}/api/v1/data/not/here`).catch((e: unknown) => e);
    assert.ok(missing instanceof NodeRequestError && missing.status === 404, String(missing));
    assert.match(missing.message, /not\/here/);
  });

  it('serves a byte range', async function () {
    const data = await dr(Buffer.from('0123456789'), { client }).save();
    const res = await fetch(`${nodes[0].url}/api/v1/data/${data.dataUrl}`, { headers: { range: 'bytes=2-5' } });
    assert.equal(res.status, 206);
    assert.equal(res.headers.get('content-range'), 'bytes 2-5/10');
    assert.equal(await res.text(), '2345');
    const tail = await fetch(`${nodes[0].url}/api/v1/data/${data.dataUrl}`, { headers: { range: 'bytes=-3' } });
    assert.equal(await tail.text(), '789');
    assert.equal((await fetch(`${nodes[0].url}/api/v1/data/${data.dataUrl}`, { headers: { range: 'bytes=20-30' } })).status, 416);
  });

  it('answers HEAD with the size alone, sends an empty file, and keeps serving after a reader leaves midway', async function () {
    const blob = randomBytes(24 * 1024 * 1024);
    const data = await dr(blob, { client }).save();
    const url = `${nodes[0].url}/api/v1/data/${data.dataUrl}`;
    const head = await fetch(url, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(blob.length));
    assert.equal((await head.arrayBuffer()).byteLength, 0);
    // A reader that takes the first chunk and hangs up.
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(url, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (error) => (req.destroyed ? resolve() : reject(error)));
      req.end();
    });
    const whole = Buffer.from(await (await fetch(url)).arrayBuffer());
    assert.ok(whole.equals(blob), 'a later reader gets all of it');
    const empty = await dr(Buffer.alloc(0), { client }).save();
    const res = await fetch(`${nodes[0].url}/api/v1/data/${empty.dataUrl}`);
    assert.equal(res.status, 200);
    assert.equal((await res.arrayBuffer()).byteLength, 0);
  });

  it('keeps an upload cut off midway out of the catalog', async function () {
    const request = httpRequest;
    const target = new URL(`${nodes[1].url}/api/v1/data/cut/off.bin`);
    await new Promise<void>((resolve) => {
      const req = request(target, { method: 'PUT', headers: { 'content-length': 10_000_000 } });
      req.on('error', () => resolve());
      req.write(randomBytes(1_000_000), () => setTimeout(() => req.destroy(), 50));
      req.on('close', () => resolve());
    });
    const info = await client.dataInfo(['cut/off.bin']);
    assert.deepEqual(info, {});
    const res = await rawRequest(nodes[1].url, 'GET', '/api/v1/data/cut/off.bin');
    assert.equal(res.status, 404);
  });

  it('keeps a 210 MB file put: the call runs on its holder even when busy', async function () {
    this.timeout(300_000);
    const file = join(scratch, 'big.bin');
    writeFileSync(file, Buffer.alloc(210_000_000, 7));
    const big = await dp(file, { client }).save({ host: 'node3' });
    rmSync(file);
    // node3 is busy with a slow call; node1 and node2 are idle but would copy 210 MB.
    client.bc(hostOf, [], { pause: 1.5 }, { host: 'node3' });
    client.bc(py`
      import os
      def f(d): return [os.environ["KS_NODE_NAME"], os.path.getsize(d.local_path())]`, [big]);
    await client.execute();
    const [, [host, size]] = await client.br<[string, number]>();
    assert.equal(host, 'node3');
    assert.equal(size, 210_000_000);
    assert.deepEqual((await client.dataInfo([big.dataUrl!]))[big.dataUrl!].holders, ['node3']);
    await big.delete();
  });

  it('refuses new data with 507 when free disk would drop under --min-free-disk', async function () {
    const cramped = await startNode(redis.url, 'cramped', ['--min-free-disk', String(10 ** 17)]);
    try {
      const refused = await dr(Buffer.from('x'), { client }).save({ host: 'cramped' }).catch((e: unknown) => e);
      assert.ok(refused instanceof NodeRequestError && refused.status === 507, String(refused));
      assert.match(refused.detail, /--min-free-disk/);
      assert.deepEqual(readdirSync(join(cramped.datadir, 'data')), []);
    } finally {
      await cramped.stop();
    }
  });

  it('leaves no partial file in any datadir tmp folder', async function () {
    for (const node of nodes) {
      assert.ok(existsSync(join(node.datadir, '.tmp')));
      assert.deepEqual(readdirSync(join(node.datadir, '.tmp')), [], `${node.name} left partial files`);
    }
  });
});
