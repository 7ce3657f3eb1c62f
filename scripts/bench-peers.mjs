// npm run bench:peers: our figures (npm run bench -- --json, run before and after the peers)
// beside Ray's and Celery's, and w5 beside FastAPI's and Flask's, as ratios, all measured in
// this one run. The peer benchmarks are not part of this repository: give their folder (one
// whose run.sh prints `ray: {json}` and `celery: {json}` lines and whose services.sh prints
// `fastapi: {json}` and `flask: {json}` lines, see docs/performance.md) with
// `npm run bench:peers -- --peers DIR` or KS_PEERS_DIR. Without them, this prints our figures
// and says how to add the peers' instead of comparing with figures from another machine.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const flag = process.argv.indexOf('--peers');
const peersDir = resolve(flag >= 0 ? process.argv[flag + 1] ?? '' : process.env.KS_PEERS_DIR ?? join(root, '..', 'shared', 'peers'));
const howTo =
  'give the folder of the peer benchmarks with `npm run bench:peers -- --peers DIR` (or KS_PEERS_DIR=DIR): ' +
  'its run.sh [ray|celery|all] installs Ray and Celery in a venv and prints one `ray: {json}` and one `celery: {json}` line, ' +
  'and its services.sh one `fastapi: {json}` and one `flask: {json}` line (docs/performance.md)';

const peersScript = join(peersDir, 'run.sh');

function runPeers(script) {
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
        w4n_mb_per_s: r.w4n_put_and_sum_256MB_MBps,
      };
    }
    const cold = /ray cold start to first result: ([\d.]+)s/.exec(line);
    if (cold) peers.ray = { ...peers.ray, cold_start_s: Number(cold[1]) };
  }
  Object.assign(peers, runServices());
  if (!Object.keys(peers).length) return { why: `${script} exited ${run.status} without figures: ${(run.stderr || '').trim().split('\n').slice(-2).join(' | ')}` };
  return { peers };
}

/** The function-service peers (services.sh: FastAPI + uvicorn, Flask + gunicorn) against w5. */
function runServices() {
  const script = join(peersDir, 'services.sh');
  if (!existsSync(script)) return {};
  const run = spawnSync('bash', [script, 'all'], { encoding: 'utf8', timeout: 15 * 60_000 });
  const services = {};
  for (const line of run.stdout.split('\n')) {
    const json = /^(fastapi|flask): (\{.*\})$/.exec(line);
    if (!json) continue;
    const r = JSON.parse(json[2]);
    services[json[1]] = { w5_perform_rps: r.rps, w5_perform_p50_ms: r.p50_ms, w5_perform_p99_ms: r.p99_ms };
  }
  return services;
}

const runOurs = () => JSON.parse(execFileSync(process.execPath, [join(root, 'scripts', 'bench.mjs'), '--json'], { encoding: 'utf8' }).trim().split('\n').pop());
if (!existsSync(peersScript)) console.log(`peers: no ${peersScript}, so only kitchensink is measured; ${howTo}`);
const before = runOurs();
const { peers, why } = existsSync(peersScript) ? runPeers(peersScript) : {};
// These VMs change speed from one minute to the next (a direct call took 0.2 ms in one run and
// 0.7 ms in the next): ours runs again after the peers, and the ratios use the mean of both runs.
const runs = peers ? [before, runOurs()] : [before];
const mean = (values) => (values.includes(null) ? null : Number((values.reduce((sum, v) => sum + v, 0) / values.length).toFixed(3)));
const ours = Object.fromEntries(Object.keys(before).map((k) => [k, mean(runs.map((r) => r[k]))]));
if (!peers) {
  if (why) console.log(`peers: not measured: ${why}; ${howTo}`);
  console.table(Object.entries(ours).map(([figure, kitchensink]) => ({ figure, kitchensink })));
  process.exit(0);
}
// For times lower is better: the ratio is theirs / ours, so above 1 means we are faster.
const lowerIsBetter = new Set(['cold_start_s', 'w1_p50_ms', 'w1_p99_ms', 'w5_perform_p50_ms', 'w5_perform_p99_ms', 'w6_eval_p50_ms', 'w6_all_ms']);
const rows = [];
for (const key of ['cold_start_s', 'w1_p50_ms', 'w1_p99_ms', 'w1_direct_p50_ms', 'w2_calls_per_s', 'w2_watched_calls_per_s', 'w2_watched_vs_unwatched', 'w2_watched_rss_delta_mb', 'w2_watched_node_cpu_ratio', 'w3_calls_per_s', 'w4_mb_per_s', 'w4_node_rss_peak_mb', 'w4n_mb_per_s', 'w4n_node_rss_peak_mb', 'w5_perform_rps', 'w5_perform_p50_ms', 'w5_perform_p99_ms', 'w5_node_rss_peak_mb', 'w6_eval_p50_ms', 'w6_eval_vs_direct', 'w6_all_ms', 'w6_all_vs_two_direct', 'w6_ndarray_mb_per_s', 'w6_raw_mb_per_s']) {
  const row = { figure: key, kitchensink: ours[key] };
  if (runs.length > 1) row['runs'] = runs.map((r) => r[key]).join(' / ');
  for (const [peer, figures] of Object.entries(peers)) {
    const theirs = figures[key];
    row[peer] = theirs ?? '—';
    if (theirs && ours[key]) row[`× vs ${peer}`] = Number((lowerIsBetter.has(key) ? theirs / ours[key] : ours[key] / theirs).toFixed(2));
  }
  rows.push(row);
}
console.log(`peers: measured now from ${peersDir}; kitchensink is the mean of a run before the peers and one after; a ratio above 1 means kitchensink is faster`);
console.table(rows);
