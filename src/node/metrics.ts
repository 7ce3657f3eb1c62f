import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { functionLabel, type FailureKind, type FnSpec } from '../types.js';

/** Why an interpreter was replaced, as the `reason` label counts it. */
export type RestartReason = 'timeout' | 'cancelled' | 'crash' | 'max_requests' | 'memory' | 'replay_failed';

/** A metric a job's `metrics()` returned, checked. */
export interface JobMetric {
  name: string;
  value: number;
  description?: string;
  labels?: Record<string, string>;
}

export interface NodeMetricsContext {
  nodeName: string;
  workers(): number;
  idleWorkers(): number;
  longPolls(): number;
  directCalls(): number;
  admissionRejected(): number;
  startedAt: number;
  /** Jobs waiting, prioritized or delayed in each queue this node serves. */
  queueDepths(): Promise<Record<string, number>>;
  /** Every job's own `metrics()`, already checked; garbage is left out (and logged) by the caller. */
  jobMetrics(): Promise<{ job: string; metrics: JobMetric[] }[]>;
}

const outcomeBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/**
 * The node's Prometheus metrics, built with prom-client on a registry of its own (every
 * series labelled with the node's name): calls and their outcomes per function or job and
 * caller, durations, queue depth and wait, interpreter restarts, bytes moved, admission
 * rejections, the process's memory, and each job's `metrics()`.
 */
export class NodeMetrics {
  readonly registry = new Registry();
  private readonly calls: Counter<'function' | 'caller' | 'outcome'>;
  private readonly errors: Counter<'function' | 'caller' | 'kind'>;
  private readonly duration: Histogram<'function' | 'outcome'>;
  private readonly queueWait: Histogram;
  private readonly restarts: Counter<'reason'>;
  private readonly scaling: Counter<'change'>;
  private readonly bytes: Counter<'direction'>;

  constructor(private readonly ctx: NodeMetricsContext) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ node: ctx.nodeName });
    collectDefaultMetrics({ register: this.registry });
    this.calls = new Counter({ name: 'ks_calls_total', help: 'Calls that ended, by function or job, caller and outcome (ok or how they failed).', labelNames: ['function', 'caller', 'outcome'], registers });
    this.errors = new Counter({ name: 'ks_call_errors_total', help: 'Calls that failed, by function or job, caller and kind.', labelNames: ['function', 'caller', 'kind'], registers });
    this.duration = new Histogram({ name: 'ks_call_duration_seconds', help: 'How long calls ran, by function or job and outcome.', labelNames: ['function', 'outcome'], buckets: outcomeBuckets, registers });
    this.queueWait = new Histogram({ name: 'ks_queue_wait_seconds', help: 'How long queued calls waited before they started.', buckets: outcomeBuckets, registers });
    this.restarts = new Counter({ name: 'ks_executor_restarts_total', help: 'Interpreters replaced, by reason.', labelNames: ['reason'], registers });
    this.scaling = new Counter({ name: 'ks_workers_scaled_total', help: 'Interpreters the autoscaler added or retired (--max-workers, --min-workers).', labelNames: ['change'], registers });
    this.bytes = new Counter({ name: 'ks_data_bytes_total', help: 'Bytes of data moved: in (uploads, copies received), out (downloads, copies sent).', labelNames: ['direction'], registers });
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({ name, help, registers, collect() { this.set(read()); } });
    gauge('ks_workers', 'Warm interpreters of this node.', ctx.workers);
    gauge('ks_idle_workers', 'Interpreters not running a call.', ctx.idleWorkers);
    gauge('ks_long_polls', 'Long-polls waiting for events.', ctx.longPolls);
    const counter = (name: string, help: string, read: () => number) =>
      new Counter({ name, help, registers, collect() { this.reset(); this.inc(read()); } });
    counter('ks_direct_calls_total', 'Calls run at once on this node (async: false, performs).', ctx.directCalls);
    counter('ks_admission_rejected_total', 'Direct calls and performs refused with 429 (--max-concurrency-queue).', ctx.admissionRejected);
    gauge('ks_uptime_seconds', 'Seconds since the node started.', () => Math.round((Date.now() - ctx.startedAt) / 1000));
    new Gauge({
      name: 'ks_queue_depth',
      help: 'Jobs waiting, prioritized or delayed in each queue this node serves (a job holds one call or a chunk of a batch; a call queued on several hosts counts on each).',
      labelNames: ['queue'],
      registers,
      async collect() {
        this.reset();
        for (const [queue, depth] of Object.entries(await ctx.queueDepths())) this.set({ queue }, depth);
      },
    });
  }

  /** Counts a call that ended. */
  callEnded(fn: FnSpec, outcome: 'ok' | FailureKind, seconds: number, caller = ''): void {
    const name = functionLabel(fn);
    this.calls.inc({ function: name, caller, outcome });
    if (outcome !== 'ok') this.errors.inc({ function: name, caller, kind: outcome });
    this.duration.observe({ function: name, outcome }, seconds);
  }

  queueWaited(seconds: number): void {
    this.queueWait.observe(Math.max(0, seconds));
  }

  scaled(change: 'added' | 'retired'): void {
    this.scaling.inc({ change });
  }

  restarted(reason: RestartReason): void {
    this.restarts.inc({ reason });
  }

  moved(direction: 'in' | 'out', bytes: number): void {
    this.bytes.inc({ direction }, bytes);
  }

  /** The Prometheus text, jobs' own metrics after the node's. */
  async text(): Promise<string> {
    const [own, jobs] = await Promise.all([this.registry.metrics(), this.ctx.jobMetrics()]);
    const lines: string[] = [];
    for (const { job, metrics } of jobs) {
      for (const m of metrics) {
        if (m.description) lines.push(`# HELP ${m.name} ${m.description.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`);
        lines.push(`# TYPE ${m.name} gauge`);
        const labels = { node: this.ctx.nodeName, job, ...m.labels };
        const text = Object.entries(labels).map(([k, v]) => `${k}="${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`).join(',');
        lines.push(`${m.name}{${text}} ${m.value}`);
      }
    }
    return lines.length ? `${own}\n${lines.join('\n')}\n` : own;
  }
}

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * The metrics a job's `metrics()` returned that Prometheus can take (name, numeric value,
 * optional description and string labels); `skipped` says why the others were left out.
 */
export function checkJobMetrics(returned: unknown): { metrics: JobMetric[]; skipped: string[] } {
  const metrics: JobMetric[] = [];
  const skipped: string[] = [];
  if (!Array.isArray(returned)) return { metrics, skipped: [`metrics() returned ${typeof returned}, not a list`] };
  for (const [k, entry] of returned.entries()) {
    const m = entry as Partial<JobMetric> | null;
    const value = typeof m?.value === 'bigint' ? Number(m.value) : m?.value;
    if (!m || typeof m.name !== 'string' || !metricName.test(m.name) || m.name.startsWith('ks_')) {
      skipped.push(`[${k}]: name must match ${metricName} and not start with ks_`);
    } else if (typeof value !== 'number' || Number.isNaN(value)) {
      skipped.push(`${m.name}: value is not a number`);
    } else if (m.labels !== undefined && (typeof m.labels !== 'object' || m.labels === null || Object.keys(m.labels).some((l) => !labelName.test(l) || l === 'node' || l === 'job'))) {
      skipped.push(`${m.name}: labels must be a dict of names other than node and job`);
    } else {
      metrics.push({ name: m.name, value, description: typeof m.description === 'string' ? m.description : undefined, labels: m.labels as Record<string, string> | undefined });
    }
  }
  return { metrics, skipped };
}
