import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Context, Next } from 'koa';
import { pageRoutes, sendFile } from '../node/page-routes.js';
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
  return pageRoutes('dashboard', (ctx, asset) => {
    if (asset && !assets.has(asset)) return false;
    const name = asset || 'index.html';
    const file = join(pageDir, name);
    if (!existsSync(file)) {
      ctx.status = 500;
      ctx.body = { error: 'internal', detail: `the dashboard's ${name} is missing from ${pageDir}: run npm run build` };
      return true;
    }
    // The page is asked for again each time (a new build may change it); its assets are kept an hour.
    sendFile(ctx, file, types[name.slice(name.lastIndexOf('.'))], asset ? 3_600 : 0);
    return true;
  });
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
