import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import assert from 'node:assert/strict';
import { Cluster, Redis } from 'ioredis';
import { freePort, spawnRedisServer, waitFor } from './harness.js';

const run = promisify(execFile);

/** A local Redis Cluster of three masters, each with a replica, as `redis-cli --cluster create` makes one. */
export interface TestRedisCluster {
  /** `redis-cluster://127.0.0.1:p1,...` (every node). */
  url: string;
  ports: number[];
  /** A connection to the cluster. */
  client(): Redis;
  /** The port of the master serving `key`'s slot. */
  masterOf(key: string): Promise<number>;
  /** Waits until every master's writes so far have reached its replica (`WAIT 1`). */
  replicated(): Promise<void>;
  /** Kills the redis-server on `port` (SIGKILL), as a crash would. */
  kill(port: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Six `redis-server --cluster-enabled yes` on free loopback ports, made one cluster (three
 * masters, one replica each), ready once every node says `cluster_state:ok`. A replica takes
 * over a master that stops answering for 2 s (`cluster-node-timeout`).
 */
export async function startRedisCluster(): Promise<TestRedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'ks-cluster-'));
  const ports: number[] = [];
  while (ports.length < 6) {
    const port = await freePort();
    if (!ports.includes(port)) ports.push(port);
  }
  const servers = ports.map((port) => {
    const nodeDir = join(dir, String(port));
    mkdirSync(nodeDir);
    return spawnRedisServer(['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000', '--save', '', '--appendonly', 'no', '--dir', nodeDir]);
  });
  const clients: Redis[] = [];
  /** One connection per node, made on first use (the waits below ask every 20 ms). */
  const plainByPort = new Map<number, Redis>();
  const plain = (port: number) => {
    let c = plainByPort.get(port);
    if (!c) {
      c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1, lazyConnect: true });
      c.on('error', () => {});
      plainByPort.set(port, c);
      clients.push(c);
    }
    return c;
  };
  const stop = async () => {
    for (const c of clients) c.disconnect();
    await Promise.all(servers.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(async () => (await Promise.all(ports.map((port) => plain(port).ping().catch(() => '')))).every((pong) => pong === 'PONG'), 'the cluster nodes to answer');
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes']);
    await waitFor(async () => (await Promise.all(ports.map((port) => plain(port).cluster('INFO').catch(() => '')))).every((info) => String(info).includes('cluster_state:ok')), 'the cluster to be ok');
  } catch (error) {
    await stop();
    throw error;
  }
  const killed = new Set<number>();
  /** What the first node still running answers. */
  const asked = <T>(ask: (node: Redis) => Promise<T>): Promise<T> => ask(plain(ports.find((port) => !killed.has(port))!));
  const slotRanges = async () => (await asked((node) => node.cluster('SLOTS'))) as unknown as [number, number, [string, number]][];
  return {
    url: `redis-cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
    ports,
    client() {
      const c = new Cluster(ports.map((port) => ({ host: '127.0.0.1', port })));
      c.on('error', () => {});
      clients.push(c as unknown as Redis);
      return c as unknown as Redis;
    },
    async masterOf(key) {
      const slot = Number(await asked((node) => node.cluster('KEYSLOT', key)));
      return (await slotRanges()).find(([from, to]) => slot >= from && slot <= to)![2][1];
    },
    async replicated() {
      const masters = [...new Set((await slotRanges()).map((range) => range[2][1]))];
      await Promise.all(masters.map(async (port) => assert(Number(await plain(port).call('WAIT', 1, 5_000)) >= 1, `the replica of ${port} to catch up`)));
    },
    async kill(port) {
      killed.add(port);
      await servers[ports.indexOf(port)].stop();
    },
    stop,
  };
}
