// Starts a one-node cluster (with its own redis-server when none answers at the default
// connection) and runs a demo: bulk calls whose output streams back as it is printed, data that
// stays on the node, and a job (scripts/bench_job.py) served over plain HTTP.
// The node keeps running afterwards; Ctrl-C stops it and everything it started.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, dobj, py } from '../dist/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const exitAfter = process.argv.includes('--exit');
const job = `mul=${join(root, 'scripts', 'bench_job.py')}:perform`;
const node = spawn(process.execPath, [join(root, 'dist/node/cli.js'), 'start', '--datadir', join(root, '.ks-demo'), '--num-workers', '2', '--node-port', '0', '--entrypoint', job, ...process.argv.slice(2).filter((a) => a !== '--exit')], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
const url = await new Promise((resolve, reject) => {
  let text = '';
  node.stdout.on('data', (chunk) => {
    text += chunk;
    const m = /ready at (\S+)/.exec(text);
    if (m) resolve(m[1]);
  });
  node.on('exit', (code) => reject(new Error(`ks start exited with code ${code}`)));
});
console.log(`one-node cluster at ${url}\n`);

const client = new Client(url);
const work = py`
  import os, time
  def work(k):
      print(f"call {k}: working on pid {os.getpid()} of {os.environ['KS_NODE_NAME']}")
      time.sleep(0.2)
      return k * k`;
for (let k = 0; k < 8; k++) client.bc(work, [k]);
await client.execute();
console.log('\nsquares:', await client.br());
const started = performance.now();
const sums = await client.map('operator:add', Array.from({ length: 2000 }, (_, k) => [k, 1]));
console.log(`2000 trivial calls in ${(performance.now() - started).toFixed(0)} ms; last = ${sums.at(-1)}`);
const table = await dobj({ rows: Array.from({ length: 1000 }, (_, k) => k) }, { client }).save({ prefix: 'demo/' });
const total = await client.call(py`def total(t): return sum(t.obj()["rows"])`, [table]);
console.log(`data ${table.dataUrl} stays on the node; a call summed it there: ${total}`);
const made = await client.call(py`
  from kitchensink import RemoteData
  def make(): return RemoteData(obj={"made": "in Python"}).save(prefix="demo/")`);
console.log(`Python saved ${made.dataUrl}; read back here:`, await made.obj());
await Promise.all([table.delete(), made.delete()]);
const performed = await fetch(`${url}/api/v1/jobs/mul/perform`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"x": 6, "y": 7}' });
console.log(`\na job over plain HTTP: curl -s ${url}/api/v1/jobs/mul/perform -H 'content-type: application/json' -d '{"x": 6, "y": 7}' -> ${await performed.text()}`);
console.log(`its docs: ${url}/docs`);
try {
  await client.call(py`def broken(): return 1 / 0`);
} catch (error) {
  console.log(`\na remote exception comes back with its traceback:\n${error.traceback}`);
}
client.close();
if (exitAfter) {
  node.kill('SIGTERM');
} else {
  console.log(`the node keeps running at ${url}; watch it at ${url}/dashboard or with npx ks top; Ctrl-C stops it`);
  process.on('SIGINT', () => node.kill('SIGTERM'));
}
node.on('exit', () => process.exit(0));
