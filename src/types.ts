import type { Spliced } from './codec.js';
/**
 * A Python function: `'pkg.module:func'`, source text and the name of the function in it, or
 * a job's endpoint (`/perform` unless `endpoint` names an auxiliary one).
 */
export type FnSpec = string | { src: string; name?: string } | JobSpec | PatternSpec;

/**
 * Code that runs in the interpreter's persistent namespace (Apex's JEP patterns): an
 * expression's value, statements and the variables named in `returns`, or a script (a file
 * under the node's `--script-dir`, or source). The call's keyword arguments are its vars,
 * taken away after it unless `keep`.
 */
export type PatternSpec =
  | { eval: string; keep?: boolean }
  | { exec: string; returns?: string[]; keep?: boolean }
  | { script: { path: string } | { src: string }; returns?: string[]; keep?: boolean };

/** True when `fn` runs in the interpreter's persistent namespace (eval, exec, script). */
export function isPatternSpec(fn: FnSpec): fn is PatternSpec {
  return typeof fn === 'object' && fn !== null && ('eval' in fn || 'exec' in fn || 'script' in fn);
}

/** True when `fn` carries source text (refused on `--no-code` nodes); a script by path does not. */
export function carriesSource(fn: FnSpec): boolean {
  if (typeof fn === 'string' || isJobSpec(fn)) return false;
  if (isPatternSpec(fn) && 'script' in fn) return 'src' in fn.script;
  return true;
}

/** A job (`ks start --entrypoint NAME=TARGET`) as a function: its `/perform`, or `endpoint`. */
export interface JobSpec {
  job: string;
  endpoint?: string;
}

/** True when `fn` names a job's endpoint. */
export function isJobSpec(fn: FnSpec): fn is JobSpec {
  return typeof fn === 'object' && fn !== null && typeof (fn as JobSpec).job === 'string';
}

/** Per-call options (DESIGN "Call options"). */
export interface CallOptions {
  /** `false` runs the call at once on the contacted node's executors, skipping the queue. Default true. */
  async?: boolean;
  /** Seconds before the interpreter running the call is killed and the call fails with `timeout`. */
  timeout?: number;
  /** Pin the call to this host. */
  host?: string;
  /** A custom queue (e.g. `gpu`) served by nodes started with `--queue`. */
  queue?: string;
  /** Run on the interpreters of this Python environment (`ks start --env NAME=PYTHON`), queue `env.NAME`. */
  env?: string;
  /** Stream the call's output while it runs (default true); `false` sends it with the result. */
  intermediateResults?: boolean;
  /** Re-runs after the interpreter crashed or the node running it was lost. Default 0 for crashes. */
  retries?: number;
  /** Ignore `RemoteData` arguments when routing. */
  noRouteData?: boolean;
  /**
   * `'any'` (default): one interpreter runs the call. `'all'`: every interpreter of every live
   * node serving its queue runs it once, and `call()` answers one outcome per interpreter.
   */
  on?: 'any' | 'all';
  /**
   * With `on: 'all'`: record the call and run it again, in order, on every interpreter that
   * starts later (respawned, recycled, or on a node that joins) before it takes other calls.
   */
  persist?: boolean;
  /**
   * Seconds (soft): the caller's promise settles then with a `RemoteError` of kind `sla`, while
   * the call runs on; its late outcome comes out of `c.stragglers()` and `c.result(taskId)`.
   * `timeout` stays the limit that kills.
   */
  sla?: number;
}

/** One interpreter's answer to an `on: 'all'` call, as it crosses: the value still msgpack. */
export interface WireAllOutcome {
  host: string;
  worker: number;
  ok: boolean;
  value?: Uint8Array;
  failure?: FailureInfo;
  output: [string, Uint8Array][];
}

/** One call as it crosses from client to node. */
/** One call of a batch, as nodes receive it; a client sends a big payload as `Spliced` pieces. */
export interface WireCall<Payload extends Uint8Array | Spliced = Uint8Array> {
  fn: FnSpec;
  /** msgpack of `[args, kwargs]`: the node passes it to Python without decoding it. */
  payload: Payload;
  opts?: CallOptions;
  /** Hosts ranked by the client's routing; absent means the call's queue on any host. */
  route?: string[];
  /**
   * The bytes each host of `route` would copy to run the call: a host that would copy more
   * than the first takes its copy of the call later (`copyTiming`). Absent: by rank only.
   */
  routeBytes?: number[];
  /** Data urls among the arguments (`RemoteData`), made local before the call runs. */
  data?: string[];
}

/** Events of a batch stream. Every call ends with exactly one terminal event. */
export type EventType = 'started' | 'stdout' | 'stderr' | TerminalEventType;
export type TerminalEventType = 'result' | 'error' | 'cancelled' | 'timeout' | 'lost';
export const terminalEventTypes: ReadonlySet<string> = new Set<TerminalEventType>([
  'result',
  'error',
  'cancelled',
  'timeout',
  'lost',
]);

/** An event as `POST /results` returns it. `d` is msgpack: the value, the output bytes or an error. */
export interface WireEvent {
  t: EventType;
  i: number;
  h?: string;
  d?: Uint8Array;
  /** On a call's end: its profile field (`profileField()`). */
  p?: string;
  /** When Redis recorded a start or an end, ms since the epoch. */
  at?: number;
}

/** Why a call failed; the payload of `error`, `timeout`, `cancelled` and `lost` events. */
export interface FailureInfo {
  kind: FailureKind;
  pythonType?: string;
  message: string;
  traceback?: string;
  exitCode?: number | null;
  signal?: string | null;
}

export type FailureKind = 'exception' | 'timeout' | 'cancelled' | 'crashed' | 'lost' | 'rejected' | 'sla';

/** One call inside a queued job (BullMQ stores job data as JSON, so the payload is base64). */
export interface JobCall {
  /** index in the batch */
  i: number;
  f: FnSpec;
  /** base64 of msgpack `[args, kwargs]` */
  p: string;
  /** Options; `c` is the caller's name (its token's), for the metrics of the node that runs it. */
  o: { timeout?: number; retries?: number; intermediateResults?: boolean; c?: string };
  /** Data urls among the arguments: made local before the call runs. */
  d?: string[];
}

/**
 * A queued job: one call, or a chunk of consecutive calls of a large batch that share their
 * queues. Chunks spare BullMQ's per-job work; each call is still claimed on its own.
 */
export interface CallJobData {
  /** batch id */
  b: string;
  c: JobCall[];
  /** Every queue holding a copy of this job: a dead host's copy matters only if it was the last. */
  q?: string[];
  /**
   * Routed calls only (not pinned with `host`): the shared queue they go to when every host of
   * their route has died, where any live host takes them and copies their data from a holder.
   */
  r?: string;
}

/** How stored data is read back as an object: `RemoteData`'s `fmt`. */
export const dataFormats = ['msgpack', 'json', 'pickle', 'raw', 'ndarray'] as const;
export type DataFormat = (typeof dataFormats)[number];

/** What `ks:hosts` holds for each host. */
export interface HostInfo {
  name: string;
  url: string;
  workers: number;
  queues: string[];
  readOnly: boolean;
  version: string;
  startedAt: number;
  /** Names of the jobs it loaded (their descriptions are in `ks:jobs`). */
  jobs?: string[];
  /** When its heartbeat last wrote this entry. */
  beatAt?: number;
  alive?: boolean;
}

/** One parameter of a job's endpoint, as the interpreter reads it from the signature. */
export interface JobParameter {
  name: string;
  /** The Python annotation as written (`int`, `List[float]`), '' without one. */
  type: string;
  /** The annotation as JSON Schema; `{}` accepts anything. */
  schema: Record<string, unknown>;
  required: boolean;
  default?: unknown;
  /** A default JSON cannot carry, as Python's repr. */
  defaultRepr?: string;
  /** Its `:param name:` text in the docstring. */
  doc?: string;
}

/** `/perform` or an auxiliary endpoint of a job. */
export interface JobEndpoint {
  path: string;
  summary: string;
  description: string;
  parameters: JobParameter[];
  /** The function takes `**kwargs`: names beyond `parameters` are passed on. */
  extraParameters: boolean;
  returns: { type: string; schema: Record<string, unknown>; doc: string };
  example?: unknown;
}

/** A job as its interpreter describes it when it has loaded it (the catalogue's entry). */
export interface JobDescription {
  name: string;
  target: string;
  /** Its working directory: the entrypoint file's folder. */
  folder: string;
  summary: string;
  description: string;
  endpoints: JobEndpoint[];
  /** Files it serves: the path under the job, the absolute file or folder, its mimetype. */
  statics: { path: string; file: string; mimetype: string }[];
  /** It has a `metrics()` method. */
  metrics: boolean;
}

/** How metrics and the dashboard name a call's function: `module:function`, `job:<name><endpoint>`, `eval`, `exec`, `script[:<path>]`, or `py:<name>` for source. */
export function functionLabel(fn: FnSpec): string {
  if (typeof fn === 'string') return fn;
  if (isJobSpec(fn)) return `job:${fn.job}${fn.endpoint ?? '/perform'}`;
  if ('eval' in fn) return 'eval';
  if ('exec' in fn) return 'exec';
  if ('script' in fn) return 'path' in fn.script ? `script:${fn.script.path}` : 'script';
  if (fn.name) return `py:${fn.name}`;
  let label = sourceLabels.get(fn.src);
  if (label === undefined) {
    if (sourceLabels.size >= 1_000) sourceLabels.clear();
    sourceLabels.set(fn.src, (label = `py:${lastDef(fn.src) ?? 'source'}`));
  }
  return label;
}

/** Labels of the sources seen lately: each call of one would otherwise scan its text again. */
const sourceLabels = new Map<string, string>();

/** The function a source's call runs without a name: its last top-level `def` (the executor's rule). */
function lastDef(src: string): string | undefined {
  let name: string | undefined;
  for (const match of src.matchAll(/^(?:async\s+)?def\s+([A-Za-z_]\w*)/gm)) name = match[1];
  return name;
}
