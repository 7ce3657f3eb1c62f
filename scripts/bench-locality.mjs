// npm run bench:locality: what routing by data saves. Five nodes on this machine, one Redis;
// 30 RemoteData of 1-50 MB saved round the hosts; 300 calls each reading 1-3 of them. The
// bytes the nodes copy to each other (ks_data_bytes_total{direction="in"} during the calls)
// with routing, against the same calls on a fresh copy of the same data with noRouteData
// (each call goes to whichever host takes it). Routed three times: with the client's default
// dataThreshold (200 MB, more than any call reads, so every host may run every call) and with
// 5 MB (a host that would copy that much for a call is left out of its route; the calls no
// host runs under it gather where their data does), and with 1 MB (a host takes a call where
// all its data is; the goal's figure, locality_ratio). Goal: at most 20 % of random's bytes, no
// host left without calls. Also printed: the least any routing could copy, gathering every
// datum the calls read on one host. Prints one JSON line with the figures.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, dr, py } from '../dist/index.js';
import { startLocalNodes, startLocalRedis, stopGroups } from './local-cluster.mjs';

const work = mkdtempSync(join(tmpdir(), 'ks-locality-'));
const hostCount = 5;
const children = [];
const say = (line) => process.stderr.write(`${line}\n`);

/** A small seeded generator: the same data and calls in both runs. */
function random(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

async function bytesIn(urls) {
  let total = 0;
  for (const url of urls) {
    const text = await (await fetch(`${url}/metrics`)).text();
    total += Number(/^ks_data_bytes_total\{[^}]*direction="in"[^}]*\} (\S+)/m.exec(text)?.[1] ?? 0);
  }
  return total;
}

try {
  const redis = await startLocalRedis(work);
  children.push(redis.child);
  const urls = await startLocalNodes(Array.from({ length: hostCount }, (_, k) => `h${k}`), redis.url, work, children);
  // The client's default, then two that leave out of a call's route the hosts that would copy more.
  const thresholdsBytes = [200_000_000, 5_000_000, 1_000_000];
  // The goal's figure (locality_ratio): 1 MB, under which a host takes a call where its data
  // all is, and the calls no host holds all the data of gather.
  const goalThresholdBytes = 1_000_000;
  const clients = thresholdsBytes.map((dataThreshold) => new Client(urls[0], { output: process.stderr, dataThreshold }));
  /** Saves the 30 data round the hosts, runs the 300 calls, answers the bytes copied and the calls per host. */
  async function run(routed, client) {
    const rand = random(42);
    const data = [];
    const sizes = [];
    for (let k = 0; k < 30; k++) {
      const size = Math.round((1 + rand() * 49) * 1e6);
      sizes.push(size);
      data.push(await dr(Buffer.alloc(size, k), { client }).save({ host: `h${k % hostCount}` }));
    }
    const before = await bytesIn(urls);
    const readSet = new Set();
    const started = performance.now();
    const whereOf = py`
      import os
      def where(*data): return os.environ["KS_NODE_NAME"]`;
    for (let c = 0; c < 300; c++) {
      const n = 1 + Math.floor(rand() * 3);
      const picked = Array.from({ length: n }, () => Math.floor(rand() * data.length));
      picked.forEach((k) => readSet.add(k));
      const args = picked.map((k) => data[k]);
      client.bc(whereOf, args, {}, routed ? {} : { noRouteData: true });
    }
    await client.execute();
    const hosts = await client.br();
    const seconds = (performance.now() - started) / 1000;
    const copied = (await bytesIn(urls)) - before;
    const perHost = Object.fromEntries(urls.map((_, k) => [`h${k}`, hosts.filter((h) => h === `h${k}`).length]));
    // Gathering everything on host h copies every datum read that h does not hold.
    const oneHost = Math.min(...urls.map((_, h) => [...readSet].filter((k) => k % hostCount !== h).reduce((sum, k) => sum + sizes[k], 0)));
    await Promise.all(data.map((d) => d.delete()));
    return { copied, seconds, perHost, oneHost };
  }

  const described = (label, run) => say(`${label}: ${(run.copied / 1e6).toFixed(0)} MB copied in ${run.seconds.toFixed(1)} s, calls per host ${JSON.stringify(run.perHost)}`);
  const routed = [];
  for (const [k, client] of clients.entries()) {
    routed.push(await run(true, client));
    described(`routed, dataThreshold ${thresholdsBytes[k] / 1e6} MB`, routed[k]);
  }
  const random_ = await run(false, clients[0]);
  described('random (noRouteData)', random_);
  const figures = { locality_random_mb: random_.copied / 1e6, locality_random_s: random_.seconds, locality_one_host_mb: routed[0].oneHost / 1e6 };
  for (const [k, run] of routed.entries()) {
    const ratio = run.copied / random_.copied;
    const idle = Object.entries(run.perHost).filter(([, calls]) => !calls).map(([host]) => host);
    say(`dataThreshold ${thresholdsBytes[k] / 1e6} MB: routed copies ${(ratio * 100).toFixed(1)} % of random's bytes (goal: at most 20 %), ${idle.length ? `${idle.join(', ')} ran no call` : 'every host ran calls'}`);
    const at = `${thresholdsBytes[k] / 1e6}mb`;
    Object.assign(figures, { [`locality_ratio_${at}`]: ratio, [`locality_routed_mb_${at}`]: run.copied / 1e6, [`locality_routed_s_${at}`]: run.seconds, [`locality_calls_per_host_${at}`]: run.perHost });
    if (thresholdsBytes[k] === goalThresholdBytes) {
      Object.assign(figures, { locality_ratio: ratio, locality_threshold_mb: goalThresholdBytes / 1e6, locality_routed_mb: run.copied / 1e6, locality_routed_s: run.seconds, routed_calls_per_host: run.perHost });
    }
  }
  say(`everything gathered on one host would copy ${(routed[0].oneHost / 1e6).toFixed(0)} MB, ${((routed[0].oneHost / random_.copied) * 100).toFixed(1)} % of random's bytes`);
  console.log(JSON.stringify(figures));
  for (const client of clients) client.close();
} finally {
  await stopGroups(children, 3_000);
  rmSync(work, { recursive: true, force: true });
}
