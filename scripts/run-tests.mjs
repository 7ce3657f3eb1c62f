// Runs every unit and integration test with mocha and ends with the line CI reads:
// "N passed, N failed". Start it with `node --import tsx` so the tests load as TypeScript.
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Mocha from 'mocha';

const root = resolve(import.meta.dirname, '..');
const only = process.argv.slice(2);
const files = ['unit_tests', 'integration_tests'].flatMap((dir) =>
  readdirSync(join(root, dir))
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => join(root, dir, f)),
).filter((f) => !only.length || only.some((o) => f.includes(o)));

const mocha = new Mocha({ timeout: 120_000, forbidOnly: !!process.env.CI, reporter: 'spec' });
for (const file of files) mocha.addFile(file);
await mocha.loadFilesAsync();
let passed = 0;
let failed = 0;
const runner = mocha.run(() => {
  console.log(`\n${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
});
runner.on('pass', () => (passed += 1));
runner.on('fail', () => (failed += 1));
