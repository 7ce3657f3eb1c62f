import { setTimeout as delay } from 'node:timers/promises';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { clusterOptions, redisOptions, type ClusterTarget } from './redis-connection.js';

/**
 * A command connection: queues commands while reconnecting, so a Redis restart is survived.
 * For `redis-cluster://` an ioredis `Cluster` (typed as a `Redis`: the commands used are the
 * same, and the code that must differ asks `isCluster`).
 */
export function connectRedis(connection: string, extra: RedisOptions = {}): Redis {
  const options: RedisOptions = {
    maxRetriesPerRequest: null,
    enableAutoPipelining: false,
    retryStrategy: (attempt) => Math.min(50 * attempt, 1_000),
    ...extra,
  };
  const cluster = clusterOptions(connection);
  if (cluster) return connectCluster(cluster, options);
  return new Redis({ ...redisOptions(connection), ...options });
}

function connectCluster({ nodes, options: credentials }: ClusterTarget, options: RedisOptions): Redis {
  const { maxRetriesPerRequest, retryStrategy, enableAutoPipelining, ...each } = options;
  return new Cluster(nodes, {
    redisOptions: { ...credentials, ...each, maxRetriesPerRequest },
    clusterRetryStrategy: retryStrategy ?? undefined,
    enableAutoPipelining,
    // A failover moves slots: follow MOVED/ASK and retry a while rather than fail the command.
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 300,
    retryDelayOnTryAgain: 100,
    maxRedirections: 32,
  }) as unknown as Redis;
}

/** True when a Redis answers PING at `connection` within a short time. */
export async function redisAnswers(connection: string): Promise<boolean> {
  return (await whyRedisIsSilent(connection)) === undefined;
}

/** A connection that asks once, briefly, and never retries. */
const probeOptions: RedisOptions = {
  lazyConnect: true,
  connectTimeout: 500,
  maxRetriesPerRequest: 0,
  retryStrategy: () => null,
  sentinelRetryStrategy: () => null,
  // ioredis otherwise keeps a 2 s timer for a socket that never connected, and a `ks` command waits for it.
  disconnectTimeout: 0,
};

/** Why no Redis answers PING at `connection` within a short time (`ECONNREFUSED`...), or undefined when one does. */
export async function whyRedisIsSilent(connection: string): Promise<string | undefined> {
  const cluster = clusterOptions(connection);
  if (cluster) return whyClusterIsSilent(cluster);
  const probe = new Redis({ ...redisOptions(connection), ...probeOptions });
  let lastError: Error | undefined;
  probe.on('error', (error: Error) => (lastError = error));
  try {
    await probe.connect();
    const pong = await probe.ping();
    return pong === 'PONG' ? undefined : `it answered PING with ${pong}`;
  } catch (error) {
    return oneLine((lastError ?? (error as Error)).message);
  } finally {
    probe.disconnect();
  }
}

/**
 * Why the cluster's nodes do not make a working Redis Cluster: none answers, one answers but
 * runs without cluster mode, or the cluster reports a state other than ok; undefined when it works.
 */
async function whyClusterIsSilent({ nodes, options }: ClusterTarget): Promise<string | undefined> {
  let lastError = 'no node named';
  for (const node of nodes) {
    const probe = new Redis({ ...options, ...node, ...probeOptions });
    let socketError: Error | undefined;
    probe.on('error', (error: Error) => (socketError = error));
    try {
      await probe.connect();
      const info = await probe.info('cluster');
      if (!/cluster_enabled:1/.test(info)) return `${node.host}:${node.port} is not part of a Redis Cluster (cluster_enabled:0): give redis://${node.host}:${node.port} for a single Redis`;
      const state = /cluster_state:(\w+)/.exec(await probe.cluster('INFO'))?.[1];
      return state === 'ok' ? undefined : `the cluster says cluster_state:${state}`;
    } catch (error) {
      lastError = `${node.host}:${node.port}: ${oneLine((socketError ?? (error as Error)).message)}`;
    } finally {
      probe.disconnect();
    }
  }
  return lastError;
}

/**
 * Starts a `redis-server` for `connection` (kitchensink's behaviour when none answers), with
 * append-only persistence in `dir` so that queued calls survive its restart.
 */
export async function startRedisServer(connection: string, dir: string): Promise<ChildProcess> {
  const opts = redisOptions(connection);
  if (opts.host && !['127.0.0.1', 'localhost', '::1'].includes(opts.host)) {
    throw new Error(`no Redis answers at ${connection}, and a node only starts its own on this machine`);
  }
  mkdirSync(dir, { recursive: true });
  const args = opts.path
    ? ['--port', '0', '--unixsocket', opts.path, '--unixsocketperm', '700']
    : ['--port', String(opts.port), '--bind', '127.0.0.1'];
  args.push('--dir', dir, '--appendonly', 'yes', '--save', '', '--maxmemory-policy', 'noeviction');
  const child = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  let spawnError: Error | undefined;
  child.on('error', (error) => (spawnError = error));
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (spawnError) throw new Error(`cannot run redis-server: ${spawnError.message}`);
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`redis-server exited at start: ${stderr.trim() || `exit code ${child.exitCode}`}`);
    }
    if (await redisAnswers(connection)) return child;
    await delay(50);
  }
  child.kill('SIGKILL');
  throw new Error(`redis-server did not answer at ${connection} within 10 s`);
}

/** An error message on one line (ioredis's Sentinel errors span several), saying what a Sentinel answered when one did. */
function oneLine(message: string): string {
  return message
    .replace(/\s*\n\s*/g, ' ')
    .replace(/^All sentinels are unreachable and retry is disabled\. Last error: (ERR .*)$/, 'the Sentinel answered: $1')
    .trim();
}
