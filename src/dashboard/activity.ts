import { functionLabel } from '../types.js';
import { batchIdLength } from '../keys.js';
import type { RunObserver } from '../worker/pool.js';
import type { RunOutcome, RunRequest } from '../worker/executor.js';

/** A call on one interpreter, as the task stream draws it: `[lane, function, task id, start ms, end ms, outcome]`. */
export type Bar = [string, string, string, number, number, string];

/** A failed call, with its Python traceback. */
export interface FailureShown {
  at: number;
  lane: string;
  fn: string;
  taskId: string;
  kind: string;
  pythonType?: string;
  message: string;
  traceback?: string;
}

/** What one interpreter does now. */
export interface LaneState {
  lane: string;
  busy: boolean;
  fn?: string;
  taskId?: string;
  since?: number;
}

/** What the node's interpreters did since the last `take()`. */
export interface ActivitySince {
  bars: Bar[];
  /** Bars left out past the cap. */
  dropped: number;
  failures: FailureShown[];
  /** The batches whose calls ended here (the hub reads their progress from Redis). */
  batches: string[];
}

/** An interpreter's lane: its slot, after `<env>/` for an `--env` one. */
export function laneId(env: string | undefined, slot: number): string {
  return env ? `${env}/${slot}` : String(slot);
}

/** Bars a node sends a second at most (about 20 kB of JSON): enough to draw, bounded under any load. */
const maxBars = 300;
const maxFailures = 20;
const maxTracebackChars = 8_000;

/**
 * What a node's interpreters run, for the dashboard: what each runs now, and (only while
 * somebody watches) each call that ended since the feed last took them. Bounded: past
 * `maxBars` calls between two takes, the rest are counted, not kept.
 */
export class ActivityLog {
  /** Set while some viewer watches the cluster; off, only the lanes' state is kept. */
  watching = false;
  /** What each busy interpreter runs, since when (labelled only when a tick asks). */
  private readonly lanes = new Map<string, { request: RunRequest; since: number }>();
  private bars: Bar[] = [];
  private dropped = 0;
  private failures: FailureShown[] = [];
  private batches = new Set<string>();

  /** The observer of one Python's pool (`laneId`). */
  observer(env?: string): RunObserver {
    return {
      started: (slot, request) => this.started(laneId(env, slot), request),
      ended: (slot, request, outcome) => this.ended(laneId(env, slot), request, outcome),
    };
  }

  /** What each of these interpreters runs now. */
  laneStates(lanes: string[]): LaneState[] {
    return lanes.map((lane) => {
      const running = this.lanes.get(lane);
      return running ? { lane, busy: true, fn: functionLabel(running.request.fn), taskId: running.request.taskId, since: running.since } : { lane, busy: false };
    });
  }

  /** What ended since the last take; starts afresh. */
  take(): ActivitySince {
    const since: ActivitySince = { bars: this.bars, dropped: this.dropped, failures: this.failures, batches: [...this.batches] };
    this.bars = [];
    this.dropped = 0;
    this.failures = [];
    this.batches = new Set();
    return since;
  }

  private started(lane: string, request: RunRequest): void {
    this.lanes.set(lane, { request, since: Date.now() });
  }

  private ended(lane: string, request: RunRequest, outcome: RunOutcome): void {
    const since = this.lanes.get(lane)?.since ?? Date.now();
    this.lanes.delete(lane);
    if (!this.watching) return;
    const taskId = request.taskId ?? '';
    const fn = functionLabel(request.fn);
    if (this.bars.length < maxBars) this.bars.push([lane, fn, taskId, since, Date.now(), outcome.ok ? 'ok' : outcome.failure.kind]);
    else this.dropped += 1;
    if (!outcome.ok) {
      const { kind, pythonType, message, traceback } = outcome.failure;
      this.failures.push({ at: Date.now(), lane, fn, taskId, kind, pythonType, message: message.slice(0, 2_000), traceback: traceback?.slice(-maxTracebackChars) });
      if (this.failures.length > maxFailures) this.failures.shift();
    }
    // A task id is `<batch id>-<index>`, the batch id of fixed length.
    if (taskId.length > batchIdLength) this.batches.add(taskId.slice(0, batchIdLength));
  }
}
