// Runs every unit and integration test with mocha, then the core, data and fault suites once
// more against a Redis Cluster (KS_TEST_REDIS=cluster: the harness's startRedis() starts one),
// and ends with the line CI reads: "N passed, N failed" over both. Start it with
// `node --import tsx` so the tests load as TypeScript. Given file name parts, it runs those
// files only, once (KS_TEST_REDIS=cluster in the environment runs them on a cluster).
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Mocha from 'mocha';

const root = resolve(import.meta.dirname, '..');
const only = process.argv.slice(2);
/** The suites run a second time on a Redis Cluster. */
const clusterSuites = ['integration_tests/cluster.test', 'integration_tests/data.test', 'integration_tests/faults.test'];
const files = ['unit_tests', 'integration_tests'].flatMap((dir) =>
  readdirSync(join(root, dir))
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => join(root, dir, f)),
).filter((f) => !only.length || only.some((o) => f.includes(o)));

/** Runs the suites again on a Redis Cluster, in a process of their own; resolves to its counts. */
function onRedisCluster() {
  console.log('\nThe core, data and fault suites again, on a Redis Cluster (three masters, a replica each):');
  return new Promise((resolveCounts) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'scripts/run-tests.mjs'), ...clusterSuites], { env: { ...process.env, KS_TEST_REDIS: 'cluster' }, stdio: ['ignore', 'pipe', 'inherit'] });
    let last = '';
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      last = (last + chunk).slice(-200);
    });
    child.on('close', () => {
      const m = /(\d+) passed, (\d+) failed\s*$/.exec(last);
      resolveCounts(m ? { passed: Number(m[1]), failed: Number(m[2]) } : { passed: 0, failed: 1 });
    });
  });
}

const mocha = new Mocha({ timeout: 120_000, forbidOnly: !!process.env.CI, reporter: 'spec' });
for (const file of files) mocha.addFile(file);
await mocha.loadFilesAsync();
let passed = 0;
let failed = 0;
const runner = mocha.run(async () => {
  if (!only.length && !process.env.KS_TEST_REDIS) {
    const cluster = await onRedisCluster();
    passed += cluster.passed;
    failed += cluster.failed;
  }
  console.log(`\n${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
});
runner.on('pass', () => (passed += 1));
runner.on('fail', () => (failed += 1));
