import { encode, Spliced } from '../codec.js';
import { validateDataUrl } from '../data/catalog.js';
import { BadRequest } from '../errors.js';
import { batchIdPattern, namePattern, payloadBytesHeader } from '../keys.js';
import type { CallOptions, FnSpec, WireCall } from '../types.js';

/** The most calls one `POST /calls` may carry. */
export const maxCallsPerBatch = 1_000_000;

type Obj = Record<string, unknown>;

function isObject(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

export function requireObject(value: unknown, what: string): Obj {
  if (!isObject(value)) throw new BadRequest(`${what} must be an object`);
  return value;
}

function fnSpec(value: unknown, where: string): FnSpec {
  if (typeof value === 'string') {
    if (!/^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$/.test(value)) {
      throw new BadRequest(`${where}.fn ${JSON.stringify(value.slice(0, 200))} is not 'package.module:function'`);
    }
    return value;
  }
  if (isObject(value) && typeof value.src === 'string') {
    if (value.name !== undefined && value.name !== null && typeof value.name !== 'string') {
      throw new BadRequest(`${where}.fn.name must be a string`);
    }
    return { src: value.src, name: (value.name as string | undefined) || undefined };
  }
  if (isObject(value) && ('eval' in value || 'exec' in value || 'script' in value)) return patternSpec(value, where);
  if (isObject(value) && typeof value.job === 'string') {
    if (!namePattern.test(value.job)) throw new BadRequest(`${where}.fn.job must be a job name of letters, digits, '.', '_' or '-'`);
    if (value.endpoint !== undefined && value.endpoint !== null && (typeof value.endpoint !== 'string' || !/^\/[A-Za-z0-9_.\-/]{1,200}$/.test(value.endpoint))) {
      throw new BadRequest(`${where}.fn.endpoint must be a path like /perform or /explain`);
    }
    return value.endpoint ? { job: value.job, endpoint: value.endpoint as string } : { job: value.job };
  }
  throw new BadRequest(`${where}.fn must be 'package.module:function', {src, name?} or {job, endpoint?}`);
}

const identifier = /^[A-Za-z_][A-Za-z0-9_]{0,200}$/;

/** An `eval`, `exec` or `script` call, checked: source text, `returns` names, a relative script path. */
function patternSpec(value: Obj, where: string): FnSpec {
  const keep = bool(value.keep, `${where}.fn.keep`);
  const returns = value.returns === undefined || value.returns === null ? undefined : stringList(value.returns, `${where}.fn.returns`, 1000);
  const bad = returns?.find((name) => !identifier.test(name));
  if (bad !== undefined) throw new BadRequest(`${where}.fn.returns: ${JSON.stringify(bad.slice(0, 100))} is not a Python name`);
  const extra = { ...(keep !== undefined && { keep }), ...(returns && { returns }) };
  if (typeof value.eval === 'string') return { eval: value.eval, ...(keep !== undefined && { keep }) };
  if (typeof value.exec === 'string') return { exec: value.exec, ...extra };
  const script = value.script;
  if (isObject(script) && typeof script.src === 'string') return { script: { src: script.src }, ...extra };
  if (isObject(script) && typeof script.path === 'string') {
    const path = script.path;
    if (!path || path.includes('\0') || path.split('/').includes('..')) throw new BadRequest(`${where}.fn.script.path must be a path inside the node's --script-dir`);
    return { script: { path }, ...extra };
  }
  throw new BadRequest(`${where}.fn must be {eval: string}, {exec: string, returns?} or {script: {path} | {src}, returns?}`);
}

function persistsAll(o: Obj, where: string): boolean | undefined {
  const persist = bool(o.persist, `${where}.persist`);
  if (persist && o.on !== 'all') throw new BadRequest(`${where}.persist works with on: 'all' only`);
  return persist;
}

function onWhich(value: unknown, where: string): 'any' | 'all' | undefined {
  if (value === undefined || value === null) return undefined;
  if (value !== 'any' && value !== 'all') throw new BadRequest(`${where} must be 'any' or 'all'`);
  return value;
}

function positiveNumber(value: unknown, where: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new BadRequest(`${where} must be a positive number`);
  return value;
}

function name(value: unknown, where: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || !namePattern.test(value)) throw new BadRequest(`${where} must be a name of letters, digits, '.', '_' or '-'`);
  return value;
}

function bool(value: unknown, where: string): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw new BadRequest(`${where} must be true or false`);
  return value;
}

/** `env`, which names the queue itself: refused beside `queue`. */
function environment(o: Record<string, unknown>, where: string): string | undefined {
  const env = name(o.env, `${where}.env`);
  if (env !== undefined && o.queue !== undefined && o.queue !== null) throw new BadRequest(`${where}: give env or queue, not both (env ${env} is the queue env.${env})`);
  return env;
}

export function callOptions(value: unknown, where: string): CallOptions {
  if (value === undefined || value === null) return {};
  const o = requireObject(value, where);
  const retries = o.retries;
  if (retries !== undefined && retries !== null && !(Number.isInteger(retries) && (retries as number) >= 0 && (retries as number) <= 100)) {
    throw new BadRequest(`${where}.retries must be an integer from 0 to 100`);
  }
  return {
    timeout: positiveNumber(o.timeout, `${where}.timeout`),
    host: name(o.host, `${where}.host`),
    queue: name(o.queue, `${where}.queue`),
    env: environment(o, where),
    intermediateResults: bool(o.intermediateResults, `${where}.intermediateResults`),
    retries: (retries as number | undefined) ?? undefined,
    noRouteData: bool(o.noRouteData, `${where}.noRouteData`),
    on: onWhich(o.on, `${where}.on`),
    sla: positiveNumber(o.sla, `${where}.sla`),
    persist: persistsAll(o, where),
  };
}

/** The call of `POST /api/v1/call`, whose payload may follow its msgpack (`payloadBytesHeader`). */
export function directCall(value: unknown, trailing: Spliced | undefined): WireCall<Uint8Array | Spliced> {
  if (!trailing) return wireCall(value, 'body');
  const c = requireObject(value, 'body');
  if (c.payload !== undefined || c.args !== undefined || c.kwargs !== undefined) {
    throw new BadRequest(`the body holds payload, args or kwargs, but ${payloadBytesHeader} says the payload follows it`);
  }
  return { ...wireCall({ ...c, payload: new Uint8Array(0) }, 'body'), payload: trailing };
}

/** One call: `payload` (msgpack of [args, kwargs]) or `args`/`kwargs` that the node packs. */
export function wireCall(value: unknown, where: string): WireCall {
  const c = requireObject(value, where);
  let payload: Uint8Array;
  if (c.payload !== undefined) {
    if (!(c.payload instanceof Uint8Array)) throw new BadRequest(`${where}.payload must be bytes (msgpack of [args, kwargs])`);
    payload = c.payload;
  } else {
    const args = c.args ?? [];
    const kwargs = c.kwargs ?? {};
    if (!Array.isArray(args)) throw new BadRequest(`${where}.args must be an array`);
    if (!isObject(kwargs)) throw new BadRequest(`${where}.kwargs must be an object`);
    payload = encode([args, kwargs]);
  }
  let route: string[] | undefined;
  if (c.route !== undefined && c.route !== null) {
    if (!Array.isArray(c.route) || c.route.length > 10_000) throw new BadRequest(`${where}.route must be an array of host names`);
    route = c.route.map((h, k) => name(h, `${where}.route[${k}]`)!);
  }
  let routeBytes: number[] | undefined;
  if (c.routeBytes !== undefined && c.routeBytes !== null) {
    if (!route || !Array.isArray(c.routeBytes) || c.routeBytes.length !== route.length) throw new BadRequest(`${where}.routeBytes must be an array of byte counts, one per host of ${where}.route`);
    routeBytes = c.routeBytes.map((n, k) => {
      if (!Number.isSafeInteger(n) || (n as number) < 0) throw new BadRequest(`${where}.routeBytes[${k}] must be a whole number of bytes, not ${JSON.stringify(n)}`);
      return n as number;
    });
  }
  let data: string[] | undefined;
  if (c.data !== undefined && c.data !== null) {
    data = stringList(c.data, `${where}.data`, 10_000);
    data.forEach(validateDataUrl);
  }
  return { fn: fnSpec(c.fn, where), payload, opts: callOptions(c.opts, `${where}.opts`), route, routeBytes, data };
}

export function wireCalls(body: unknown): WireCall[] {
  const calls = requireObject(body, 'body').calls;
  if (!Array.isArray(calls) || calls.length === 0) throw new BadRequest('body.calls must be a non-empty array');
  if (calls.length > maxCallsPerBatch) throw new BadRequest(`a batch holds at most ${maxCallsPerBatch} calls`);
  return calls.map((c, k) => wireCall(c, `calls[${k}]`));
}

export function batchId(value: unknown): string {
  if (typeof value !== 'string' || !batchIdPattern.test(value)) throw new BadRequest('batchId must be a batch id as returned by POST /calls');
  return value;
}

export function cursor(value: unknown): string {
  if (value === undefined || value === null) return '0-0';
  if (typeof value !== 'string' || !/^\d{1,20}(-\d{1,20})?$/.test(value)) throw new BadRequest('cursor must be a stream id like 1700000000000-0');
  return value;
}

/** Milliseconds a request may wait for events; absent is undefined. */
export function waitMs(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !(value >= 0)) throw new BadRequest('waitMs must be a number of milliseconds');
  return value;
}

/** How many of its calls a client still waits for; absent is undefined. */
export function remaining(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Number.isInteger(value) || (value as number) < 0) throw new BadRequest('remaining must be a count of calls');
  return value as number;
}

export function stringList(value: unknown, what: string, max = 1_000_000): string[] {
  if (!Array.isArray(value) || value.length > max || !value.every((v) => typeof v === 'string')) {
    throw new BadRequest(`${what} must be an array of strings`);
  }
  return value as string[];
}
