import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dataRoute, nodeRoute, normalizeNodeUrl, parseNodeUrl, portOf, sameNode } from '../src/node-url.js';
import { clusterOptions, isManagedRedis, redisOptions } from '../src/node/redis-connection.js';

describe('node urls', function () {
  it('build every route without a double slash, with or without a trailing slash', function () {
    for (const base of ['http://127.0.0.1:16400', 'http://127.0.0.1:16400/', 'http://127.0.0.1:16400//']) {
      assert.equal(nodeRoute(base, '/api/v1/calls'), 'http://127.0.0.1:16400/api/v1/calls');
      assert.equal(dataRoute(base, 'a b/c', '/replicate'), 'http://127.0.0.1:16400/api/v1/data/a%20b/c/replicate');
    }
  });

  it('keep a path prefix (a proxy in front of the node)', function () {
    assert.equal(normalizeNodeUrl('http://proxy/ks/'), 'http://proxy/ks');
    assert.equal(nodeRoute('http://proxy/ks/', '/api/v1/hosts'), 'http://proxy/ks/api/v1/hosts');
    assert.equal(dataRoute('https://proxy:8443/a/b', 't/x', '?fmt=raw'), 'https://proxy:8443/a/b/api/v1/data/t/x?fmt=raw');
  });

  it('compare nodes whatever their trailing slashes', function () {
    assert.ok(sameNode('http://h:1/', 'http://h:1'));
    assert.ok(!sameNode('http://h:1/', 'http://h:2/'));
  });

  it('take the listening port from the url, or its scheme default', function () {
    assert.equal(portOf(parseNodeUrl('http://127.0.0.1:16400/')), 16400);
    assert.equal(portOf(parseNodeUrl('http://proxy/ks/')), 80);
    assert.equal(portOf(parseNodeUrl('https://proxy/')), 443);
    assert.equal(portOf(parseNodeUrl('http://h:0/')), 0);
  });

  it('refuse what is not a node url, naming it', function () {
    assert.throws(() => parseNodeUrl('127.0.0.1:6323'), /"127.0.0.1:6323" is not a url: give http:\/\/host:port\//);
    assert.throws(() => parseNodeUrl('not a url'), /is not a url/);
    assert.throws(() => parseNodeUrl('ftp://h/'), /must start with http/);
    assert.throws(() => parseNodeUrl('http://h:1/?x=1'), /query/);
    assert.throws(() => parseNodeUrl('http://u:p@h:1/'), /credentials/);
  });
});

describe('--redis-connection', function () {
  it('takes redis:// with credentials and a db', function () {
    assert.deepEqual(redisOptions('redis://me:s%40cret@10.0.0.2:6380/4'), { host: '10.0.0.2', port: 6380, db: 4, username: 'me', password: 's@cret' });
    assert.deepEqual(redisOptions('redis://127.0.0.1:6379'), { host: '127.0.0.1', port: 6379, db: 0, username: undefined, password: undefined });
    assert.deepEqual(redisOptions('redis://:pw@h/2'), { host: 'h', port: 6379, db: 2, username: undefined, password: 'pw' });
    assert.equal(redisOptions('redis://h:1?db=5').db, 5);
    assert.equal(redisOptions('redis://[::1]:6379').host, '::1');
  });

  it("takes kitchensink's tcp://host:port?db=N", function () {
    assert.deepEqual(redisOptions('tcp://localhost:6379?db=9'), { host: 'localhost', port: 6379, db: 9, username: undefined, password: undefined });
    assert.equal(redisOptions('tcp://localhost').port, 6379);
  });

  it('takes unix:///path?db=N and a bare socket path', function () {
    assert.deepEqual(redisOptions('unix:///tmp/r.sock?db=2'), { path: '/tmp/r.sock', db: 2 });
    assert.deepEqual(redisOptions('unix:///tmp/r.sock'), { path: '/tmp/r.sock', db: 0 });
    assert.deepEqual(redisOptions('/var/run/redis.sock'), { path: '/var/run/redis.sock' });
  });

  it('takes rediss:// (TLS) with a CA file, and redis-sentinel:// with its sentinels and master', function () {
    const dir = mkdtempSync(join(tmpdir(), 'ks-ca-'));
    writeFileSync(join(dir, 'ca.pem'), 'PEM');
    try {
      assert.deepEqual(redisOptions(`rediss://u:p@redis.example:6380/2?ca=${join(dir, 'ca.pem')}`), {
        host: 'redis.example',
        port: 6380,
        db: 2,
        username: 'u',
        password: 'p',
        tls: { servername: 'redis.example', ca: Buffer.from('PEM') },
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.deepEqual(redisOptions('rediss://127.0.0.1:6380').tls, { servername: undefined });
    assert.deepEqual(redisOptions('redis-sentinel://10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster?db=3'), {
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: '10.0.0.2', port: 26379 },
        { host: '::1', port: 26380 },
      ],
      name: 'mymaster',
      db: 3,
      username: undefined,
      password: undefined,
    });
    assert.equal(redisOptions('redis-sentinel://:s%40cret@h:1/m').password, 's@cret');
    assert.ok(isManagedRedis('rediss://h') && isManagedRedis('redis-sentinel://h/m') && isManagedRedis('redis-cluster://h:1') && !isManagedRedis('redis://127.0.0.1'));
  });

  it('reads redis-cluster:// as some of a cluster\'s nodes and their credentials', function () {
    assert.deepEqual(clusterOptions('redis-cluster://u:p%40ss@10.0.0.1:7000,[::1]:7001,h/'), {
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '::1', port: 7001 },
        { host: 'h', port: 6379 },
      ],
      options: { username: 'u', password: 'p@ss' },
    });
    assert.equal(clusterOptions('redis://h:1'), undefined);
    assert.deepEqual(redisOptions('redis-cluster://h:1,h:2'), { host: 'h', port: 1, username: undefined, password: undefined });
  });

  it('refuses anything else in one line that names the accepted forms', function () {
    const bad: [string, RegExp][] = [
      ['localhost:6379', /unknown scheme/],
      ['http://h:1', /unknown scheme http:/],
      ['6379', /not a url nor an absolute socket path/],
      ['tcp://h:1?db=x', /db "x", not a number/],
      ['redis://h:1/x', /db "x", not a number/],
      ['redis://h:1/2?db=3', /db twice/],
      ['tcp://h:1?database=3', /unknown parameter "database"/],
      ['unix://tmp/r.sock', /three slashes/],
      ['unix://', /no socket path/],
      ['tcp://:6379', /not a url|names no host/],
      ['rediss://h?ca=/nope/ca.pem', /CA file that cannot be read \(ENOENT\)/],
      ['redis://h?ca=/x.pem', /unknown parameter "ca"/],
      ['redis-sentinel://h:1', /not redis-sentinel:\/\/host:port,host:port\/NAME/],
      ['redis-sentinel://h:1/', /names no master/],
      ['redis-sentinel://h:1,:2/m', /sentinel ":2", not host:port/],
      ['redis-sentinel://h:99999/m', /sentinel port 99999/],
      ['redis-sentinel://h:1/m?tls=1', /unknown parameter "tls"/],
      ['redis-cluster://h:1,h:2/0', /not redis-cluster:\/\/host:port,host:port \(no path, no parameters\)/],
      ['redis-cluster://h:1?db=2', /no path, no parameters/],
      ['redis-cluster://h:1,:2', /node ":2", not host:port/],
      ['redis-cluster://h:99999', /node port 99999/],
    ];
    for (const [connection, why] of bad) {
      assert.throws(
        () => redisOptions(connection),
        (error: Error) => why.test(error.message) && error.message.includes('tcp://host:port?db=N') && !error.message.includes('\n'),
        connection,
      );
    }
  });
});
