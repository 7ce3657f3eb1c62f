import { createReadStream, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Context, Next } from 'koa';
import type { DashboardHub } from './hub.js';

/** The page and its assets, put beside this file by `npm run build` (scripts/build-dashboard.mjs). */
const pageDir = join(dirname(fileURLToPath(import.meta.url)), 'page');

const types: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'application/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** The assets the page loads: its own script and style, and uPlot's. */
const assets = new Set(['dashboard.js', 'dashboard.css', 'uPlot.iife.min.js', 'uPlot.min.css']);

/**
 * `GET /dashboard` and its assets under `/dashboard/`. They hold no data, so they answer
 * without the token; the page asks for it once and the feed requires it.
 */
export function dashboardPage() {
  return async (ctx: Context, next: Next): Promise<void> => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    if (ctx.path === '/dashboard/') {
      // The page's urls are relative to /dashboard: send the browser there, relatively (a proxy may add a prefix).
      ctx.status = 301;
      ctx.set('location', '../dashboard');
      return;
    }
    const asset = ctx.path === '/dashboard' ? 'index.html' : ctx.path.startsWith('/dashboard/') ? ctx.path.slice('/dashboard/'.length) : undefined;
    if (!asset || (asset !== 'index.html' && !assets.has(asset))) return next();
    const file = join(pageDir, asset);
    if (!existsSync(file)) {
      ctx.status = 500;
      ctx.body = { error: 'internal', detail: `the dashboard's ${asset} is missing from ${pageDir}: run npm run build` };
      return;
    }
    ctx.set('content-type', types[asset.slice(asset.lastIndexOf('.'))]);
    ctx.set('cache-control', asset === 'index.html' ? 'no-cache' : 'public, max-age=3600');
    ctx.body = createReadStream(file);
  };
}

/**
 * `GET /api/v1/events`: the cluster's live feed as Server-Sent Events (`hello`, then `tick`
 * from each node each second, `cluster` each second, `gap` after messages a slow viewer
 * missed). Behind the token, like every data route.
 */
export function dashboardEvents(hub: DashboardHub) {
  return async (ctx: Context, next: Next): Promise<void> => {
    if (ctx.path !== '/api/v1/events') return next();
    if (ctx.method !== 'GET') {
      ctx.status = 405;
      ctx.body = { error: 'method_not_allowed', detail: 'GET /api/v1/events' };
      return;
    }
    const res = ctx.res;
    ctx.respond = false;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
    res.write(': kitchensink dashboard feed\n\n');
    const detach = hub.attach({
      write: (message) => void res.write(message),
      get buffered() {
        return res.writableLength;
      },
      // The node stops: the connection goes too, or the server would wait for it to end.
      end: () => res.destroy(),
    });
    await new Promise<void>((resolve) => res.once('close', resolve));
    detach();
  };
}
