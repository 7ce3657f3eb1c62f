import type { Spliced } from '../codec.js';
import type { FnSpec } from '../types.js';
import { StopSwitch, type OutputStream, type RunOutcome } from './executor.js';
import type { ExecutorPool, Lease } from './pool.js';
import { withLocalData, type DataSource } from './local-data.js';
import { CappedOutput } from './output.js';

export interface DirectCallResult {
  outcome: RunOutcome;
  /** Everything the call printed, in order. */
  output: [OutputStream, Buffer][];
}

/**
 * Runs a call at once on one of this node's interpreters, ahead of queued work and without
 * Redis (`async: false`). Stopping `stop` (the client went away) kills it.
 */
export function runDirectCall(pool: ExecutorPool, dataSource: DataSource, call: DirectCall, stop: StopSwitch): Promise<DirectCallResult> {
  return runOn(pool.acquire(true), dataSource, call, stop);
}

/** A call `runDirectCall` and `runOnEveryInterpreter` run. */
export interface DirectCall {
  fn: FnSpec;
  payload: Uint8Array | Spliced;
  data?: string[];
  timeoutS?: number;
  maxOutputBytes: number;
}

/**
 * Runs a call once on each of this node's interpreters (`on: 'all'`), each as soon as it is
 * free, ahead of other waiting work; resolves to the outcomes by interpreter.
 */
export function runOnEveryInterpreter(pool: ExecutorPool, dataSource: DataSource, call: DirectCall, stop: StopSwitch): Promise<(DirectCallResult & { worker: number })[]> {
  // A stop switch has one listener: each interpreter's run gets its own, all stopped together.
  const slots = pool.slots();
  const stops = slots.map(() => new StopSwitch());
  stop.listen(() => stops.forEach((s) => s.stop()));
  return Promise.all(slots.map(async (worker, k) => ({ worker, ...(await runOn(pool.acquireSlot(worker), dataSource, call, stops[k])) })));
}

async function runOn(leased: Promise<Lease>, dataSource: DataSource, call: DirectCall, stop: StopSwitch): Promise<DirectCallResult> {
  const output: [OutputStream, Buffer][] = [];
  const capped = new CappedOutput(call.maxOutputBytes, (stream, chunk) => void output.push([stream, Buffer.from(chunk)]));
  const lease = await leased;
  try {
    const outcome = await withLocalData(dataSource, call.data ?? [], (data) =>
      lease.run({
        fn: call.fn,
        payload: call.payload,
        data,
        timeoutMs: call.timeoutS ? call.timeoutS * 1000 : undefined,
        stop,
        onOutput: (stream, chunk) => capped.write(stream, chunk),
      }),
    );
    return { outcome, output };
  } finally {
    lease.release();
  }
}
