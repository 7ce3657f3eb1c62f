import { setTimeout as delay } from 'node:timers/promises';
import { config } from '../config.js';
import { decode, encodePayload, spliceBytes, Spliced } from '../codec.js';
import { inspectArguments } from './arguments.js';
import { NodeRequestError, RemoteError } from '../errors.js';
import { routeCalls } from '../routing.js';
import { decodeWith, RemoteData, setDefaultClientResolver, type DataInfo } from './remote-data.js';
import { callQueue, taskIdOf } from '../keys.js';
import { isPatternSpec, type CallOptions, type FailureInfo, type FnSpec, type HostInfo, type WireAllOutcome, type WireCall, type WireEvent } from '../types.js';
import { NodeHttp } from './http.js';
import { Progress } from './progress.js';
import { Stragglers, type Straggler } from './stragglers.js';
import { toFnSpec } from './py.js';
import { readProfile, type CallProfile } from '../profile.js';

export interface ClientOptions {
  /** Bearer token of nodes started with `--token`. */
  token?: string;
  /** Receives the remote stdout and stderr as it arrives. Default `process.stdout`. */
  output?: NodeJS.WritableStream;
  /** Hosts that would copy this many bytes or more are not routed to. Default 200,000,000. */
  dataThreshold?: number;
}

export interface BrOptions {
  /** Resolve to every outcome instead of rejecting on the first failure (cancels nothing). */
  collect?: boolean;
  /** Also answer where each call's time went (`{results, profiles}`). */
  profile?: boolean;
}

/** `br({profile: true})`'s answer: the results as `br()` gives them, and each call's profile. */
export interface Profiled<R> {
  results: R[];
  profiles: CallProfile[];
}

/** One call's outcome as `asCompleted()` yields it: its position among the calls awaited, and its task id. */
export type Completed<T = unknown> = Outcome<T> & { index: number; taskId: string; profile: CallProfile };

/** An ALL call recorded with `persist: true`, as `persisted()` lists it. */
export interface PersistedCallInfo {
  id: string;
  queue: string;
  fn: FnSpec;
  timeoutS?: number;
  recordedAt: number;
}

/** One interpreter's outcome of a `call(..., {on: 'all'})`. */
export type AllOutcome<T = unknown> = { host: string; worker: number; ok: true; value: T } | { host: string; worker: number; ok: false; error: RemoteError };

/** One call's outcome when `br({collect: true})`. */
export type Outcome<T = unknown> = { ok: true; value: T } | { ok: false; error: RemoteError };

interface Batch {
  batchId: string;
  taskIds: string[];
  /** When the client sent it (profiles' totals), and each call's SLA in ms: a call still running then is reported late. */
  sentAt?: number;
  slaMs?: (number | undefined)[];
}

/** A call as the client sends it: a big payload as pieces written where they are. */
type OutgoingCall = WireCall<Uint8Array | Spliced>;

/** Notes when a batch was sent and its calls' SLAs, for `waitFor`. */
function withSlas<B extends Batch>(batch: B, calls: OutgoingCall[], sentAt: number): B {
  batch.sentAt = sentAt;
  if (calls.some((c) => c.opts?.sla)) batch.slaMs = calls.map((c) => (c.opts?.sla ? c.opts.sla * 1000 : undefined));
  return batch;
}

/** Told of each call of a batch as it ends (and not again when a late call's real end comes). */
type OnEnd<T> = (index: number, outcome: Outcome<T>, profile: CallProfile) => void;

interface PendingCall {
  fn: FnSpec;
  args: unknown[];
  kwargs: Record<string, unknown>;
  opts: CallOptions;
  /** The `RemoteData` among the arguments. */
  data: RemoteData[];
}

function pendingCall(fn: FnSpec, args: unknown[], kwargs: Record<string, unknown>, opts: CallOptions): PendingCall {
  if (!Array.isArray(args)) throw new TypeError('args must be an array');
  if (opts.on !== undefined && opts.on !== 'any' && opts.on !== 'all') throw new TypeError(`opts.on must be 'any' or 'all', not ${JSON.stringify(opts.on)}`);
  if (opts.persist && opts.on !== 'all') throw new TypeError("opts.persist works with on: 'all' only");
  for (const limit of ['sla', 'timeout'] as const) {
    if (opts[limit] !== undefined && !(typeof opts[limit] === 'number' && opts[limit]! > 0 && Number.isFinite(opts[limit]))) throw new TypeError(`opts.${limit} must be a positive number of seconds`);
  }
  const data = inspectArguments(kwargs, isPatternSpec(fn) ? 'vars' : 'kwargs', inspectArguments(args, 'args'));
  return { fn: toFnSpec(fn), args, kwargs, opts, data };
}

interface ResultsPage {
  cursor: string;
  events: WireEvent[];
}

interface DirectAnswer {
  ok: boolean;
  value?: Uint8Array;
  failure?: FailureInfo;
  output: [string, Uint8Array][];
}

/**
 * A batch the node refused as too many (429: `--max-queued`), or for an environment no node
 * has (`unknown_env`), rejects as a `RemoteError` of kind `rejected`: the call never ran.
 */
async function rejectedAsRemoteError<T>(request: Promise<T>): Promise<T> {
  try {
    return await request;
  } catch (error) {
    if (error instanceof NodeRequestError && (error.status === 429 || error.code === 'unknown_env')) throw new RemoteError({ kind: 'rejected', message: error.detail });
    throw error;
  }
}

/** How long one long-poll may hold; the node bounds it too. */
const longPollMs = config.longPollMaxMs;

/**
 * A connection to a kitchensink cluster through any of its nodes.
 *
 * ```ts
 * const c = new Client('http://127.0.0.1:6323');
 * for (let i = 0; i < 100; i++) c.bc('operator:add', [i, 1]);
 * await c.execute();
 * const sums = await c.br();
 * ```
 */
export class Client {
  readonly http: NodeHttp;
  readonly output: NodeJS.WritableStream;
  readonly dataThreshold: number;
  private pending: PendingCall[] = [];
  private readonly late = new Stragglers();
  private unread: Batch[] = [];
  private lastBatch?: Batch;

  constructor(url: string, opts: ClientOptions = {}) {
    this.http = new NodeHttp(url, { token: opts.token });
    this.output = opts.output ?? process.stdout;
    this.dataThreshold = opts.dataThreshold ?? config.dataThresholdBytes;
  }

  /** The url of the node this client talks to. */
  get url(): string {
    return this.http.url;
  }

  /**
   * Records a call for the next `execute()`; nothing is sent yet.
   * @param fn `'package.module:function'` or `` py`def f(...): ...` ``
   * @returns the call's position in the coming batch
   */
  bc(fn: FnSpec, args: unknown[] = [], kwargs: Record<string, unknown> = {}, opts: CallOptions = {}): number {
    if (opts.on === 'all') throw new TypeError("on: 'all' works with call(), which answers one outcome per interpreter; batches run each call once");
    this.pending.push(pendingCall(fn, args, kwargs, opts));
    return this.pending.length - 1;
  }

  /** Sends every call recorded by `bc()` in one request; resolves to their task ids, in order. */
  async execute(): Promise<string[]> {
    const calls = this.pending;
    this.pending = [];
    if (!calls.length) return [];
    const batch = await this.submit(await this.toWire(calls));
    this.unread.push(batch);
    return batch.taskIds;
  }

  /**
   * Waits for the calls sent by `execute()` since the last `br()`, printing their output as it
   * arrives, and resolves to their results in call order. On the first failure it cancels the
   * rest and rejects with that `RemoteError`; with `{collect: true}` it resolves to every outcome.
   */
  async br<T = unknown>(opts: { collect: true; profile: true }): Promise<Profiled<Outcome<T>>>;
  async br<T = unknown>(opts: { collect?: false; profile: true }): Promise<Profiled<T>>;
  async br<T = unknown>(opts: { collect: true; profile?: false }): Promise<Outcome<T>[]>;
  async br<T = unknown>(opts?: { collect?: false; profile?: false }): Promise<T[]>;
  async br<T = unknown>(opts: BrOptions = {}): Promise<T[] | Outcome<T>[] | Profiled<T | Outcome<T>>> {
    if (opts === null || typeof opts !== 'object') throw new TypeError('br(opts): opts must be an object such as {collect: true}');
    const batches = this.unread;
    this.unread = [];
    const all: (T | Outcome<T>)[] = [];
    const profiles: CallProfile[] = [];
    for (const batch of batches) {
      const offset = all.length;
      const onEnd: OnEnd<T> | undefined = opts.profile ? (index, _outcome, profile) => (profiles[offset + index] = profile) : undefined;
      all.push(...(await this.waitFor<T>(batch, opts.collect ?? false, undefined, onEnd)));
    }
    return opts.profile ? { results: all, profiles } : (all as T[] | Outcome<T>[]);
  }

  /**
   * The calls sent by `execute()` since the last `br()`, each as soon as it ends (Dask's
   * `as_completed`, Ray's `wait`): its outcome, its position among them, its task id and
   * profile. A failure is yielded like any outcome and cancels nothing. Break out of the loop
   * to stop waiting; the calls run on.
   */
  async *asCompleted<T = unknown>(): AsyncGenerator<Completed<T>> {
    const batches = this.unread;
    this.unread = [];
    const ready: Completed<T>[] = [];
    let wake: (() => void) | undefined;
    let failure: { error: unknown } | undefined;
    let abandoned = false;
    let offset = 0;
    const reading = batches.map((batch) => {
      const first = offset;
      offset += batch.taskIds.length;
      return this.waitFor<T>(batch, true, undefined, (index, outcome, profile) => {
        // The loop was left: stop reading at the next end (thrown out of waitFor, caught below).
        if (abandoned) throw new Error('asCompleted() was left');
        ready.push({ ...outcome, index: first + index, taskId: taskIdOf(batch.batchId, index), profile });
        wake?.();
      }).catch((error: unknown) => {
        failure ??= { error };
        wake?.();
      });
    });
    try {
      for (let yielded = 0; yielded < offset; ) {
        if (!ready.length) {
          if (failure) throw failure.error;
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
          continue;
        }
        yield ready.shift()!;
        yielded += 1;
      }
      await Promise.all(reading);
    } finally {
      abandoned = true;
    }
  }

  /**
   * Runs one call and resolves to its result. `opts.async === false` runs it at once on the
   * contacted node's interpreters, skipping the queue.
   */
  async call<T = unknown>(fn: FnSpec, args: unknown[] = [], kwargs: Record<string, unknown> = {}, opts: CallOptions = {}): Promise<T> {
    const [call] = await this.toWire([pendingCall(fn, args, kwargs, opts)]);
    if (opts.on === 'all') return (await this.callEverywhere(call)) as T;
    if (opts.async === false) return this.callDirect<T>(call);
    const [value] = await this.submitAndWait<T>([call]);
    return value as T;
  }

  /**
   * Calls a job's `/perform` (or `opts.endpoint`) with keyword arguments, on a node that loaded
   * it (`ks start --entrypoint NAME=...`); resolves to its result. Values cross as msgpack, as
   * in `call()`, and the job's output prints as it arrives.
   */
  perform<T = unknown>(name: string, kwargs: Record<string, unknown> = {}, opts: CallOptions & { endpoint?: string } = {}): Promise<T> {
    const { endpoint, ...callOpts } = opts;
    return this.call<T>(endpoint ? { job: name, endpoint } : { job: name }, [], kwargs, callOpts);
  }

  /**
   * The value of a Python expression, evaluated in the interpreter's persistent namespace with
   * `vars` bound for the call (taken away after it unless `opts.keep`).
   */
  eval<T = unknown>(expression: string, vars: Record<string, unknown> = {}, opts: CallOptions & { keep?: boolean } = {}): Promise<T> {
    const { keep, ...callOpts } = opts;
    return this.call<T>({ eval: expression, ...(keep && { keep }) }, [], vars, callOpts);
  }

  /**
   * Runs statements in the interpreter's persistent namespace, `vars` bound for the call;
   * resolves to the variables named in `opts.returns` (`null` without). What the code defines
   * stays for the next call on that interpreter.
   */
  exec<T = Record<string, unknown> | null>(code: string, vars: Record<string, unknown> = {}, opts: CallOptions & { returns?: string[]; keep?: boolean } = {}): Promise<T> {
    const { keep, returns, ...callOpts } = opts;
    return this.call<T>({ exec: code, ...(returns && { returns }), ...(keep && { keep }) }, [], vars, callOpts);
  }

  /** Runs a script (a file under the node's `--script-dir`, or source) in the persistent namespace, as `exec()` does. */
  runScript<T = Record<string, unknown> | null>(script: { path: string } | { src: string }, vars: Record<string, unknown> = {}, opts: CallOptions & { returns?: string[]; keep?: boolean } = {}): Promise<T> {
    const { keep, returns, ...callOpts } = opts;
    return this.call<T>({ script, ...(returns && { returns }), ...(keep && { keep }) }, [], vars, callOpts);
  }

  /** The ALL calls recorded with `persist: true`, in the order they replay (per queue). */
  async persisted(): Promise<PersistedCallInfo[]> {
    return (await this.http.request<{ calls: PersistedCallInfo[] }>('GET', '/api/v1/persisted')).calls;
  }

  /** Stops replaying a recorded ALL call on interpreters that start later; rejects (404) for an unknown id. */
  async forget(id: string): Promise<void> {
    await this.http.request('DELETE', `/api/v1/persisted/${encodeURIComponent(id)}`);
  }

  /** Runs `fn` once per argument list, in one batch; resolves to the results in order. */
  async map<T = unknown>(fn: FnSpec, argsList: unknown[][], opts: CallOptions = {}): Promise<T[]> {
    if (!argsList.length) return [];
    return (await this.submitAndWait<T>(await this.toWire(argsList.map((args) => pendingCall(fn, args, {}, opts))))) as T[];
  }

  /** Cancels one call by task id: it never runs, or is stopped where it runs. */
  async cancel(taskId: string): Promise<boolean> {
    const { cancelled } = await this.http.request<{ cancelled: number }>('POST', '/api/v1/cancel', { taskIds: [taskId] });
    return cancelled > 0;
  }

  /** Cancels every call of the last batch this client sent that has not ended. */
  async bulkCancel(): Promise<number> {
    if (!this.lastBatch) return 0;
    return this.cancelBatch(this.lastBatch.batchId);
  }

  /** Cancels every call waiting in any queue of the cluster (admin). */
  async cancelAll(): Promise<number> {
    const { cancelled } = await this.http.request<{ cancelled: number }>('POST', '/api/v1/admin/cancel-all', {});
    return cancelled;
  }

  /** Live hosts, their workers and queues. */
  async hosts(): Promise<HostInfo[]> {
    const { hosts } = await this.http.request<{ hosts: HostInfo[] }>('GET', '/api/v1/hosts');
    return hosts;
  }

  /** Closes the client's idle connections. */
  close(): void {
    this.http.close();
  }

  /** The url of a live host by name. */
  async hostUrl(name: string): Promise<string> {
    const host = (await this.hosts()).find((h) => h.name === name);
    if (!host) throw new NodeRequestError(400, 'bad_request', `unknown or dead host ${JSON.stringify(name)}`, this.url);
    return host.url;
  }

  /** Size, CRC-32, format and live holders of each url; unknown urls are left out. */
  async dataInfo(urls: string[]): Promise<Record<string, DataInfo>> {
    return (await this.dataInfoAndHosts(urls)).data;
  }

  /** `dataInfo` and the live hosts, in one request. */
  dataInfoAndHosts(urls: string[]): Promise<{ data: Record<string, DataInfo>; hosts: HostInfo[] }> {
    return this.http.request('POST', '/api/v1/data/info', { urls });
  }

  /** Data urls matching a glob (`*`, `?`). */
  async pathSearch(glob: string): Promise<string[]> {
    const { urls } = await this.http.request<{ urls: string[] }>('GET', `/api/v1/data?glob=${encodeURIComponent(glob)}`);
    return urls;
  }

  /**
   * Prepares calls for the wire: saves the `RemoteData` among their arguments that is not on the
   * cluster yet, then ranks hosts by the bytes each call would copy (one data/info request).
   */
  private async toWire(calls: PendingCall[]): Promise<OutgoingCall[]> {
    const found = calls.map((c) => c.data);
    const unsaved = new Set(found.flat().filter((d) => !d.saved));
    await Promise.all([...unsaved].map((d) => d.save()));
    const urlsOf = found.map((list) => [...new Set(list.map((d) => d.dataUrl!))]);
    const allUrls = [...new Set(urlsOf.flat())];
    const routing = allUrls.length ? await this.dataInfoAndHosts(allUrls) : undefined;
    const routed = calls.map((call, k) => (routing && urlsOf[k].length && !call.opts.noRouteData && !call.opts.host ? urlsOf[k] : []));
    const routes = routing
      ? routeCalls(
          routed,
          routing.data,
          // The hosts that serve each routed call's queue.
          calls.map((call, k) => {
            if (!routed[k].length) return [];
            const queue = callQueue({ fn: call.fn, opts: call.opts });
            return routing.hosts.filter((h) => h.queues.includes(queue)).map((h) => h.name);
          }),
          this.dataThreshold,
          { bytesPerMs: config.copyBytesPerMs, copyMs: config.routedCopyMs, callMs: config.routedCallMs },
          config.routeHostsMax,
        )
      : [];
    return calls.map((call, k) => {
      const { async: _async, ...opts } = call.opts;
      const urls = urlsOf[k];
      const pieces = encodePayload(call.args, call.kwargs);
      const wire: OutgoingCall = { fn: call.fn, payload: pieces.length === 1 ? pieces[0] : new Spliced(pieces), opts };
      if (!urls.length) return wire;
      wire.data = urls;
      if (routed[k].length) {
        wire.route = routes[k].map((h) => h.name);
        wire.routeBytes = routes[k].map((h) => h.bytesToCopy);
      }
      return wire;
    });
  }

  private async submit(calls: OutgoingCall[]): Promise<Batch> {
    const sentAt = Date.now();
    const batch = withSlas(await rejectedAsRemoteError(this.http.request<Batch>('POST', '/api/v1/calls', { calls })), calls, sentAt);
    this.lastBatch = batch;
    return batch;
  }

  /** Submits and takes the first events in the same request, then waits for the rest. */
  private async submitAndWait<T>(calls: OutgoingCall[]): Promise<(T | Outcome<T>)[]> {
    const sentAt = Date.now();
    // The first wait ends by the soonest SLA, so that a late call is reported on time.
    const soonestSlaMs = calls.reduce((soonest, c) => (c.opts?.sla ? Math.min(soonest, c.opts.sla * 1000) : soonest), Infinity);
    const first = withSlas(await rejectedAsRemoteError(this.http.request<Batch & ResultsPage>('POST', '/api/v1/calls', { calls, waitMs: Math.min(longPollMs, soonestSlaMs) })), calls, sentAt);
    this.lastBatch = first;
    return this.waitFor<T>(first, false, first);
  }

  private async cancelBatch(batchId: string): Promise<number> {
    const { cancelled } = await this.http.request<{ cancelled: number }>('POST', '/api/v1/cancel', { batchId });
    return cancelled;
  }

  /** One outcome per interpreter of every live node serving the call's queue; their output printed. */
  private async callEverywhere<T>(call: OutgoingCall): Promise<AllOutcome<T>[]> {
    const { outcomes } = await rejectedAsRemoteError(this.http.request<{ outcomes: WireAllOutcome[] }>('POST', '/api/v1/all', call));
    for (const { output } of outcomes) for (const [, chunk] of output) this.output.write(Buffer.from(chunk));
    return outcomes.map(({ host, worker, ok, value, failure }) =>
      ok ? { host, worker, ok: true, value: decodeWith<T>(this, value!) } : { host, worker, ok: false, error: new RemoteError(failure!, undefined, host) },
    );
  }

  private async callDirect<T>(call: OutgoingCall): Promise<T> {
    // A big payload follows the msgpack, for the node to pass on without gathering it.
    const { payload, ...rest } = call;
    const request = payload.byteLength >= spliceBytes ? this.http.request<DirectAnswer>('POST', '/api/v1/call', rest, payload instanceof Spliced ? payload.pieces : [payload]) : this.http.request<DirectAnswer>('POST', '/api/v1/call', call);
    const answer = await rejectedAsRemoteError(request);
    for (const [, chunk] of answer.output) this.output.write(Buffer.from(chunk));
    if (answer.ok) return decodeWith<T>(this, answer.value!);
    throw new RemoteError(answer.failure!);
  }

  /** Long-polls a batch's events until every call has ended, starting with `first` if given. */
  private async waitFor<T>(batch: Batch, collect: boolean, first?: ResultsPage, onEnd?: OnEnd<T>): Promise<(T | Outcome<T>)[]> {
    const total = batch.taskIds.length;
    const outcomes: (Outcome<T> | undefined)[] = new Array(total);
    const progress = new Progress(total);
    const interrupt = this.cancelOnCtrlC(batch.batchId);
    const deadlines = batch.slaMs?.map((ms) => (ms === undefined ? undefined : batch.sentAt! + ms));
    /** Calls that passed their SLA and run on: their ends go to the stragglers. */
    const late = new Set<number>();
    let ended = 0;
    let cursor = '0-0';
    let prefetched = first?.events ? first : undefined;
    try {
      while (ended < total) {
        const nextDeadline = deadlines?.reduce<number>((soonest, at, i) => (at !== undefined && !outcomes[i] && at < soonest ? at : soonest), Infinity) ?? Infinity;
        const page = prefetched ?? (await this.poll(batch.batchId, cursor, total - ended, Math.max(0, Math.min(longPollMs, nextDeadline - Date.now())), onEnd !== undefined));
        prefetched = undefined;
        cursor = page.cursor;
        for (const event of page.events) {
          if (event.t === 'stdout' || event.t === 'stderr') {
            if (event.d) this.output.write(Buffer.from(event.d));
            continue;
          }
          if (event.t === 'started' || (outcomes[event.i] && !late.has(event.i))) continue;
          if (late.has(event.i)) {
            this.deliverLate(batch.batchId, event, late);
            continue;
          }
          const taskId = taskIdOf(batch.batchId, event.i);
          const outcome = toOutcome<T>(this, event, taskId);
          outcomes[event.i] = outcome;
          ended += 1;
          progress.advance();
          onEnd?.(event.i, outcome, readProfile(taskId, event.h, event.p, Date.now() - batch.sentAt!));
          if (!outcome.ok && !collect) {
            await this.cancelBatch(batch.batchId).catch(() => 0);
            throw outcome.error;
          }
        }
        for (const [i, at] of (deadlines ?? []).entries()) {
          if (at === undefined || outcomes[i] || Date.now() < at) continue;
          const taskId = taskIdOf(batch.batchId, i);
          const error = new RemoteError({ kind: 'sla', message: `no outcome within its SLA of ${batch.slaMs![i]! / 1000} s; the call runs on, and its outcome will come out of stragglers() and result('${taskId}')` }, taskId);
          outcomes[i] = { ok: false, error };
          late.add(i);
          this.late.expect(taskId);
          ended += 1;
          progress.advance();
          onEnd?.(i, outcomes[i]!, readProfile(taskId, undefined, undefined, Date.now() - batch.sentAt!));
          if (!collect) {
            // The calls still running, but for those past their SLA, are cancelled, as a failure does.
            const others = batch.taskIds.filter((_, k) => !outcomes[k]);
            if (others.length) await this.http.request('POST', '/api/v1/cancel', { taskIds: others }).catch(() => 0);
            void this.followLate(batch.batchId, cursor, late);
            throw error;
          }
        }
      }
    } finally {
      progress.end();
      interrupt.dispose();
    }
    if (late.size) void this.followLate(batch.batchId, cursor, late);
    return collect ? (outcomes as Outcome<T>[]) : outcomes.map((o) => (o as { value: T }).value);
  }

  /** Goes on reading a batch for the calls that passed their SLA, printing their output; each end goes to the stragglers. */
  private async followLate(batchId: string, cursor: string, late: Set<number>): Promise<void> {
    try {
      while (late.size) {
        const page = await this.poll(batchId, cursor, late.size);
        cursor = page.cursor;
        for (const event of page.events) {
          if (!late.has(event.i)) continue;
          if (event.t === 'stdout' || event.t === 'stderr') {
            if (event.d) this.output.write(Buffer.from(event.d));
          } else if (event.t !== 'started') {
            this.deliverLate(batchId, event, late);
          }
        }
      }
    } catch (error) {
      // The batch cannot be read any more (expired, or the cluster is gone): say so for each.
      for (const i of late) {
        const taskId = taskIdOf(batchId, i);
        this.late.deliver({ taskId, index: i, outcome: { ok: false, error: new RemoteError({ kind: 'lost', message: `its outcome could not be read: ${(error as Error).message}` }, taskId) } });
      }
    }
  }

  /** A late call's end: it leaves `late` and goes to the stragglers. */
  private deliverLate(batchId: string, event: WireEvent, late: Set<number>): void {
    late.delete(event.i);
    const taskId = taskIdOf(batchId, event.i);
    this.late.deliver({ taskId, index: event.i, outcome: toOutcome(this, event, taskId) });
  }

  /**
   * The late outcomes of calls that passed their SLA (`opts.sla`), in the order they end; the
   * iterator waits for the next. Break out of the loop to stop reading.
   */
  stragglers<T = unknown>(): AsyncGenerator<Straggler<T>> {
    return this.late.iterate() as AsyncGenerator<Straggler<T>>;
  }

  /** The outcome of a call that passed its SLA, once it ends. */
  result<T = unknown>(taskId: string): Promise<Outcome<T>> {
    return this.late.result(taskId) as Promise<Outcome<T>>;
  }

  /**
   * One long-poll. A node or Redis that is restarting (a 5xx, a refused or dropped connection)
   * is waited out with backoff for up to `pollOutageMs`; events are never lost meanwhile, the
   * cursor resumes where it was.
   */
  /** `profile`: ends carry their profiles (`br({profile})`, `asCompleted()`). */
  private async poll(batchId: string, cursor: string, remaining: number, waitMs: number = longPollMs, profile = false): Promise<ResultsPage> {
    const giveUpAt = Date.now() + config.pollOutageMs;
    for (let delayMs = 100; ; delayMs = Math.min(delayMs * 2, 2_000)) {
      try {
        return await this.http.request<ResultsPage>('POST', '/api/v1/results', profile ? { batchId, cursor, waitMs, remaining, profile } : { batchId, cursor, waitMs, remaining });
      } catch (error) {
        const transient = !(error instanceof NodeRequestError) || error.status >= 500;
        if (!transient || Date.now() + delayMs > giveUpAt) throw error;
        await delay(delayMs);
      }
    }
  }

  /** While a batch is awaited, Ctrl-C cancels it before the process exits (kitchensink's behaviour). */
  private cancelOnCtrlC(batchId: string): { dispose(): void } {
    if (process.listenerCount('SIGINT') > 0) return { dispose: () => {} };
    const onSigint = () => {
      process.stderr.write('\nkitchensink: cancelling the batch\n');
      void this.cancelBatch(batchId)
        .catch(() => 0)
        .finally(() => {
          process.removeListener('SIGINT', onSigint);
          process.kill(process.pid, 'SIGINT');
        });
    };
    process.on('SIGINT', onSigint);
    return { dispose: () => process.removeListener('SIGINT', onSigint) };
  }
}

function toOutcome<T>(client: Client, event: WireEvent, taskId: string): Outcome<T> {
  if (event.t === 'result') return { ok: true, value: decodeWith<T>(client, event.d!) };
  const info = event.d ? decode<FailureInfo>(event.d) : { kind: event.t, message: `the call ended: ${event.t}` };
  return { ok: false, error: new RemoteError(info as FailureInfo, taskId, event.h) };
}

let defaultClient: Client | undefined;

/** Sets the default client (kitchensink's `setup_client`), used by `RemoteData` unless given one. */
export function setupClient(url: string, opts: ClientOptions = {}): Client {
  defaultClient?.close();
  defaultClient = new Client(url, opts);
  return defaultClient;
}

/** The client set by `setupClient`; throws when there is none. */
export function getDefaultClient(): Client {
  if (!defaultClient) throw new Error('no default client: call setupClient(url) first');
  return defaultClient;
}

setDefaultClientResolver(getDefaultClient);
