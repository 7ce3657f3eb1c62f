// npm run bench:copy: a 1 GB node-to-node copy between two nodes whose data is in the memory
// tier (each with --memory-datadir in /dev/shm), as POST /api/v1/data/<url>/replicate makes
// it: the first copy into the receiver's fresh memory, then a second 1 GB datum the same way.
// The copy checks the CRC-32 as it streams (a copy that fails it is not kept), and the
// registry must then list both holders. Prints one JSON line with the figures.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, dr } from '../dist/index.js';
import { startLocalNodes, startLocalRedis, stopGroups } from './local-cluster.mjs';

const say = (line) => process.stderr.write(`${line}\n`);
const work = mkdtempSync(join(tmpdir(), 'ks-copy-'));
const shm = mkdtempSync('/dev/shm/ks-copy-');
const children = [];
const gigabyte = 1 << 30;

try {
  const redis = await startLocalRedis(work);
  children.push(redis.child);
  const urls = await startLocalNodes(['a', 'b'], redis.url, work, children, { extraArgs: (name) => ['--memory-datadir', join(shm, name)], stderr: 'ignore' });
  const client = new Client(urls[0]);
  const bytes = Buffer.alloc(gigabyte, 7);
  const figures = {};
  for (const [k, which] of ['first', 'second'].entries()) {
    bytes[0] = k;
    const saved = await dr(bytes, { client }).save({ host: 'a', url: `copy/${which}.bin` });
    const t0 = performance.now();
    const answer = await fetch(`${urls[1]}/api/v1/data/copy/${which}.bin/replicate`, { method: 'POST' });
    const seconds = (performance.now() - t0) / 1000;
    if (!answer.ok) throw new Error(`the ${which} copy failed: ${answer.status} ${await answer.text()}`);
    const holders = (await client.dataInfo([saved.dataUrl]))[saved.dataUrl].holders;
    if (!['a', 'b'].every((h) => holders.includes(h))) throw new Error(`the ${which} copy is not registered: holders ${holders}`);
    figures[`copy_${which}_mb_per_s`] = Math.round(gigabyte / 1e6 / seconds);
    say(`${which} 1 GB copy, memory tier to memory tier: ${seconds.toFixed(2)} s, ${figures[`copy_${which}_mb_per_s`]} MB/s, CRC checked, holders ${holders.join(', ')}`);
  }
  console.log(JSON.stringify(figures));
  client.close();
} finally {
  await stopGroups(children, 3_000);
  rmSync(work, { recursive: true, force: true });
  rmSync(shm, { recursive: true, force: true });
}
