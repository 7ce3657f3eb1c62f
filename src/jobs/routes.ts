import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { extname, join, sep } from 'node:path';
import { Readable } from 'node:stream';
import { bearerHeader } from '../keys.js';
import { nodeRoute } from '../node-url.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context, Next } from 'koa';
import type { Gate } from '../node/tokens.js';
import { BadRequest, NotFound } from '../errors.js';
import type { JobDescription } from '../types.js';
import type { StopSwitch } from '../worker/executor.js';
import { answerAfterBody, parseJson, reply } from '../node/http-body.js';
import type { CatalogEntry, JobCatalog } from './catalog.js';
import { openApiDocument } from './openapi.js';
import type { JobService } from './service.js';

const prefix = '/api/v1/jobs';

/** What the job routes need from the node. */
export interface JobRoutesContext {
  catalog: JobCatalog;
  service: JobService;
  /** The request body, JSON or msgpack, within the node's size limit. */
  body(ctx: Context): Promise<unknown>;
  /** Stops the request's work when its client goes away. */
  clientGone(ctx: Context): StopSwitch;
  /** The caller's name, from its token. */
  caller(ctx: Context): string | undefined;
  /** A live host's url by name, and the token this node shows other nodes: static files come from a node that loaded the job. */
  hostUrl(name: string): Promise<string | undefined>;
  ownToken?: string;
  /** For the OpenAPI document: kitchensink's version, and whether callers need a bearer token. */
  version: string;
  bearer: boolean;
}

/** A job as callers see it: not where its files are on the node's disk. */
function shown({ folder: _folder, statics, ...job }: CatalogEntry) {
  return { ...job, statics: statics.map(({ path, mimetype }) => ({ path, mimetype })) };
}

/** Every job of the cluster, sorted by name. */
async function byName(catalog: JobCatalog) {
  return [...(await catalog.all()).values()].sort((a, b) => a.name.localeCompare(b.name));
}

/** A percent-encoded path segment, decoded; malformed encoding is the caller's mistake. */
function decoded(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new BadRequest(`${JSON.stringify(segment.slice(0, 100))} is not valid percent-encoding`);
  }
}

/** Racetrack's `/parameters`: each parameter's name, annotation, default and whether it is required. */
function parameters(job: JobDescription) {
  const perform = job.endpoints.find((e) => e.path === '/perform')!;
  return perform.parameters.map((p) => ({
    name: p.name,
    type: p.type || null,
    ...('default' in p ? { default: p.default } : {}),
    required: p.required,
  }));
}

/**
 * `GET /api/v1/jobs[/<name>[/parameters | /<static path>]]`, `POST /api/v1/jobs/<name>/<endpoint>`
 * and `GET /api/v1/openapi.json`.
 */
export function jobRoutes(app: JobRoutesContext) {
  return async (ctx: Context, next: Next): Promise<void> => {
    if (ctx.path === '/api/v1/openapi.json' && ctx.method === 'GET') {
      return reply(ctx, openApiDocument(await byName(app.catalog), { version: app.version, bearer: app.bearer }));
    }
    if (ctx.path !== prefix && !ctx.path.startsWith(`${prefix}/`)) return next();
    const [name, ...rest] = ctx.path.slice(prefix.length + 1).split('/');
    const path = `/${rest.join('/')}`;
    if (ctx.method === 'GET' && !name) {
      return reply(ctx, { jobs: (await byName(app.catalog)).map(shown) });
    }
    const job = await app.catalog.find(decoded(name));
    if (!job) throw new NotFound(`no live node loaded a job named ${JSON.stringify(name)} (GET ${prefix} lists them)`);
    if (ctx.method === 'POST') {
      const body = await app.body(ctx);
      const answer = await app.service.perform(job.name, path, body, {
        withOutput: ctx.query.output === '1' || ctx.query.output === 'true',
        stop: app.clientGone(ctx),
        caller: app.caller(ctx),
      });
      ctx.status = answer.status;
      ctx.type = 'application/json';
      ctx.body = answer.json;
      return;
    }
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return reply(ctx, { error: 'method_not_allowed', detail: `${ctx.method} is not served on jobs` }, 405);
    if (path === '/') return reply(ctx, shown((await app.catalog.all()).get(job.name) ?? { ...job, hosts: [] }));
    if (path === '/parameters') return reply(ctx, parameters(job));
    if (job.name in app.catalog.local) await sendStatic(ctx, job, path);
    else await forwardStatic(ctx, app, job.name, path);
  };
}

/** A job's static file from a node that loaded the job, for a node that did not: its answer, passed on. */
async function forwardStatic(ctx: Context, app: JobRoutesContext, name: string, path: string): Promise<void> {
  const hosts = (await app.catalog.all()).get(name)?.hosts ?? [];
  for (const host of hosts) {
    const url = await app.hostUrl(host);
    if (!url) continue;
    const answer = await fetch(nodeRoute(url, `${prefix}/${encodeURIComponent(name)}${path}`), { method: ctx.method, headers: bearerHeader(app.ownToken) }).catch(() => undefined);
    if (!answer) continue;
    ctx.status = answer.status;
    ctx.set('content-type', answer.headers.get('content-type') ?? 'application/octet-stream');
    const length = answer.headers.get('content-length');
    if (length) ctx.length = Number(length);
    ctx.body = answer.body ? Readable.fromWeb(answer.body as import('node:stream/web').ReadableStream) : null;
    return;
  }
  throw new NotFound(`no live node that loaded job ${name} answers for its files`);
}

/** A static endpoint's file, or a file below a static folder; never a path outside it. */
async function sendStatic(ctx: Context, job: JobDescription, path: string): Promise<void> {
  const entry = job.statics.find((s) => path === s.path || path.startsWith(`${s.path}/`));
  if (!entry) throw new NotFound(`job ${job.name} has no GET ${path} (its endpoints take POST)`);
  let file = entry.file;
  let type: string | undefined = entry.mimetype;
  if (path !== entry.path) {
    const below = decoded(path.slice(entry.path.length + 1));
    if (below.split('/').some((segment) => segment === '..' || segment === '.') || below.includes('\0')) throw new BadRequest(`${path} leaves the job's folder`);
    file = join(entry.file, below);
    type = undefined;
  }
  let real: string;
  try {
    real = await realpath(file);
  } catch {
    throw new NotFound(`job ${job.name} has no file at ${path}`);
  }
  const root = await realpath(entry.file);
  if (real !== root && !real.startsWith(`${root}${sep}`)) throw new NotFound(`job ${job.name} has no file at ${path}`);
  const info = await stat(real);
  if (!info.isFile()) throw new NotFound(`${path} is a folder of job ${job.name}, not a file`);
  // The job's own mimetype as it gave it; a file below a static folder by its extension.
  if (type) ctx.set('content-type', type);
  else ctx.type = extname(real) || 'application/octet-stream';
  ctx.length = info.size;
  ctx.body = ctx.method === 'HEAD' ? null : createReadStream(real);
}

/** What the perform route needs without Koa. */
export interface FastPerformContext {
  service: JobService;
  gate: Gate;
  maxRequestSizeBytes: number;
  /** The node's JSON error answer of a thrown error: status, body, headers. */
  errorAnswer(error: unknown, where: string): [number, unknown, Record<string, string>];
  clientGone(res: ServerResponse): StopSwitch;
}

/**
 * `POST /api/v1/jobs/<name>/<endpoint>` with a JSON body of declared length, answered without
 * Koa: a perform's whole budget is a fraction of a millisecond, and Koa's context, router and
 * body parsing cost the node a good part of it (and garbage that lengthens the tail). Returns
 * false, touching nothing, for anything else; Koa then answers it.
 */
export function fastPerform(app: FastPerformContext): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const url = req.url;
    if (req.method !== 'POST' || !url?.startsWith(`${prefix}/`)) return false;
    const type = req.headers['content-type'];
    if (type === undefined || !/^application\/json\b/i.test(type)) return false;
    const declared = Number(req.headers['content-length']);
    if (!(declared <= app.maxRequestSizeBytes)) return false;
    const admitted = app.gate.admit(req.headers.authorization);
    if (!admitted) return false;
    const query = url.indexOf('?');
    const path = query < 0 ? url : url.slice(0, query);
    const slash = path.indexOf('/', prefix.length + 1);
    if (slash < 0) return false;
    const name = path.slice(prefix.length + 1, slash);
    const endpoint = path.slice(slash);
    const withOutput = query >= 0 && /(^|&)output=(1|true)(&|$)/.test(url.slice(query + 1));
    answerAfterBody(req, res, 'application/json', async (raw) => {
      try {
        const { status, json } = await app.service.perform(decoded(name), endpoint, parseJson(raw), { withOutput, stop: app.clientGone(res), caller: admitted.caller });
        return { status, body: json };
      } catch (error) {
        const [status, answer, headers] = app.errorAnswer(error, `POST ${path}`);
        return { status, body: JSON.stringify(answer), headers };
      }
    });
    return true;
  };
}
