import { crcHeader } from '../data/checksum.js';
import { CorruptData } from '../data/catalog.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { resolve, sep } from 'node:path';
import Koa, { type Context, type Next } from 'koa';
import Router from '@koa/router';
import { BadRequest, HttpError, Unauthorized, Forbidden } from '../errors.js';
import { decode, encode, encodePieces, joined, Packed, spliceable, Spliced } from '../codec.js';
import { carriesSource, type HostInfo, type WireAllOutcome, type WireCall, type WireEvent } from '../types.js';
import type { DirectCallResult } from '../worker/direct-call.js';
import { StopSwitch } from '../worker/executor.js';
import type { DataService } from '../data/service.js';
import type { CallService } from './calls.js';
import { answerAfterBody, answersMsgpack, decodeBody, isMsgpack, msgpackType, readBody, reply } from './http-body.js';
import * as v from './validate.js';
import { payloadBytesHeader } from '../keys.js';
import type { Gate } from './tokens.js';
import type { PersistedCalls } from './persisted.js';
import type { JobCatalog } from '../jobs/catalog.js';
import { jobRoutes } from '../jobs/routes.js';
import { docsRoutes } from '../jobs/docs.js';
import type { JobService } from '../jobs/service.js';
import { profileSpans } from '../profile.js';
import type { DashboardHub } from '../dashboard/hub.js';
import { dashboardEvents, dashboardPage } from '../dashboard/routes.js';

/** What the routes need from the node: one function per piece of work. */
export interface AppContext {
  calls: CallService;
  /** The node's log. */
  log(message: string): void;
  jobs: { catalog: JobCatalog; service: JobService };
  data: DataService;
  runDirect(call: WireCall<Uint8Array | Spliced>, stop: StopSwitch, caller?: string): Promise<DirectCallResult>;
  /** Runs a call on every interpreter of every live node serving its queue (`on: 'all'`). */
  runEverywhere(call: WireCall, stop: StopSwitch): Promise<WireAllOutcome[]>;
  /** Runs a call on every interpreter of this node. */
  runOnAllHere(call: WireCall, stop: StopSwitch): Promise<WireAllOutcome[]>;
  /** The ALL calls recorded to replay on interpreters that start later. */
  persisted: PersistedCalls;
  /** This node's dashboard viewers and the feed they read. */
  dashboard: DashboardHub;
  liveHosts(): Promise<HostInfo[]>;
  info(): Record<string, unknown>;
  /** kitchensink's version. */
  version: string;
  metrics(): Promise<string>;
  /** A live host's url by name. */
  hostUrl(name: string): Promise<string | undefined>;
  /** Told of the bytes every upload brought in and every download sent out. */
  dataMoved(direction: 'in' | 'out', bytes: number): void;
}

export interface AppOptions {
  /** Who may call: the node's named tokens and public paths. */
  gate: Gate;
  /** The token this node shows other nodes. */
  ownToken?: string;
  noCode: boolean;
  /** Where script files are (`--script-dir`, absolute); none: no script files. */
  scriptDir?: string;
  maxRequestSizeBytes: number;
}

/** A thrown error as `[status, {error, detail}, headers]`; never leaks a stack. */
export function errorAnswer(error: unknown, where: string): [number, { error: string; detail: string }, Record<string, string>] {
  if (error instanceof HttpError) return [error.status, { error: error.code, detail: error.message }, error.headers];
  console.error(`kitchensink: ${where} failed:`, error);
  return [500, { error: 'internal', detail: (error as Error).message ?? String(error) }, {}];
}

/** Turns thrown errors into `{error, detail}` with the right status. */
async function errors(ctx: Context, next: Next): Promise<void> {
  try {
    await next();
  } catch (error) {
    const [status, body, headers] = errorAnswer(error, `${ctx.method} ${ctx.path}`);
    ctx.set(headers);
    reply(ctx, body, status);
  }
}

/**
 * Events as a JSON client can use them: values and failures decoded from msgpack, output as
 * text. msgpack clients get `d` as it is and decode it themselves.
 */
function eventsFor(json: boolean, events: WireEvent[] | undefined): unknown {
  if (!events || !json) return events;
  return events.map(({ t, i, h, d, p, at }) => {
    // Only when asked for (`profile: true`): when Redis recorded a start or an end, and an end's profile.
    const times = at === undefined ? {} : { at, ...(p ? { profile: profileSpans(p) } : {}) };
    if (!d) return { t, i, h, ...times };
    if (t === 'stdout' || t === 'stderr') return { t, i, h, text: Buffer.from(d).toString('utf8') };
    return { t, i, h, [t === 'result' ? 'value' : 'failure']: decode(d), ...times };
  });
}

/** A direct call's answer; for JSON clients with the value decoded and the output as text. */
function directAnswer(json: boolean, { outcome, output }: DirectCallResult): unknown {
  const shownOutput = json ? output.map(([stream, chunk]) => [stream, chunk.toString('utf8')]) : output;
  if (!outcome.ok) return { ok: false, failure: outcome.failure, output: shownOutput };
  if (json) return { ok: true, value: decode(joined(outcome.value)), output: shownOutput };
  const value = spliceable(outcome.value);
  return value instanceof Spliced ? alignedAnswer(value, output) : { ok: true, value, output };
}

/**
 * `{ok: true, value, output}` with the value's bytes at byte 24 of the answer, a multiple of 8
 * (a map32 header and the key `value` as a str32 put them there; msgpack reads those as the
 * usual map and string): Python starts a big array's elements at a multiple of 8 within the
 * value, so the client can view them as a TypedArray where they arrived instead of copying.
 */
function alignedAnswer(value: Spliced, output: [string, Buffer][]): Packed {
  const head = Buffer.alloc(24);
  head[0] = 0xdf;
  head.writeUInt32BE(3, 1);
  head.write('\xa2ok\xc3\xdb', 5, 'latin1');
  head.writeUInt32BE(5, 10);
  head.write('value\xc6', 14, 'latin1');
  head.writeUInt32BE(value.byteLength, 20);
  return new Packed([head, ...value.pieces, encode('output'), ...encodePieces(output)]);
}

/** An `on: 'all'` call's outcomes; for JSON clients with values decoded and output as text. */
function allAnswer(json: boolean, outcomes: WireAllOutcome[]): unknown {
  if (!json) return { outcomes };
  return {
    outcomes: outcomes.map(({ value, output, ...rest }) => ({
      ...rest,
      ...(value && { value: decode(value) }),
      output: output.map(([stream, chunk]) => [stream, Buffer.from(chunk).toString('utf8')]),
    })),
  };
}

/** A switch that stops the request's work when its client goes away before the answer. */
export function clientGone(res: ServerResponse): StopSwitch {
  const gone = new StopSwitch();
  res.once('close', () => {
    if (!res.writableFinished) gone.stop();
  });
  return gone;
}

/** Refuses script files outside the node's `--script-dir` (403), before they are queued. */
function refuseScripts(scriptDir: string | undefined, calls: Pick<WireCall, 'fn'>[]): void {
  calls.forEach((c, k) => {
    if (typeof c.fn !== 'object' || !('script' in c.fn) || !('path' in c.fn.script)) return;
    if (!scriptDir) throw new Forbidden(`calls[${k}]: this node runs no script files (it has no --script-dir)`);
    const full = resolve(scriptDir, c.fn.script.path);
    if (!full.startsWith(`${scriptDir}${sep}`)) throw new Forbidden(`calls[${k}]: script ${JSON.stringify(c.fn.script.path)} is outside --script-dir`);
  });
}

/** Refuses source-text functions on a `--no-code` node. */
function refuseCode(noCode: boolean, calls: Pick<WireCall, 'fn'>[]): void {
  if (!noCode) return;
  const k = calls.findIndex((c) => carriesSource(c.fn));
  if (k >= 0) throw new Forbidden(`calls[${k}]: this node runs registered module functions, jobs and --script-dir scripts only (--no-code)`);
}

/**
 * The POST routes that take a body and answer a value, by path: shared by the Koa router and
 * by `fastCallRoutes`. `json`: answer a JSON client (values decoded, output as text).
 */
type BodyRoute = (body: unknown, json: boolean, res: ServerResponse, caller: string | undefined, trailing?: Spliced) => Promise<unknown>;

function bodyRoutes(app: AppContext, opts: AppOptions): Record<string, BodyRoute> {
  return {
    '/api/v1/calls': async (body, json, res, caller) => {
      const calls = v.wireCalls(body);
      refuseCode(opts.noCode, calls);
      refuseScripts(opts.scriptDir, calls);
      const waitMs = v.waitMs((body as { waitMs?: unknown }).waitMs);
      const batch = await app.calls.submit(calls, caller);
      // Submit-and-wait: a single call's round trip is then one HTTP request, not two.
      const first = waitMs ? await app.calls.results(batch.batchId, '0-0', waitMs, { remaining: calls.length, stop: clientGone(res), justSubmitted: true }) : undefined;
      return { ...batch, ...first, events: eventsFor(json, first?.events) };
    },
    '/api/v1/call': async (body, json, res, caller, trailing) => {
      const call = v.directCall(body, trailing);
      refuseCode(opts.noCode, [call]);
      refuseScripts(opts.scriptDir, [call]);
      return directAnswer(json, await app.runDirect(call, clientGone(res), caller));
    },
    '/api/v1/all': async (body, json, res) => {
      const call = v.wireCall(body, 'body');
      refuseCode(opts.noCode, [call]);
      refuseScripts(opts.scriptDir, [call]);
      return allAnswer(json, await app.runEverywhere(call, clientGone(res)));
    },
    '/api/v1/all/here': async (body, json, res) => {
      const call = v.wireCall(body, 'body');
      refuseCode(opts.noCode, [call]);
      refuseScripts(opts.scriptDir, [call]);
      return allAnswer(json, await app.runOnAllHere(call, clientGone(res)));
    },
    '/api/v1/results': async (body, json, res) => {
      const b = v.requireObject(body, 'body');
      const waitMs = v.waitMs(b.waitMs) ?? Infinity;
      if (b.profile !== undefined && typeof b.profile !== 'boolean') throw new BadRequest('profile must be true or false');
      const page = await app.calls.results(v.batchId(b.batchId), v.cursor(b.cursor), waitMs, { remaining: v.remaining(b.remaining), stop: clientGone(res), profile: b.profile === true });
      return { cursor: page.cursor, events: eventsFor(json, page.events) };
    },
  };
}

/**
 * The call routes (`POST /api/v1/call`, `/calls`, `/results`) for msgpack clients (ours),
 * answered without Koa: a call's whole budget is a few hundred µs, and Koa's context, router
 * and response took 55 µs of the node's CPU of it here. Returns false, touching nothing, for
 * every other request and for anything unusual (a JSON body, no Content-Length, a body over
 * the limit, a token that does not match): Koa then answers it as it answers the rest.
 */
export function fastCallRoutes(app: AppContext, opts: AppOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  const routes = bodyRoutes(app, opts);
  return (req, res) => {
    const route = req.method === 'POST' && req.url ? routes[req.url] : undefined;
    if (!route || !isMsgpack(req.headers['content-type'])) return false;
    const declared = Number(req.headers['content-length']);
    if (!(declared <= opts.maxRequestSizeBytes)) return false;
    const trailingBytes = req.headers[payloadBytesHeader] === undefined ? undefined : Number(req.headers[payloadBytesHeader]);
    // Koa refuses it everywhere else, and when it is not a byte count within the body.
    if (trailingBytes !== undefined && !(req.url === '/api/v1/call' && Number.isSafeInteger(trailingBytes) && trailingBytes >= 0 && trailingBytes <= declared)) return false;
    const admitted = opts.gate.admit(req.headers.authorization);
    if (!admitted) return false;
    answerAfterBody(
      req,
      res,
      msgpackType,
      async (raw, trailing) => {
        try {
          return { status: 200, body: encodePieces(await route(decodeBody(raw), false, res, admitted.caller, trailing)) };
        } catch (error) {
          const [status, answer, headers] = errorAnswer(error, `POST ${req.url}`);
          return { status, body: [encode(answer)], headers };
        }
      },
      trailingBytes,
    );
    return true;
  };
}

/**
 * Answers every request while the node starts: it listens before its interpreters and workers
 * are up (it names itself after its port), and a request then must not wait forever.
 */
export function answerStarting(req: IncomingMessage, res: ServerResponse): void {
  const body = JSON.stringify({ error: 'starting', detail: 'this node is starting: its interpreters and workers are not ready yet; try again in a moment' });
  req.on('error', () => {});
  req.resume();
  res.writeHead(503, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'retry-after': '1', connection: 'close' });
  res.end(body);
}

const dataPrefix = '/api/v1/data/';

/** The data url in a `/api/v1/data/<url>` path, its segments percent-decoded. */
function dataUrlOf(path: string): string {
  try {
    return path.slice(dataPrefix.length).split('/').map(decodeURIComponent).join('/');
  } catch {
    throw new BadRequest('the data url in the path is not valid percent-encoding');
  }
}

/** `PUT|GET|DELETE /api/v1/data/<url>` and `POST /api/v1/data/<url>/replicate`: streamed, not parsed. */
function dataRoutes(data: DataService, moved: AppContext['dataMoved'], log: AppContext['log']) {
  return async (ctx: Context, next: Next): Promise<void> => {
    if (!ctx.path.startsWith(dataPrefix) || (ctx.method === 'POST' && ctx.path === `${dataPrefix}info`)) return next();
    if (ctx.method === 'PUT') {
      const fmt = typeof ctx.query.fmt === 'string' ? ctx.query.fmt : 'raw';
      const declared = Number(ctx.get('content-length')) || undefined;
      const memory = ctx.query.memory === undefined ? undefined : ['1', 'true'].includes(String(ctx.query.memory));
      const stored = await data.put(dataUrlOf(ctx.path), ctx.req, fmt, declared, memory);
      moved('in', stored.size);
      reply(ctx, stored, 201);
    } else if (ctx.method === 'GET' || ctx.method === 'HEAD') {
      const read = await data.read(dataUrlOf(ctx.path), ctx.get('range') || undefined);
      ctx.set('accept-ranges', 'bytes');
      ctx.type = 'application/octet-stream';
      if (read.range) {
        ctx.status = 206;
        ctx.set('content-range', `bytes ${read.range.start}-${read.range.end}/${read.size}`);
        ctx.length = read.range.end - read.range.start + 1;
      } else {
        ctx.status = 200;
        ctx.length = read.size;
        // Readers check what they got against it; the node itself never sends the whole of a copy that fails it.
        if (read.checksum && 'crc32' in read.checksum) ctx.set(crcHeader, read.checksum.crc32);
      }
      if (ctx.method === 'HEAD') return;
      // The body is written straight to the socket, from buffers the send reuses.
      ctx.respond = false;
      ctx.res.flushHeaders();
      await read.send(ctx.res).then(
        () => moved('out', ctx.length ?? 0),
        (error: Error) => {
          if (error instanceof CorruptData) log(error.message);
          ctx.res.destroy(error);
        },
      );
    } else if (ctx.method === 'DELETE') {
      reply(ctx, await data.remove(dataUrlOf(ctx.path)));
    } else if (ctx.method === 'POST' && ctx.path.endsWith('/replicate')) {
      reply(ctx, await data.replicate(dataUrlOf(ctx.path.slice(0, -'/replicate'.length))));
    } else {
      reply(ctx, { error: 'method_not_allowed', detail: `${ctx.method} is not served on data urls` }, 405);
    }
  };
}

export function createApp(app: AppContext, opts: AppOptions): Koa {
  const koa = new Koa();
  const router = new Router();
  const body = (ctx: Context) => readBody(ctx, opts.maxRequestSizeBytes);

  router.get('/health', (ctx) => reply(ctx, { ok: true }));
  router.get('/info', (ctx) => reply(ctx, app.info()));
  router.get('/metrics', async (ctx) => {
    ctx.type = 'text/plain; version=0.0.4';
    ctx.body = await app.metrics();
  });
  router.get('/api/v1/hosts', async (ctx) => reply(ctx, { hosts: await app.liveHosts() }));

  for (const [path, route] of Object.entries(bodyRoutes(app, opts))) {
    router.post(path, async (ctx) => reply(ctx, await route(await body(ctx), !answersMsgpack(ctx), ctx.res, ctx.state.caller as string | undefined)));
  }

  router.post('/api/v1/data/info', async (ctx) => {
    const b = v.requireObject(await body(ctx), 'body');
    reply(ctx, await app.data.info(v.stringList(b.urls, 'urls', 100_000)));
  });

  router.get('/api/v1/data', async (ctx) => {
    reply(ctx, { urls: await app.data.search(typeof ctx.query.glob === 'string' ? ctx.query.glob : '*') });
  });

  router.get('/api/v1/persisted', async (ctx) => {
    const calls = await app.persisted.all();
    reply(ctx, { calls: calls.map(({ payload: _payload, ...shown }) => shown) });
  });

  router.delete('/api/v1/persisted/:id', async (ctx) => {
    await app.persisted.forget(ctx.params.id);
    reply(ctx, { forgotten: ctx.params.id });
  });

  router.post('/api/v1/cancel', async (ctx) => {
    const b = v.requireObject(await body(ctx), 'body');
    if (b.batchId !== undefined) {
      reply(ctx, { cancelled: await app.calls.cancelBatch(v.batchId(b.batchId)) });
    } else {
      reply(ctx, { cancelled: await app.calls.cancel(v.stringList(b.taskIds, 'taskIds')) });
    }
  });

  router.post('/api/v1/admin/cancel-all', async (ctx) => {
    await body(ctx);
    reply(ctx, { cancelled: await app.calls.cancelAll() });
  });

  koa.use(errors);
  // The docs page and its assets hold no data: they answer without the token (the page asks for it).
  koa.use(docsRoutes());
  koa.use(dashboardPage());
  if (opts.gate.closed) {
    koa.use(async (ctx, next) => {
      const caller = opts.gate.callerOf(ctx.get('authorization'));
      if (caller === undefined && !opts.gate.isPublic(ctx.path)) throw new Unauthorized();
      ctx.state.caller = caller;
      await next();
    });
  }
  koa.use(dashboardEvents(app.dashboard));
  koa.use(dataRoutes(app.data, app.dataMoved, app.log));
  koa.use(jobRoutes({ ...app.jobs, hostUrl: app.hostUrl, ownToken: opts.ownToken, body, clientGone: (ctx) => clientGone(ctx.res), caller: (ctx) => ctx.state.caller as string | undefined, version: app.version, bearer: opts.gate.closed }));
  koa.use(router.routes());
  koa.use(router.allowedMethods({ throw: false }));
  koa.use(async (ctx) => {
    if (ctx.status === 404 && ctx.body === undefined) reply(ctx, { error: 'not_found', detail: `no route ${ctx.method} ${ctx.path}` }, 404);
  });
  return koa;
}
