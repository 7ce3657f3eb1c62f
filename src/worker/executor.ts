import { setTimeout as delay } from 'node:timers/promises';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { config } from '../config.js';
import { decode, encode, joined, Spliced } from '../codec.js';
import { FrameReader, resultPieces } from './frames.js';
import { isJobSpec, isPatternSpec, type FailureInfo, type FnSpec, type JobDescription } from '../types.js';

/** Must match `SENTINEL` in python/kitchensink/executor.py. */
export const sentinel = Buffer.from('\x00\x1eKS-END\x1e\x00', 'latin1');

export type OutputStream = 'stdout' | 'stderr';

/** For each data url of a call: the local file and its format, as Python's RemoteData reads them. */
export type CallData = Record<string, [path: string, fmt: string, checksum: string]>;

/**
 * Tells a run, or a long-poll, to stop: what an AbortController does, for a fraction of its
 * cost (making an AbortSignal took ~5 µs per call here, on every call, for a stop that almost
 * never comes).
 */
export class StopSwitch {
  stopped = false;
  private listener?: () => void;

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.listener?.();
  }

  /** `listener` runs on stop, at once if stopped already; one at a time, `undefined` none. */
  listen(listener?: () => void): void {
    this.listener = listener;
    if (listener && this.stopped) listener();
  }
}

export interface RunRequest {
  fn: FnSpec;
  /** msgpack of `[args, kwargs]`; a big one may be the pieces it arrived in. */
  payload: Uint8Array | Spliced;
  data?: CallData;
  /** Kill the interpreter when the call runs longer than this. */
  timeoutMs?: number;
  /** Kill the interpreter when this is stopped; the call ends `cancelled`. */
  stop?: StopSwitch;
  /** Receives the call's output; returning a promise pauses the interpreter's pipes until it settles. */
  onOutput(stream: OutputStream, chunk: Buffer): void | Promise<void>;
  /** The queued call's task id, for the dashboard; none for direct calls and replays. */
  taskId?: string;
}

/** A call's outcome; a big value may come as the pieces it arrived in (`joined()` makes one buffer). */
export type RunOutcome = { ok: true; value: Buffer | Spliced } | { ok: false; failure: FailureInfo };

export interface ExecutorOptions {
  python: string;
  /** Prepended to PYTHONPATH: kitchensink's own python/ folder comes first. */
  pythonPath: string[];
  env: Record<string, string>;
  modules: string[];
  /** Jobs to load before the interpreter takes calls: name → `file.py[:Attr]` or `pkg.module:Attr`. */
  entrypoints?: Record<string, string>;
  killGraceMs?: number;
}

/** What an interpreter says of itself when it is ready (StandPy's `/info` shows it). */
export interface PythonInfo {
  /** The conda or virtual environment's name, or `system`. */
  environment: string;
  /** `sys.prefix` */
  prefix: string;
  executable: string;
  version: string;
}

/** A call's reply; `marked`: a sentinel follows the call's output on both pipes. */
type CallReply = ['result', number, Buffer | Spliced, boolean] | ['error', number, FailureInfo, boolean];
type Reply = CallReply | ['ready', number, Record<string, JobDescription>, PythonInfo] | ['fatal', string];

interface InFlight {
  seq: number;
  request: RunRequest;
  reply?: RunOutcome;
  /** The reply said a sentinel follows the call's output on both pipes. */
  marked?: boolean;
  resolve(outcome: RunOutcome): void;
  timer?: NodeJS.Timeout;
}

/**
 * A value's bytes, copied out when they are a small part of a larger buffer (a pipe chunk the
 * value would otherwise keep alive); a big value keeps the frame it fills.
 */
function ownBytes(value: Buffer): Buffer {
  return value.byteLength * 2 < value.buffer.byteLength ? Buffer.from(value) : value;
}

/** Splits a pipe's bytes at sentinels; keeps a possible partial sentinel for the next chunk. */
export class SentinelSplitter {
  private pending: Buffer = Buffer.alloc(0);
  seen = 0;

  constructor(private readonly emit: (chunk: Buffer) => void) {}

  push(chunk: Buffer): void {
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    for (let at = buf.indexOf(sentinel); at !== -1; at = buf.indexOf(sentinel)) {
      if (at > 0) this.emit(buf.subarray(0, at));
      this.seen += 1;
      buf = buf.subarray(at + sentinel.length);
    }
    const keep = partialSentinelLength(buf);
    if (buf.length > keep) this.emit(buf.subarray(0, buf.length - keep));
    this.pending = keep ? Buffer.from(buf.subarray(buf.length - keep)) : Buffer.alloc(0);
  }

  /** Emits the bytes held back as a possible start of a sentinel: none is coming. */
  flush(): void {
    if (!this.pending.length) return;
    const held = this.pending;
    this.pending = Buffer.alloc(0);
    this.emit(held);
  }
}

function partialSentinelLength(buf: Buffer): number {
  for (let k = Math.min(sentinel.length - 1, buf.length); k > 0; k--) {
    if (buf.subarray(buf.length - k).equals(sentinel.subarray(0, k))) return k;
  }
  return 0;
}

/**
 * One warm Python interpreter running one call at a time. Its stdout and stderr are pipes
 * read here and attributed to the running call; frames go over fds 3 and 4.
 */
export class PythonExecutor {
  private readonly child: ChildProcess;
  private readonly toPython: Writable;
  private readonly frames = new FrameReader();
  private readonly stdout: SentinelSplitter;
  private readonly stderr: SentinelSplitter;
  private stderrTail = '';
  private outputWaits = 0;
  private seq = 0;
  /** Sentinels announced by replies so far: both pipes must have passed this many. */
  private marks = 0;
  private current?: InFlight;
  private killReason?: 'timeout' | 'cancelled';
  private exitInfo?: { code: number | null; signal: NodeJS.Signals | null };
  private readonly readyPromise: Promise<void>;
  private readonly exitPromise: Promise<void>;
  /** Calls run so far, for `--max-requests`. */
  calls = 0;
  /** The jobs this interpreter loaded, as it describes them (known once ready). */
  jobs: Record<string, JobDescription> = {};
  /** The interpreter's environment (known once ready). */
  python?: PythonInfo;
  readonly startedAt = Date.now();
  readonly pid: number;

  constructor(private readonly opts: ExecutorOptions) {
    const env = {
      ...process.env,
      ...opts.env,
      PYTHONPATH: [...opts.pythonPath, process.env.PYTHONPATH].filter(Boolean).join(':'),
      KS_MODULES: opts.modules.join(','),
      KS_ENTRYPOINTS: JSON.stringify(opts.entrypoints ?? {}),
      PYTHONUNBUFFERED: '',
      GLIBC_TUNABLES: withHugePages(process.env.GLIBC_TUNABLES),
    };
    this.child = spawn(opts.python, ['-m', 'kitchensink.executor'], {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
      detached: true,
      env,
    });
    this.pid = this.child.pid ?? -1;
    this.toPython = this.child.stdio[3] as Writable;
    this.toPython.on('error', () => {});
    this.stdout = new SentinelSplitter((chunk) => this.deliver('stdout', chunk));
    this.stderr = new SentinelSplitter((chunk) => {
      this.rememberStderr(chunk);
      this.deliver('stderr', chunk);
    });
    this.child.stdout!.on('data', (chunk: Buffer) => {
      this.stdout.push(chunk);
      this.maybeFinish();
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr.push(chunk);
      this.maybeFinish();
    });
    let onReady!: () => void;
    let onFatal!: (error: Error) => void;
    this.readyPromise = new Promise((resolve, reject) => {
      onReady = resolve;
      onFatal = reject;
    });
    const fromPython = this.child.stdio[4] as Readable;
    fromPython.on('data', (chunk: Buffer) => this.readFrames(chunk, onReady, onFatal));
    this.exitPromise = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        onFatal(new Error(`the Python executor exited before it was ready (${describeExit(code, signal)}): ${this.lastStderrLines()}`));
        // Let stderr drain so a crash report carries the interpreter's last words.
        const drained = new Promise((r) => this.child.stderr!.once('end', r));
        void Promise.race([drained, delay(100)]).then(() => {
          this.failCurrent();
          resolve();
        });
      });
      this.child.on('error', (error) => {
        onFatal(new Error(`cannot start the Python executor '${opts.python}': ${error.message}`));
        resolve();
      });
    });
  }

  /** Resolves once the interpreter has imported kitchensink and the `--module`s. */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  /** Why this interpreter was killed, when it was: a call's timeout or its cancellation. */
  get killedFor(): 'timeout' | 'cancelled' | undefined {
    return this.killReason;
  }

  get alive(): boolean {
    return this.exitInfo === undefined;
  }

  get busy(): boolean {
    return this.current !== undefined;
  }

  /** Runs one call; never rejects: failures come back as `{ok: false}`. */
  run(request: RunRequest): Promise<RunOutcome> {
    if (this.current) throw new Error('executor is busy');
    if (!this.alive) return Promise.resolve(this.crashOutcome());
    const seq = ++this.seq;
    this.calls += 1;
    this.stderrTail = '';
    return new Promise<RunOutcome>((resolve) => {
      const inFlight: InFlight = { seq, request, resolve };
      this.current = inFlight;
      if (request.timeoutMs !== undefined) {
        inFlight.timer = setTimeout(() => this.kill('timeout'), request.timeoutMs);
      }
      request.stop?.listen(() => this.kill('cancelled'));
      const fn = request.fn;
      const fnWire = typeof fn === 'string' || isPatternSpec(fn) ? fn : isJobSpec(fn) ? { job: fn.job, endpoint: fn.endpoint ?? '/perform' } : [fn.src, fn.name ?? ''];
      // The payload follows as a frame of its own, raw: Python reads it into one buffer and
      // decodes the arguments from there (inside the msgpack frame it was copied twice more).
      this.writeFrames([encode(['call', seq, fnWire, request.data ?? {}]), request.payload]);
    });
  }

  /** Stops the running call's process group: interrupt, then kill. */
  kill(reason: 'timeout' | 'cancelled'): void {
    if (!this.alive) return;
    this.killReason ??= reason;
    this.signalGroup('SIGINT');
    setTimeout(() => this.signalGroup('SIGKILL'), this.opts.killGraceMs ?? config.killGraceMs).unref();
  }

  /** Asks the interpreter to exit, and kills it if it does not within the grace time. */
  async close(): Promise<void> {
    if (this.alive) {
      this.writeFrames([encode(['exit'])]);
      const timer = setTimeout(() => this.signalGroup('SIGKILL'), this.opts.killGraceMs ?? config.killGraceMs);
      await this.exitPromise;
      clearTimeout(timer);
    }
    // Whatever the user's code left running in the group goes too.
    this.signalGroup('SIGKILL');
  }

  /** Hands output to the running call; pauses both pipes while it asks to wait (backpressure). */
  private deliver(stream: OutputStream, chunk: Buffer): void {
    const wait = this.current?.request.onOutput(stream, chunk);
    if (!wait) return;
    if (this.outputWaits++ === 0) {
      this.child.stdout!.pause();
      this.child.stderr!.pause();
    }
    void wait.finally(() => {
      if (--this.outputWaits === 0) {
        this.child.stdout!.resume();
        this.child.stderr!.resume();
        // A reply may wait for what was held back: look again once that has flowed.
        process.nextTick(() => this.maybeFinish());
      }
    });
  }

  private signalGroup(signal: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, signal);
    } catch {
      // already gone
    }
  }

  /** Writes each body as a frame (4-byte big-endian length, then the body), in one go. */
  private writeFrames(bodies: (Uint8Array | Spliced)[]): void {
    this.toPython.cork();
    for (const body of bodies) {
      const header = Buffer.allocUnsafe(4);
      header.writeUInt32BE(body.byteLength, 0);
      this.toPython.write(header);
      for (const piece of body instanceof Spliced ? body.pieces : [body]) this.toPython.write(piece);
    }
    this.toPython.uncork();
  }

  private readFrames(chunk: Buffer, onReady: () => void, onFatal: (error: Error) => void): void {
    for (const frame of this.frames.push(chunk)) {
      const pieces = frame instanceof Spliced ? resultPieces(frame) : undefined;
      const reply: Reply = pieces ? ['result', ...pieces] : decode<Reply>(joined(frame));
      if (reply[0] === 'ready') {
        this.jobs = reply[2];
        this.python = reply[3];
        onReady();
      }
      else if (reply[0] === 'fatal') onFatal(new Error(reply[1]));
      else this.onReply(reply);
    }
  }

  private onReply(reply: CallReply): void {
    const marked = reply[3] !== false;
    if (marked) this.marks += 1;
    const current = this.current;
    if (!current || current.seq !== reply[1]) return;
    current.marked = marked;
    current.reply =
      reply[0] === 'result' ? { ok: true, value: reply[2] instanceof Spliced ? reply[2] : ownBytes(reply[2]) } : { ok: false, failure: reply[2] };
    this.maybeFinish();
  }

  /**
   * A reply completes its call once both pipes have passed the call's sentinel, if it sent
   * one, and once the output read but held back while the call's sink asked to wait has
   * gone to it. Without a sentinel, bytes kept as a possible start of one are the call's.
   */
  private maybeFinish(): void {
    const current = this.current;
    if (!current?.reply) return;
    if (this.stdout.seen < this.marks || this.stderr.seen < this.marks) return;
    if (this.outputWaits > 0 || this.child.stdout!.readableLength > 0 || this.child.stderr!.readableLength > 0) return;
    if (!current.marked) {
      this.stdout.flush();
      this.stderr.flush();
    }
    this.finish(current.reply);
  }

  private finish(outcome: RunOutcome): void {
    const current = this.current;
    if (!current) return;
    this.current = undefined;
    clearTimeout(current.timer);
    current.request.stop?.listen(undefined);
    current.resolve(outcome);
  }

  private failCurrent(): void {
    if (this.current) this.finish(this.crashOutcome());
  }

  private crashOutcome(): RunOutcome {
    const { code, signal } = this.exitInfo ?? { code: null, signal: null };
    if (this.killReason === 'timeout') {
      const seconds = (this.current?.request.timeoutMs ?? 0) / 1000;
      return { ok: false, failure: { kind: 'timeout', message: `the call ran past its timeout of ${seconds} s and was killed` } };
    }
    if (this.killReason === 'cancelled') {
      return { ok: false, failure: { kind: 'cancelled', message: 'the call was cancelled while running' } };
    }
    return {
      ok: false,
      failure: {
        kind: 'crashed',
        message: `the Python interpreter died while running the call (${describeExit(code, signal)})`,
        traceback: this.lastStderrLines(),
        exitCode: code,
        signal,
      },
    };
  }

  private rememberStderr(chunk: Buffer): void {
    this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-8192);
  }

  private lastStderrLines(): string {
    return this.stderrTail.split('\n').slice(-config.crashTailLines).join('\n');
  }
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `signal ${signal}` : `exit code ${code}`;
}

/**
 * The interpreters' glibc tunables: the user's, plus huge pages for large allocations unless
 * they said otherwise. A 256 MB `bytes` then faults in 128 pages, not 65,536: reading a file
 * of that size into memory took 220–260 ms with 4 kB pages and 80–90 ms with these.
 */
export function withHugePages(tunables: string | undefined): string {
  if (tunables && /(^|:)glibc\.malloc\.hugetlb=/.test(tunables)) return tunables;
  return [tunables, 'glibc.malloc.hugetlb=1'].filter(Boolean).join(':');
}
