import type { FnSpec } from '../types.js';
import type { OutputStream, RunOutcome, StopSwitch } from './executor.js';
import type { ExecutorPool } from './pool.js';
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
export async function runDirectCall(
  pool: ExecutorPool,
  dataSource: DataSource,
  call: { fn: FnSpec; payload: Uint8Array; data?: string[]; timeoutS?: number; maxOutputBytes: number },
  stop: StopSwitch,
): Promise<DirectCallResult> {
  const output: [OutputStream, Buffer][] = [];
  const capped = new CappedOutput(call.maxOutputBytes, (stream, chunk) => void output.push([stream, Buffer.from(chunk)]));
  const lease = await pool.acquire(true);
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
