// npm run bench:scale: w2 (10,000 bulk calls) on 1, 2, 4 and 8 nodes of one interpreter each,
// on one Redis: calls/s, Redis commands per call and Redis CPU per call (from INFO), so the
// point where one Redis saturates can be projected to machines with more cores than this one.
// Nodes run on this machine's loopback. Prints one JSON line per node count.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Client } from '../dist/index.js';
import { startLocalNode, startLocalRedis, stopGroups } from './local-cluster.mjs';

const say = (line) => process.stderr.write(`${line}\n`);

/** Redis's commands processed and CPU seconds so far. */
async function redisCounters(redis) {
  const stats = await redis.info('stats');
  const cpu = await redis.info('cpu');
  const field = (text, name) => Number(new RegExp(`^${name}:(\\S+)`, 'm').exec(text)[1]);
  return { commands: field(stats, 'total_commands_processed'), cpu: field(cpu, 'used_cpu_sys') + field(cpu, 'used_cpu_user') };
}

async function measure(nodeCount) {
  const work = mkdtempSync(join(tmpdir(), 'ks-scale-'));
  const children = [];
  try {
    const redisServer = await startLocalRedis(work);
    children.push(redisServer.child);
    const urls = [];
    for (let k = 0; k < nodeCount; k++) {
      const node = startLocalNode(['--no-redis', '--redis-connection', redisServer.url, '--datadir', join(work, `n${k}`), '--num-workers', '1', '--node-port', '0', '--node-name', `n${k}`], 'ignore');
      children.push(node.child);
      urls.push((await node.ready).url);
    }
    const client = new Client(urls[0]);
    const redis = new Redis(redisServer.port);
    // Warm every node's interpreter and the client.
    for (let i = 0; i < 2_000; i++) client.bc('operator:add', [i, 1]);
    await client.execute();
    await client.br();
    const before = await redisCounters(redis);
    const t0 = performance.now();
    for (let i = 0; i < 10_000; i++) client.bc('operator:add', [i, 1]);
    await client.execute();
    const sums = await client.br();
    const seconds = (performance.now() - t0) / 1000;
    const after = await redisCounters(redis);
    if (sums[9_999] !== 10_000) throw new Error('w2 results wrong');
    client.close();
    redis.disconnect();
    // The INFO calls themselves are 2 commands, and the heartbeats a few a second: both left in.
    return {
      nodes: nodeCount,
      calls_per_s: Math.round(10_000 / seconds),
      // Counted by Redis, the commands inside Lua scripts too (a claim is 3, a finish about 8).
      redis_commands_per_call: Number(((after.commands - before.commands) / 10_000).toFixed(2)),
      redis_cpu_us_per_call: Number((((after.cpu - before.cpu) * 1e6) / 10_000).toFixed(1)),
      redis_max_calls_per_s_per_core: Math.round(1e6 / (((after.cpu - before.cpu) * 1e6) / 10_000)),
    };
  } finally {
    await stopGroups(children, 2_000);
    rmSync(work, { recursive: true, force: true });
  }
}

for (const count of [1, 2, 4, 8]) {
  const figures = await measure(count);
  say(`${count} node(s): ${figures.calls_per_s} calls/s, ${figures.redis_commands_per_call} Redis commands (those inside scripts too) and ${figures.redis_cpu_us_per_call} µs of Redis CPU per call (one Redis core: ~${figures.redis_max_calls_per_s_per_core} calls/s)`);
  console.log(JSON.stringify(figures));
}
