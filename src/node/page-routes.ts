import { createReadStream } from 'node:fs';
import type { Context, Next } from 'koa';

/** Answers the page (asset `''`) or one of its assets by name; false for a name it does not have. */
export type PageServer = (ctx: Context, asset: string) => boolean;

/**
 * `GET /<name>`, a page whose urls are relative to itself, and its assets under `/<name>/`.
 * `/<name>/` sends the browser to `/<name>`, relatively (a proxy in front may add a path
 * prefix); every other path, and every other method, goes on to the next middleware.
 */
export function pageRoutes(name: string, serve: PageServer) {
  const base = `/${name}`;
  return async (ctx: Context, next: Next): Promise<void> => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    if (ctx.path === `${base}/`) {
      ctx.status = 301;
      ctx.set('location', `../${name}`);
      return;
    }
    const asset = ctx.path === base ? '' : ctx.path.startsWith(`${base}/`) ? ctx.path.slice(base.length + 1) : undefined;
    if (asset === undefined || !serve(ctx, asset)) return next();
  };
}

/** Answers with a file as it is, of `type`; browsers keep it `maxAgeS` seconds (0: they ask again each time). */
export function sendFile(ctx: Context, file: string, type: string, maxAgeS: number): void {
  ctx.set('content-type', type);
  ctx.set('cache-control', maxAgeS ? `public, max-age=${maxAgeS}` : 'no-cache');
  ctx.body = createReadStream(file);
}
