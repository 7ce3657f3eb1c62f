import { readFile } from 'node:fs/promises';
import { config } from '../config.js';
import type { JobDescription } from '../types.js';
import { PythonExecutor, type ExecutorOptions, type PythonInfo, type RunOutcome, type RunRequest } from './executor.js';

export interface PoolOptions extends Omit<ExecutorOptions, 'env'> {
  /** Interpreters at start. */
  size: number;
  /** Recycle an interpreter after this many calls (`--max-requests`); 0 never. */
  maxRequests: number;
  /** Recycle an interpreter whose resident memory passes this after a call (`--max-memory`). */
  maxMemoryMb?: number;
  /** Environment of every executor; `KS_WORKER_ID` is added per slot. */
  env: Record<string, string>;
  /** Told when an interpreter had to be replaced (crash, kill, recycle): why, in words and as a kind. */
  onReplace?: (slot: number, reason: string, kind: ReplacementKind) => void;
  /**
   * Runs on every fresh interpreter before it takes any call (the node replays the persisted
   * ALL calls there); rejects when that failed. The interpreter is then replaced and prepared
   * again later, and takes no call meanwhile.
   */
  prepare?: (run: (request: RunRequest) => Promise<RunOutcome>, jobs: Record<string, JobDescription>) => Promise<void>;
  /** Told of every call an interpreter starts and ends (the dashboard's task stream). */
  observer?: RunObserver;
}

/** Sees each call on each interpreter: when it starts and how it ends. */
export interface RunObserver {
  started(slot: number, request: RunRequest): void;
  ended(slot: number, request: RunRequest, outcome: RunOutcome): void;
}

/** Why an interpreter was replaced: killed for a timeout or a cancellation, died, or recycled. */
export type ReplacementKind = 'timeout' | 'cancelled' | 'crash' | 'max_requests' | 'memory' | 'replay_failed';

/** A reserved executor: run one call on it, then `release()` it. */
export interface Lease {
  readonly slot: number;
  run(request: RunRequest): Promise<RunOutcome>;
  release(): void;
}

interface Waiter {
  urgent: boolean;
  /** When it began to wait (ms since the epoch). */
  since: number;
  resolve(lease: Lease): void;
  reject(error: Error): void;
  /** Told once, when this waiter is the next to get an interpreter. */
  nextInLine?: () => void;
}

/**
 * N warm interpreters shared by the queue workers and direct calls. A call waits for a free
 * one; an interpreter that died, was killed or reached `maxRequests` is replaced on release.
 * Each has a slot number; `grow()` adds one in the lowest unused slot, `retire()` stops an
 * idle one (the `Autoscaler` decides when).
 */
export class ExecutorPool {
  /** By slot; a retired slot holds nothing. */
  private readonly executors: (PythonExecutor | undefined)[] = [];
  private readonly free: number[] = [];
  /** When each free slot became free (ms since the epoch). */
  private readonly freeSince = new Map<number, number>();
  private readonly waiters: Waiter[] = [];
  /** Waiters for one interpreter in particular, by slot. */
  private readonly slotWaiters: Waiter[][] = [];
  /** Slots whose interpreter failed to prepare, why, and how many times in a row. */
  private readonly failedPrepares = new Map<number, { reason: string; failures: number }>();
  private closed = false;

  constructor(private readonly opts: PoolOptions) {}

  /** Starts every interpreter; rejects with the interpreter's own words if one cannot start. */
  async start(): Promise<void> {
    for (let slot = 0; slot < this.opts.size; slot++) this.executors.push(this.spawn(slot));
    try {
      await Promise.all(this.executors.map((e) => e!.ready()));
    } catch (error) {
      await this.close();
      throw error;
    }
    const prepared = await Promise.all(this.executors.map((_, slot) => this.prepared(slot)));
    prepared.forEach((ok, slot) => ok && this.markFree(slot));
  }

  /** Interpreters that failed to prepare (replay) and wait to be tried again, with why. */
  get unhealthy(): { worker: number; reason: string }[] {
    return [...this.failedPrepares].map(([worker, { reason }]) => ({ worker, reason }));
  }

  /**
   * Prepares a fresh interpreter (`opts.prepare`); true when it may take calls. On failure it
   * says why, replaces the interpreter and tries again after a growing wait: an interpreter
   * never serves without what it had to replay.
   */
  private async prepared(slot: number): Promise<boolean> {
    if (!this.opts.prepare) return true;
    const executor = this.executors[slot]!;
    try {
      await this.opts.prepare((request) => executor.run(request), executor.jobs);
      // Replays are not the interpreter's calls: --max-requests counts from here.
      executor.calls = 0;
      this.failedPrepares.delete(slot);
      return true;
    } catch (error) {
      const failures = (this.failedPrepares.get(slot)?.failures ?? 0) + 1;
      const reason = (error as Error).message;
      this.failedPrepares.set(slot, { reason, failures });
      this.opts.onReplace?.(slot, `replaying persisted calls failed (${reason})`, 'replay_failed');
      void executor.close();
      const waitMs = Math.min(config.prepareRetryMaxMs, config.prepareRetryFirstMs * 2 ** (failures - 1));
      setTimeout(() => void this.replace(slot), waitMs).unref();
      return false;
    }
  }

  /**
   * Starts a fresh interpreter in `slot` (the last one died, was recycled or failed to
   * prepare, or the slot is new), and hands it out once prepared; false if it cannot start.
   */
  private async replace(slot: number): Promise<boolean> {
    if (this.closed) return false;
    const fresh = this.spawn(slot);
    this.executors[slot] = fresh;
    try {
      await fresh.ready();
    } catch (error) {
      // A fresh interpreter that cannot start leaves the slot out; say so rather than spin.
      this.opts.onReplace?.(slot, `cannot restart: ${(error as Error).message}`, 'crash');
      return false;
    }
    if (await this.prepared(slot)) this.handOut(slot);
    return true;
  }

  /**
   * Adds an interpreter in the lowest unused slot; it takes calls once started and prepared
   * (persisted ALL calls replayed). Resolves to its slot, or undefined if it could not start.
   */
  async grow(): Promise<number | undefined> {
    let slot = this.executors.findIndex((e) => !e);
    if (slot < 0) slot = this.executors.length;
    if (await this.replace(slot)) return slot;
    this.executors[slot] = undefined;
    return undefined;
  }

  /** Stops a free interpreter for good; false when it is not free (busy, or gone). */
  retire(slot: number): boolean {
    const at = this.free.indexOf(slot);
    if (at < 0 || this.closed) return false;
    this.free.splice(at, 1);
    this.freeSince.delete(slot);
    void this.executors[slot]!.close();
    this.executors[slot] = undefined;
    return true;
  }

  /** How many interpreters there are, starting ones included. */
  get size(): number {
    return this.slots().length;
  }

  /** The slots that hold an interpreter. */
  slots(): number[] {
    return this.executors.flatMap((e, slot) => (e ? [slot] : []));
  }

  /** How long the call that has waited longest for any interpreter has waited, in ms (0: none waits). */
  longestWaitMs(now = Date.now()): number {
    return this.waiters.length ? now - Math.min(...this.waiters.map((w) => w.since)) : 0;
  }

  /** The free slots with how long each has been free, in ms. */
  idleFor(now = Date.now()): [slot: number, ms: number][] {
    return this.free.map((slot) => [slot, now - (this.freeSince.get(slot) ?? now)]);
  }

  private get first(): PythonExecutor | undefined {
    return this.executors.find((e) => e);
  }

  /** The interpreters' environment, as the first describes it. */
  get python(): PythonInfo {
    return this.first?.python ?? { environment: '', prefix: '', executable: this.opts.python, version: '' };
  }

  /** Seconds each interpreter has been up, in slot order. */
  uptimesS(): number[] {
    return this.executors.flatMap((e) => (e ? [Math.round((Date.now() - e.startedAt) / 1000)] : []));
  }

  /** The jobs every interpreter loaded (`--entrypoint`), as the first describes them. */
  get jobs(): Record<string, JobDescription> {
    return this.first?.jobs ?? {};
  }

  get idle(): number {
    return this.free.length;
  }

  /**
   * Waits for a free interpreter. `urgent` (direct calls) goes ahead of queued work.
   * `nextInLine` is called once if the caller has to wait and becomes the next to be served:
   * it can prepare then (claim its call) while the interpreter it will get finishes its call.
   */
  acquire(urgent = false, nextInLine?: () => void): Promise<Lease> {
    if (this.closed) return Promise.reject(new Error('the executor pool is closed'));
    const slot = this.takeFree();
    if (slot !== undefined) return Promise.resolve(this.lease(slot));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { urgent, since: Date.now(), resolve, reject, nextInLine };
      // Urgent waiters go ahead of queued work but behind each other: first come, first served.
      // (Each at the very front made it last come, first served: under a burst of direct
      // calls or performs the first ones waited behind all later ones, for up to 0.7 s.)
      if (urgent) this.waiters.splice(this.urgentWaiting(), 0, waiter);
      else this.waiters.push(waiter);
      this.tellNextInLine();
    });
  }

  /** How many urgent waiters lead the line. */
  private urgentWaiting(): number {
    const k = this.waiters.findIndex((w) => !w.urgent);
    return k < 0 ? this.waiters.length : k;
  }

  private tellNextInLine(): void {
    const next = this.waiters[0];
    if (!next?.nextInLine) return;
    const told = next.nextInLine;
    next.nextInLine = undefined;
    told();
  }

  /**
   * Waits for interpreter `slot` itself (ahead of every other waiter once it is free): for a
   * call that must run on every interpreter (`on: 'all'`).
   */
  acquireSlot(slot: number): Promise<Lease> {
    if (this.closed) return Promise.reject(new Error('the executor pool is closed'));
    if (!this.executors[slot]) return Promise.reject(new Error(`no interpreter ${slot}`));
    const at = this.free.indexOf(slot);
    if (at >= 0) {
      this.free.splice(at, 1);
      this.freeSince.delete(slot);
      return Promise.resolve(this.lease(slot));
    }
    return new Promise((resolve, reject) => (this.slotWaiters[slot] ??= []).push({ urgent: true, since: Date.now(), resolve, reject }));
  }

  /** A free interpreter now, or none: never waits. */
  tryAcquire(): Lease | undefined {
    const slot = this.closed ? undefined : this.takeFree();
    return slot === undefined ? undefined : this.lease(slot);
  }

  /** The most recently freed interpreter (its memory is warmest), taken off the free list. */
  private takeFree(): number | undefined {
    const slot = this.free.pop();
    if (slot !== undefined) this.freeSince.delete(slot);
    return slot;
  }

  private markFree(slot: number): void {
    this.free.push(slot);
    this.freeSince.set(slot, Date.now());
  }

  /** Every interpreter's pid, in slot order, for `/info` and tests. */
  pids(): number[] {
    return this.executors.flatMap((e) => (e ? [e.pid] : []));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const waiter of [...this.waiters.splice(0), ...this.slotWaiters.flatMap((w) => w.splice(0))]) waiter.reject(new Error('the executor pool is closed'));
    await Promise.all(this.executors.map((e) => e?.close()));
  }

  private spawn(slot: number): PythonExecutor {
    return new PythonExecutor({ ...this.opts, env: { ...this.opts.env, KS_WORKER_ID: String(slot) } });
  }

  /** Why an interpreter must not take another call, if it must not. */
  private async replacementReason(executor: PythonExecutor): Promise<{ text: string; kind: ReplacementKind } | undefined> {
    if (!executor.alive) return { text: 'the interpreter exited', kind: executor.killedFor ?? 'crash' };
    if (this.opts.maxRequests > 0 && executor.calls >= this.opts.maxRequests) return { text: `--max-requests ${this.opts.maxRequests} reached`, kind: 'max_requests' };
    if (this.opts.maxMemoryMb) {
      const rssMb = await residentMb(executor.pid);
      if (rssMb > this.opts.maxMemoryMb) return { text: `its memory (${rssMb.toFixed(0)} MB) passed --max-memory ${this.opts.maxMemoryMb} MB`, kind: 'memory' };
    }
    return undefined;
  }

  private lease(slot: number): Lease {
    let released = false;
    return {
      slot,
      run: (request) => {
        const observer = this.opts.observer;
        if (!observer) return this.executors[slot]!.run(request);
        observer.started(slot, request);
        return this.executors[slot]!.run(request).then((outcome) => {
          observer.ended(slot, request, outcome);
          return outcome;
        });
      },
      release: () => {
        if (released) return;
        released = true;
        void this.recycle(slot);
      },
    };
  }

  private async recycle(slot: number): Promise<void> {
    const executor = this.executors[slot]!;
    const reason = await this.replacementReason(executor);
    if (reason && !this.closed) {
      this.opts.onReplace?.(slot, reason.text, reason.kind);
      void executor.close();
      await this.replace(slot);
      return;
    }
    this.handOut(slot);
  }

  /** Gives a free interpreter to whoever waits for it, first for it in particular, or marks it free. */
  private handOut(slot: number): void {
    if (this.closed) return;
    const waiter = this.slotWaiters[slot]?.shift() ?? this.waiters.shift();
    if (waiter) {
      waiter.resolve(this.lease(slot));
      this.tellNextInLine();
    } else this.markFree(slot);
  }
}

/** Resident memory of a process in MB (0 when it is gone). */
async function residentMb(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}
