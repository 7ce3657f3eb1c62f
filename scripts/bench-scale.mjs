// npm run bench:scale: w2 (10,000 bulk calls) on 1, 2, 4 and 8 nodes of one interpreter each,
// on one Redis: calls/s, Redis commands per call and Redis CPU per call (from INFO), so the
// point where one Redis saturates can be projected to machines with more cores than this one.
// Each node and the Redis run on hosts of their own (network namespaces on a bridge, as the
// tests' integration_tests/netns.ts makes them: needs root); `-- --loopback`, or a machine
// where namespaces cannot be made, runs them all on this machine's loopback instead, and says
// so. Then the same on a local Redis Cluster of three masters (a replica each, on loopback):
// commands and CPU summed over the masters, and the busiest master's share of that CPU (how
// evenly the keys spread). Prints one JSON line per node count and Redis.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Client } from '../dist/index.js';
import { startLocalNodes, startLocalRedis, stopGroups } from './local-cluster.mjs';
import { makeNetwork, startNodeOn, startRedisOn } from '../integration_tests/netns.ts';
import { startRedisCluster } from '../integration_tests/redis-cluster.ts';

const say = (line) => process.stderr.write(`${line}\n`);

/** Redis's commands processed and CPU seconds so far. */
async function redisCounters(redis) {
  const stats = await redis.info('stats');
  const cpu = await redis.info('cpu');
  const field = (text, name) => Number(new RegExp(`^${name}:(\\S+)`, 'm').exec(text)[1]);
  return { commands: field(stats, 'total_commands_processed'), cpu: field(cpu, 'used_cpu_sys') + field(cpu, 'used_cpu_user') };
}

/** Redis and `nodeCount` nodes, on loopback: their urls, and what stops them. */
async function onLoopback(nodeCount) {
  const work = mkdtempSync(join(tmpdir(), 'ks-scale-'));
  const children = [];
  const stop = async () => {
    await stopGroups(children, 2_000);
    rmSync(work, { recursive: true, force: true });
  };
  try {
    const redisServer = await startLocalRedis(work);
    children.push(redisServer.child);
    const urls = await startLocalNodes(Array.from({ length: nodeCount }, (_, k) => `n${k}`), redisServer.url, work, children, { stderr: 'ignore', extraArgs: ownQueue });
    return { urls, redis: { port: redisServer.port }, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

const token = 'bench-scale';

/** Node `n<k>` also serves a queue of its own, `q<k>`, for the spread workload. */
const ownQueue = (name) => ['--queue', `q${name.slice(1)}`];

/**
 * 10,000 calls through `clients`: w2 (one batch on the default queue, from the first client),
 * or spread (each client a batch of its share on its node's own queue, all at once: as many
 * batches and queues as nodes, which under Redis Cluster hash to different slots).
 */
async function run(clients, spread) {
  const parts = spread ? clients.map((client, k) => ({ client, calls: 10_000 / clients.length, opts: { queue: `q${k}` } })) : [{ client: clients[0], calls: 10_000, opts: {} }];
  const results = await Promise.all(
    parts.map(async ({ client, calls, opts }) => {
      for (let i = 0; i < calls; i++) client.bc('operator:add', [i, 1], {}, opts);
      await client.execute();
      return client.br();
    }),
  );
  if (results.some((sums, k) => sums[parts[k].calls - 1] !== parts[k].calls)) throw new Error('results wrong');
}

/** Redis on a host of its own and each node on another (network namespaces). */
async function onHosts(nodeCount) {
  const net = makeNetwork(nodeCount + 1);
  try {
    const [redisHost, ...nodeHosts] = net.hosts;
    const redisUrl = await startRedisOn(redisHost);
    const urls = await Promise.all(nodeHosts.map(async (host, k) => (await startNodeOn(host, redisUrl, ['--token', token, ...ownQueue(`n${k}`)])).url));
    return { urls, redis: { host: redisHost.address, port: 6379 }, stop: () => net.destroy() };
  } catch (error) {
    await net.destroy();
    throw error;
  }
}

/** A Redis Cluster of three masters (a replica each) and `nodeCount` nodes, all on loopback. */
async function onRedisCluster(nodeCount) {
  const work = mkdtempSync(join(tmpdir(), 'ks-scale-'));
  const children = [];
  const redisCluster = await startRedisCluster();
  const stop = async () => {
    await stopGroups(children, 2_000);
    await redisCluster.stop();
    rmSync(work, { recursive: true, force: true });
  };
  try {
    const urls = await startLocalNodes(Array.from({ length: nodeCount }, (_, k) => `n${k}`), redisCluster.url, work, children, { stderr: 'ignore', extraArgs: ownQueue });
    const probe = new Redis({ port: redisCluster.ports[0] });
    const slots = await probe.cluster('SLOTS');
    probe.disconnect();
    const masters = [...new Set(slots.map((range) => range[2][1]))].map((port) => ({ port }));
    return { urls, redis: masters, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function measure(nodeCount, where, spread) {
  const cluster = where === 'namespaces' ? await onHosts(nodeCount) : where === 'cluster' ? await onRedisCluster(nodeCount) : await onLoopback(nodeCount);
  try {
    const clients = cluster.urls.map((url) => new Client(url, { token: where === 'namespaces' ? token : undefined }));
    const redises = [cluster.redis].flat().map((options) => new Redis(options));
    const counters = () => Promise.all(redises.map(redisCounters));
    // Warm every node's interpreter and the clients.
    for (const client of clients) {
      for (let i = 0; i < 2_000 / clients.length; i++) client.bc('operator:add', [i, 1]);
      await client.execute();
      await client.br();
    }
    const before = await counters();
    const t0 = performance.now();
    await run(clients, spread);
    const seconds = (performance.now() - t0) / 1000;
    const after = await counters();
    for (const client of clients) client.close();
    for (const redis of redises) redis.disconnect();
    const commands = after.reduce((sum, a, k) => sum + a.commands - before[k].commands, 0);
    const cpus = after.map((a, k) => a.cpu - before[k].cpu);
    const cpu = cpus.reduce((x, y) => x + y, 0);
    // The INFO calls themselves are 2 commands per Redis, and the heartbeats a few a second: both left in.
    return {
      nodes: nodeCount,
      workload: spread ? 'spread' : 'w2',
      calls_per_s: Math.round(10_000 / seconds),
      // Counted by Redis, the commands inside Lua scripts too (a claim is 3, a finish about 8).
      redis_commands_per_call: Number((commands / 10_000).toFixed(2)),
      redis_cpu_us_per_call: Number(((cpu * 1e6) / 10_000).toFixed(1)),
      redis_max_calls_per_s_per_core: Math.round(1e6 / ((cpu * 1e6) / 10_000)),
      ...(redises.length > 1 ? { busiest_master_cpu_share: Number((Math.max(...cpus) / cpu).toFixed(2)) } : {}),
    };
  } finally {
    await cluster.stop();
  }
}

/** Whether this machine can make network namespaces (root, `ip`): tried, then removed. */
async function canMakeHosts() {
  try {
    await makeNetwork(1).destroy();
    return true;
  } catch (error) {
    say(`${error.message}: the nodes run on this machine's loopback instead`);
    return false;
  }
}

const hosts = !process.argv.includes('--loopback') && (await canMakeHosts());
say(hosts ? 'each node and the Redis on a host of its own (network namespaces on a bridge)' : 'every node and the Redis on this machine\'s loopback');

for (const where of [hosts ? 'namespaces' : 'loopback', 'cluster']) {
  if (where === 'cluster') say('on a Redis Cluster of three masters with a replica each, nodes and Redis on loopback');
  for (const spread of [false, true]) {
    say(spread ? 'spread: a batch per node on a queue per node, all at once' : 'w2: one batch of 10,000 calls on the default queue');
    for (const count of [1, 2, 4, 8]) {
      const figures = { ...(await measure(count, where, spread)), hosts: where === 'namespaces' ? 'namespaces' : 'loopback', redis: where === 'cluster' ? 'cluster of 3 masters' : 'one' };
      const share = figures.busiest_master_cpu_share === undefined ? '' : `, the busiest master ${Math.round(figures.busiest_master_cpu_share * 100)} % of it`;
      say(`${count} node(s): ${figures.calls_per_s} calls/s, ${figures.redis_commands_per_call} Redis commands (those inside scripts too) and ${figures.redis_cpu_us_per_call} µs of Redis CPU per call${share} (one Redis core: ~${figures.redis_max_calls_per_s_per_core} calls/s)`);
      console.log(JSON.stringify(figures));
    }
  }
}
