// npm run bench:peers: our figures (npm run bench -- --json, run before and after the peers)
// beside Ray's and Celery's, as ratios.
// Runs ../shared/peers/run.sh when it is there; when it cannot run (no Ray or Celery on the
// package index, say), it says why and compares with the figures ../shared/peers/README.md
// recorded on this kind of machine instead, marked as such.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const peersDir = join(root, '..', 'shared', 'peers');

/** Figures of ../shared/peers/README.md, measured 2026-11-23 on this kind of machine. */
const recorded = {
  ray: { cold_start_s: 2.9, w1_p50_ms: 1.77, w1_p99_ms: 2.93, w2_calls_per_s: 1453, w3_calls_per_s: 1005, w4_mb_per_s: 260 },
  celery: { w1_p50_ms: 2.79, w1_p99_ms: 8.99, w2_calls_per_s: 477, w3_calls_per_s: 259, w4_mb_per_s: 10 },
};

function runPeers() {
  const script = join(peersDir, 'run.sh');
  if (!existsSync(script)) return { why: `${script} is not there` };
  const run = spawnSync('bash', [script, 'all'], { encoding: 'utf8', timeout: 30 * 60_000 });
  const peers = {};
  for (const line of run.stdout.split('\n')) {
    const json = /^(ray|celery): (\{.*\})$/.exec(line);
    if (json) {
      const r = JSON.parse(json[2]);
      peers[json[1]] = {
        ...peers[json[1]],
        w1_p50_ms: r.w1_sync_p50_ms,
        w1_p99_ms: r.w1_sync_p99_ms,
        w2_calls_per_s: r.w2_bulk_tasks_per_s,
        w3_calls_per_s: r.w3_bulk_print_tasks_per_s,
        w4_mb_per_s: r.w4_put_and_task_256MB_MBps ?? r.w4_send_and_task_64MB_MBps,
      };
    }
    const cold = /ray cold start to first result: ([\d.]+)s/.exec(line);
    if (cold) peers.ray = { ...peers.ray, cold_start_s: Number(cold[1]) };
  }
  if (!peers.ray && !peers.celery) return { why: `run.sh exited ${run.status}: ${(run.stderr || '').trim().split('\n').slice(-2).join(' | ')}` };
  return { peers };
}

const runOurs = () => JSON.parse(execFileSync(process.execPath, [join(root, 'scripts', 'bench.mjs'), '--json'], { encoding: 'utf8' }).trim().split('\n').pop());
const before = runOurs();
const { peers, why } = runPeers();
// These VMs change speed from one minute to the next (a direct call took 0.2 ms in one run and
// 0.7 ms in the next): ours runs again after the peers, and the ratios use the mean of both runs.
const runs = peers ? [before, runOurs()] : [before];
const mean = (values) => (values.includes(null) ? null : Number((values.reduce((sum, v) => sum + v, 0) / values.length).toFixed(3)));
const ours = Object.fromEntries(Object.keys(before).map((k) => [k, mean(runs.map((r) => r[k]))]));
const source = peers ? 'measured now, same sitting; kitchensink is the mean of a run before the peers and one after' : `recorded in shared/peers/README.md (${why})`;
const against = peers ?? recorded;
// For times lower is better: the ratio is theirs / ours, so above 1 means we are faster.
const lowerIsBetter = new Set(['cold_start_s', 'w1_p50_ms', 'w1_p99_ms']);
const rows = [];
for (const key of ['cold_start_s', 'w1_p50_ms', 'w1_p99_ms', 'w1_direct_p50_ms', 'w2_calls_per_s', 'w3_calls_per_s', 'w4_mb_per_s', 'w4_node_rss_peak_mb']) {
  const row = { figure: key, kitchensink: ours[key] };
  if (runs.length > 1) row['runs'] = runs.map((r) => r[key]).join(' / ');
  for (const [peer, figures] of Object.entries(against)) {
    const theirs = figures[key];
    row[peer] = theirs ?? '—';
    if (theirs && ours[key]) row[`× vs ${peer}`] = Number((lowerIsBetter.has(key) ? theirs / ours[key] : ours[key] / theirs).toFixed(2));
  }
  rows.push(row);
}
console.log(`peers: ${source}; a ratio above 1 means kitchensink is faster`);
console.table(rows);
