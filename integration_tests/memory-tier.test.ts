import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { Client, dr, du, py, RemoteData } from '../src/index.js';
import { rawRequest, repoRoot, runCli, startNode, startRedis, stopCluster, waitFor, type TestNode, type TestRedis } from './harness.js';

const crcOf = (bytes: Buffer) => crc32(bytes).toString(16).padStart(8, '0');

describe('the memory tier, and a starting node reconciling the registry with what it holds', function () {
  let redis: TestRedis;
  let keeper: TestNode;
  let ramOnly: TestNode;
  let client: Client;
  let datadir: string;
  let memoryDir: string;
  const keeperArgs = () => ['--datadir', datadir];

  before(async function () {
    datadir = mkdtempSync(join(tmpdir(), 'ks-keeper-'));
    memoryDir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'ks-ram-'));
    redis = await startRedis();
    [keeper, ramOnly] = await Promise.all([startNode(redis.url, 'keeper', keeperArgs()), startNode(redis.url, 'ramonly', ['--memory-datadir', memoryDir])]);
    client = new Client(keeper.url);
  });

  after(async function () {
    await stopCluster(redis, [keeper, ramOnly], client);
    rmSync(datadir, { recursive: true, force: true });
    rmSync(memoryDir, { recursive: true, force: true });
  });

  it('keeps save({memory: true}) and Python save(memory=True) out of the datadir, checksummed and readable', async function () {
    const blob = randomBytes(2_000_000);
    const inMemory = await dr(blob, { client }).save({ url: 'ram/one.bin', memory: true });
    assert.equal(existsSync(join(datadir, 'data', 'ram', 'one.bin')), false);
    assert.equal((await client.dataInfo(['ram/one.bin']))['ram/one.bin'].crc32, crcOf(blob));
    assert.ok((await du('ram/one.bin', { client }).raw()).equals(blob));
    assert.equal(await client.call(py`def size(d): return len(open(d.local_path(), "rb").read())`, [inMemory]), blob.length);
    const fromPython = await client.call<RemoteData>(py`
      from kitchensink import RemoteData
      def f(): return RemoteData(raw=b"kept in memory").save(url="ram/python.bin", memory=True)`);
    assert.equal((await fromPython.raw()).toString(), 'kept in memory');
    assert.equal(existsSync(join(datadir, 'data', 'ram', 'python.bin')), false);
    // A --memory-datadir node keeps every save there.
    await dr(Buffer.from('ram only'), { client }).save({ url: 'ram/default.bin', host: 'ramonly' });
    assert.ok(readdirSync(join(memoryDir, 'data', 'ram')).includes('default.bin'));
    assert.equal(existsSync(join(ramOnly.datadir, 'data', 'ram', 'default.bin')), false);
  });

  it('forgets memory-tier data when its node restarts, says what was lost, and never serves files the registry lacks', async function () {
    await dr(Buffer.from('on disk'), { client }).save({ url: 'disk/kept.bin' });
    await dr(Buffer.from('in memory'), { client }).save({ url: 'ram/alone.bin', memory: true });
    mkdirSync(join(datadir, 'data', 'by-hand'), { recursive: true });
    writeFileSync(join(datadir, 'data', 'by-hand', 'copied.bin'), 'rsynced in');
    await keeper.stop();
    keeper = await startNode(redis.url, 'keeper', keeperArgs());
    client.close();
    client = new Client(keeper.url);
    await waitFor(() => /held by this host alone and are lost: .*ram\/alone\.bin/.test(keeper.logs()), 'the loss in the log');
    assert.match(keeper.logs(), /1 files in the datadir are not in the registry: they are not served/);
    const info = await client.dataInfo(['ram/alone.bin', 'ram/one.bin', 'disk/kept.bin']);
    assert.deepEqual(Object.keys(info), ['disk/kept.bin']);
    assert.equal((await du('disk/kept.bin', { client }).raw()).toString(), 'on disk');
    const handCopied = await rawRequest(keeper.url, 'GET', '/api/v1/data/by-hand/copied.bin');
    assert.equal(handCopied.status, 404);
    assert.match(JSON.stringify(handCopied.json), /not in the registry: it is not served/);
  });

  it('registers files copied in by hand with ks register, then serves and routes to them; other bytes under a known url are refused', async function () {
    const registered = await runCli(['register', '--datadir', datadir, '--node-name', 'keeper', 'by-hand/*', '--redis-connection', redis.url]);
    assert.equal(registered.code, 0, registered.stderr);
    assert.match(registered.stdout, /registered: by-hand\/copied\.bin \(10 bytes, crc32 [0-9a-f]{8}, raw\)/);
    assert.match(registered.stdout, /1 registered, 0 already known \(holder added\), 0 refused/);
    assert.equal((await du('by-hand/copied.bin', { client }).raw()).toString(), 'rsynced in');
    // A call on it, sent through another node, runs where the file is.
    const elsewhere = new Client(ramOnly.url);
    try {
      const ranOn = await elsewhere.call(py`
        import os
        def f(d): return [os.environ["KS_NODE_NAME"], open(d.local_path()).read()]`, [du('by-hand/copied.bin', { client: elsewhere })]);
      assert.deepEqual(ranOn, ['keeper', 'rsynced in']);
    } finally {
      elsewhere.close();
    }
    // The same url with other bytes on another node's disk: refused, never overwritten.
    mkdirSync(join(ramOnly.datadir, 'data', 'by-hand'), { recursive: true });
    writeFileSync(join(ramOnly.datadir, 'data', 'by-hand', 'copied.bin'), 'other bytes');
    const refused = await runCli(['register', '--datadir', ramOnly.datadir, '--node-name', 'ramonly', '--redis-connection', redis.url]);
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /refused: by-hand\/copied\.bin: data "by-hand\/copied\.bin" is registered with crc32 [0-9a-f]{8}, this copy has [0-9a-f]{8}/);
    assert.deepEqual((await client.dataInfo(['by-hand/copied.bin']))['by-hand/copied.bin'].holders, ['keeper']);
    const missing = await runCli(['register', '--datadir', '/nonexistent', '--node-name', 'keeper', '--redis-connection', redis.url]);
    assert.match(missing.stderr, /\/nonexistent\/data does not exist: is \/nonexistent a node's --datadir\?/);
  });

  it('warns when --memory-datadir is not a tmpfs', async function () {
    // The checkout is on a disk (a tmpfs checkout would make this test moot, so it says so).
    const onDisk = mkdtempSync(join(repoRoot, '.ks-not-tmpfs-'));
    assert.notEqual(statfsSync(onDisk).type, 0x01021994, 'the checkout is on a tmpfs');
    const node = await startNode(redis.url, 'notram', ['--memory-datadir', onDisk]);
    try {
      assert.match(node.logs(), /WARNING: --memory-datadir \S+ is not a tmpfs: its data is not fsynced, yet it is written to a disk/);
    } finally {
      await node.stop();
      rmSync(onDisk, { recursive: true, force: true });
    }
  });
});
