import { setTimeout as delay } from 'node:timers/promises';
import { decode, encode, joined } from '../codec.js';
import type { JobSpec } from '../types.js';
import type { ExecutorPool } from '../worker/pool.js';
import type { RunOutcome } from '../worker/executor.js';
import { checkJobMetrics, type JobMetric } from '../node/metrics.js';

/** The endpoint the interpreter answers with a job's `metrics()`; no HTTP route can name it. */
const metricsEndpoint = '#metrics';

/**
 * Every local job's own `metrics()`, asked of an interpreter at scrape time. A job whose
 * `metrics()` raises, returns garbage or does not answer within `waitMs` is left out of
 * this scrape and logged; a scrape never fails because of it.
 */
export async function collectJobMetrics(pool: Pick<ExecutorPool, 'jobs' | 'acquire'>, log: (message: string) => void, waitMs: number): Promise<{ job: string; metrics: JobMetric[] }[]> {
  const run = async (fn: JobSpec): Promise<RunOutcome> => {
    const lease = await pool.acquire(true);
    try {
      return await lease.run({ fn, payload: encode([[], {}]), timeoutMs: waitMs, onOutput: () => {} });
    } finally {
      lease.release();
    }
  };
  const collected: { job: string; metrics: JobMetric[] }[] = [];
  for (const job of Object.values(pool.jobs).filter((j) => j.metrics)) {
    const outcome = await Promise.race([
      run({ job: job.name, endpoint: metricsEndpoint }),
      delay(waitMs, undefined, { ref: false }),
    ]);
    if (!outcome) {
      log(`job ${job.name}: metrics() did not answer within ${waitMs} ms; left out of this scrape`);
      continue;
    }
    if (!outcome.ok) {
      log(`job ${job.name}: metrics() failed: ${outcome.failure.pythonType ?? outcome.failure.kind}: ${outcome.failure.message}`);
      continue;
    }
    const { metrics, skipped } = checkJobMetrics(decode(joined(outcome.value)));
    for (const why of skipped) log(`job ${job.name}: metrics() entry left out: ${why}`);
    collected.push({ job: job.name, metrics });
  }
  return collected;
}
