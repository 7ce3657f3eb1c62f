// Puts the dashboard's page beside the compiled routes (dist/dashboard/page): its own files
// from src/dashboard/page, and uPlot's from the installed package. Run by `npm run build`.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const target = join(root, 'dist', 'dashboard', 'page');
mkdirSync(target, { recursive: true });
const own = join(root, 'src', 'dashboard', 'page');
for (const file of readdirSync(own)) copyFileSync(join(own, file), join(target, file));
const uplot = join(dirname(createRequire(import.meta.url).resolve('uplot/package.json')), 'dist');
for (const file of ['uPlot.iife.min.js', 'uPlot.min.css']) copyFileSync(join(uplot, file), join(target, file));
