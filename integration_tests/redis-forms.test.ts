import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Client, py } from '../src/index.js';
import { Capture, freePort, runCli, spawnRedisServer, startNodeWith, stopCluster, testKeys, waitFor, waitsAnswered, type TestNode } from './harness.js';

/** A CA, and a certificate it signed for 127.0.0.1 and localhost, made by openssl in `dir`. */
function makeCertificates(dir: string, name: string): { ca: string; cert: string; key: string } {
  const at = (file: string) => join(dir, `${name}-${file}`);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', at('ca.key'), '-out', at('ca.pem'), '-days', '1', '-subj', `/CN=${name} test CA`);
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', at('server.key'), '-out', at('server.csr'), '-subj', '/CN=localhost');
  writeFileSync(at('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl('x509', '-req', '-in', at('server.csr'), '-CA', at('ca.pem'), '-CAkey', at('ca.key'), '-CAcreateserial', '-out', at('server.pem'), '-days', '1', '-extfile', at('ext.cnf'));
  return { ca: at('ca.pem'), cert: at('server.pem'), key: at('server.key') };
}

async function bulkAdd(client: Client, n: number): Promise<number[]> {
  for (let i = 0; i < n; i++) client.bc('operator:add', [i, 1]);
  await client.execute();
  return client.br<number>();
}

describe('Redis over TLS (rediss://)', function () {
  this.timeout(60_000);
  const dir = mkdtempSync(join(tmpdir(), 'ks-tls-'));
  let redis: ReturnType<typeof spawnRedisServer>;
  let node: TestNode | undefined;
  let client: Client | undefined;
  let url = '';
  let wrongCa = '';

  before(async function () {
    const good = makeCertificates(dir, 'good');
    wrongCa = makeCertificates(dir, 'other').ca;
    const port = await freePort();
    redis = spawnRedisServer(['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--tls-cert-file', good.cert, '--tls-key-file', good.key, '--tls-ca-cert-file', good.ca, '--tls-auth-clients', 'no', '--save', '', '--appendonly', 'no', '--dir', dir]);
    url = `rediss://127.0.0.1:${port}?ca=${good.ca}`;
    await waitFor(async () => {
      const probe = new Redis({ host: '127.0.0.1', port, tls: { ca: readFileSync(good.ca) }, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
      probe.on('error', () => {});
      const answered = await probe.connect().then(() => probe.ping(), () => undefined);
      probe.disconnect();
      return answered === 'PONG';
    }, 'redis-server to answer over TLS');
  });

  after(async function () {
    await stopCluster(undefined, [node], client);
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs a cluster on a Redis that speaks only TLS, trusting the CA given in the url', async function () {
    // No --no-redis: a TLS Redis is never one a node starts itself.
    node = await startNodeWith('tls-a', ['--redis-connection', url, '--node-port', '0', '--node-name', 'tls-a', '--num-workers', '1']);
    client = new Client(node.url, { output: new Capture() });
    const sums = await bulkAdd(client, 50);
    assert.deepEqual(sums.slice(0, 3), [1, 2, 3]);
    const status = await runCli(['status', '--redis-connection', url]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^tls-a\s+http:\/\/127\.0\.0\.1:\d+/m);
  });

  it('says in one line that the certificate is not trusted, with the wrong CA', async function () {
    const wrong = url.replace(/\?ca=.*$/, `?ca=${wrongCa}`);
    const started = await runCli(['start', '--datadir', join(dir, 'wrong'), '--redis-connection', wrong, '--node-port', '0']);
    assert.equal(started.code, 1);
    assert.equal(started.stderr.trim().split('\n').length, 1, started.stderr);
    assert.match(started.stderr, /^kitchensink: cannot start: no Redis answers at rediss:\/\/127\.0\.0\.1:\d+\?ca=\S+: self-signed certificate in certificate chain$/m);
    const unreadable = await runCli(['start', '--datadir', join(dir, 'wrong'), '--redis-connection', url.replace(/\?ca=.*$/, '?ca=/nope/ca.pem'), '--node-port', '0']);
    assert.equal(unreadable.code, 1);
    assert.match(unreadable.stderr, /names a CA file that cannot be read \(ENOENT\)/);
  });
});

/** A master, its replica in sync, and one Sentinel watching them as `ksmaster` (down after 1 s), in `dir`. */
async function startSentinelGroup(dir: string) {
  const ports = { master: await freePort(), replica: await freePort(), sentinel: await freePort() };
  const plain = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
  const master = spawnRedisServer(['--port', String(ports.master), ...plain, '--dir', dir]);
  const replica = spawnRedisServer(['--port', String(ports.replica), ...plain, '--dir', dir, '--replicaof', '127.0.0.1', String(ports.master)]);
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(conf, [
    `port ${ports.sentinel}`,
    'bind 127.0.0.1',
    `dir ${dir}`,
    `sentinel monitor ksmaster 127.0.0.1 ${ports.master} 1`,
    'sentinel down-after-milliseconds ksmaster 1000',
    'sentinel failover-timeout ksmaster 3000',
    '',
  ].join('\n'));
  const servers = [master, replica, spawnRedisServer([conf, '--sentinel'])];
  const sentinel = new Redis({ port: ports.sentinel, lazyConnect: true, retryStrategy: () => 100 });
  sentinel.on('error', () => {});
  try {
    await waitFor(async () => {
      const replicas = (await sentinel.call('SENTINEL', 'REPLICAS', 'ksmaster').catch(() => [])) as string[][];
      return replicas.some((fields) => fields.includes(String(ports.replica)) && fields[fields.indexOf('flags') + 1] === 'slave');
    }, 'the sentinel to see the master and its replica');
    const onMaster = new Redis({ port: ports.master });
    await waitFor(async () => /^slave0:.*state=online/m.test(await onMaster.info('replication')), 'the replica to be in sync');
    onMaster.disconnect();
  } finally {
    sentinel.disconnect();
  }
  return {
    ports,
    master,
    replica,
    url: `redis-sentinel://127.0.0.1:${ports.sentinel}/ksmaster`,
    /** Resolves once the Sentinel names the replica as the master. */
    async promoted(): Promise<void> {
      const asking = new Redis({ port: ports.sentinel });
      asking.on('error', () => {});
      try {
        await waitFor(async () => ((await asking.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'ksmaster')) as string[])[1] === String(ports.replica), 'the sentinel to promote the replica', 30_000);
      } finally {
        asking.disconnect();
      }
    },
    stop: () => Promise.all(servers.map((server) => server.stop())),
  };
}

type SentinelGroup = Awaited<ReturnType<typeof startSentinelGroup>>;

/**
 * The hooks of a describe whose tests run one node on a Sentinel group of their own: the group
 * starts before them; the node, its client, the group and `dir` go after them.
 */
function onSentinelGroup(dirPrefix: string) {
  const dir = mkdtempSync(join(tmpdir(), dirPrefix));
  const suite = {
    dir,
    group: undefined as unknown as SentinelGroup,
    node: undefined as TestNode | undefined,
    client: undefined as Client | undefined,
    /** Starts the node `name` on the group's Sentinel url; answers a client of it. */
    async start(name: string): Promise<Client> {
      suite.node = await startNodeWith(name, ['--redis-connection', suite.group.url, '--node-port', '0', '--node-name', name, '--num-workers', '1']);
      suite.client = new Client(suite.node.url, { output: new Capture() });
      return suite.client;
    },
  };
  before(async function () {
    suite.group = await startSentinelGroup(dir);
  });
  after(async function () {
    await stopCluster(undefined, [suite.node], suite.client);
    await suite.group?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return suite;
}

describe('Redis behind Sentinel (redis-sentinel://), through a failover', function () {
  this.timeout(90_000);
  const suite = onSentinelGroup('ks-sentinel-');

  it('runs calls on the master Sentinel names, and goes on after the master dies and a replica takes over', async function () {
    const { group } = suite;
    const client = await suite.start('sentinel-a');
    assert.equal((await bulkAdd(client, 20))[19], 20);
    // The node answered the batch once the replica had it.
    assert.ok((await waitsAnswered(group.ports.master)) >= 1, 'the node asked the master to WAIT for its replica');
    // A batch answered just before the master dies is run all the same after the failover.
    for (let i = 0; i < 5; i++) client.bc('operator:add', [i, 100]);
    await client.execute();
    await group.master.stop();
    await group.promoted();
    assert.deepEqual(await client.br(), [100, 101, 102, 103, 104]);
    await waitFor(() => client.call('operator:add', [2, 3], {}, { timeout: 5 }).then((v) => v === 5, () => false), 'a call through the new master', 30_000);
    assert.equal((await bulkAdd(client, 20))[0], 1);
    const status = await runCli(['status', '--redis-connection', group.url]);
    assert.match(status.stdout, /^sentinel-a\s/m);
  });

  it('says in one line that Sentinel knows no such master', async function () {
    const started = await runCli(['start', '--datadir', join(suite.dir, 'nope'), '--redis-connection', `redis-sentinel://127.0.0.1:${suite.group.ports.sentinel}/nope`, '--node-port', '0']);
    assert.equal(started.code, 1);
    assert.equal(started.stderr.trim().split('\n').length, 1, started.stderr);
    assert.match(started.stderr, /^kitchensink: cannot start: no Redis answers at redis-sentinel:\/\/127\.0\.0\.1:\d+\/nope: the Sentinel answered: ERR No such master with that name$/m);
  });
});

describe('a result the old master had not passed to its replica', function () {
  this.timeout(120_000);
  const suite = onSentinelGroup('ks-sentinel-lost-');

  it('runs the call again after the failover, and the client gets its result', async function () {
    const { group } = suite;
    const client = await suite.start('sentinel-b');
    const runs = join(suite.dir, 'runs.txt');
    client.bc(py`
      import time
      def f(runs):
          with open(runs, "a") as log:
              log.write("run\n")
          time.sleep(2)
          return "done"`, [runs]);
    const [taskId] = await client.execute();
    const onMaster = new Redis({ port: group.ports.master });
    onMaster.on('error', () => {});
    await waitFor(async () => (await onMaster.get(testKeys.claim(taskId)))?.includes('/'), 'the call to start');
    // The replica's link breaks and cannot come back (a wrong password): the result goes to the master alone.
    const onReplica = new Redis({ port: group.ports.replica });
    await onReplica.config('SET', 'masterauth', 'wrong');
    await onMaster.client('KILL', 'TYPE', 'replica');
    await waitFor(async () => (await onMaster.get(testKeys.claim(taskId))) === 'done', 'the call to end on the master', 30_000);
    assert.ok(!/^slave0:/m.test(await onMaster.info('replication')), 'the replica was cut off all along');
    onMaster.disconnect();
    await group.master.stop();
    await onReplica.config('SET', 'masterauth', '');
    onReplica.disconnect();
    await group.promoted();
    assert.deepEqual(await client.br(), ['done']);
    assert.equal(readFileSync(runs, 'utf8'), 'run\nrun\n', 'it ran a second time on the new master');
  });
});
