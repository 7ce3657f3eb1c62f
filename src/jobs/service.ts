import { decode, encode, joined } from '../codec.js';
import { NotFound } from '../errors.js';
import { jobQueue } from '../keys.js';
import { terminalEventTypes, type FailureInfo, type JobSpec, type WireCall, type WireEvent } from '../types.js';
import type { RunOutcome, StopSwitch } from '../worker/executor.js';
import type { DirectCallResult } from '../worker/direct-call.js';
import type { Admission } from './admission.js';
import { checkArguments } from './arguments.js';
import { endpointOf, type JobCatalog } from './catalog.js';
import { jobJson, UnsendableResult } from './json-answer.js';

/** What the job service needs from the node. */
export interface JobServiceContext {
  catalog: JobCatalog;
  admission: Admission;
  /** Runs a call on this node's interpreters at once (ahead of queued work); `caller` labels its metrics. */
  runHere(call: WireCall, stop: StopSwitch, caller?: string): Promise<DirectCallResult>;
  /** Queues one call and resolves to its events once it ended. */
  calls: {
    submit(calls: WireCall[], caller?: string): Promise<{ batchId: string }>;
    results(batchId: string, cursor: string, waitMs: number, how: { remaining: number; stop: StopSwitch; justSubmitted: boolean }): Promise<{ cursor: string; events: WireEvent[] }>;
    cancelBatch(batchId: string): Promise<number>;
  };
  log(message: string): void;
}

/** A perform's HTTP answer: its status and JSON body. */
export interface PerformAnswer {
  status: number;
  json: string;
}

/** How each way a job's call can fail answers over HTTP (the README documents this table). */
const failureStatus: Record<FailureInfo['kind'], number> = {
  exception: 422,
  timeout: 504,
  cancelled: 499,
  crashed: 502,
  lost: 503,
  rejected: 429,
  // The node never ends a call with kind sla: only a client waiting with an SLA does.
  sla: 504,
};

/** Runs jobs for HTTP callers: checks the arguments, admits, runs here or forwards, answers JSON. */
export class JobService {
  constructor(private readonly ctx: JobServiceContext) {}

  /**
   * Calls endpoint `path` of job `name` with the keyword arguments in `body`.
   * `withOutput`: the answer carries what the job printed (`?output=1`).
   */
  async perform(name: string, path: string, body: unknown, how: { withOutput: boolean; stop: StopSwitch; caller?: string }): Promise<PerformAnswer> {
    const job = await this.ctx.catalog.find(name);
    if (!job) throw new NotFound(`no live node loaded a job named ${JSON.stringify(name)} (GET /api/v1/jobs lists them)`);
    const endpoint = endpointOf(job, path);
    if (!endpoint) throw new NotFound(`job ${name} has no endpoint ${path} (it has ${job.endpoints.map((e) => e.path).join(', ')})`);
    const kwargs = checkArguments(endpoint, body, name);
    const fn: JobSpec = { job: name, endpoint: path };
    const call: WireCall = { fn, payload: encode([[], kwargs]) };
    const { outcome, output } = await this.ctx.admission.run(() =>
      this.ctx.catalog.local[name] ? this.ctx.runHere(call, how.stop, how.caller) : this.forward(call, name, how.stop, how.caller),
    );
    this.logOutput(name, how.caller, output);
    return answer(outcome, how.withOutput ? output : undefined);
  }

  /** Runs the call on a node that loaded the job, through the job's queue. */
  private async forward(call: WireCall, name: string, stop: StopSwitch, caller: string | undefined): Promise<DirectCallResult> {
    const { batchId } = await this.ctx.calls.submit([{ ...call, opts: { queue: jobQueue(name) } }], caller);
    const output: DirectCallResult['output'] = [];
    for (let cursor = '0-0'; ; ) {
      const page = await this.ctx.calls.results(batchId, cursor, Infinity, { remaining: 1, stop, justSubmitted: true });
      cursor = page.cursor;
      for (const event of page.events) {
        if (event.t === 'stdout' || event.t === 'stderr') output.push([event.t, Buffer.from(event.d ?? [])]);
        else if (event.t === 'result') return { outcome: { ok: true, value: Buffer.from(event.d!) }, output };
        else if (terminalEventTypes.has(event.t)) return { outcome: { ok: false, failure: decode<FailureInfo>(event.d!) }, output };
      }
      if (stop.stopped) {
        await this.ctx.calls.cancelBatch(batchId);
        return { outcome: { ok: false, failure: { kind: 'cancelled', message: 'the client went away' } }, output };
      }
    }
  }

  private logOutput(name: string, caller: string | undefined, output: DirectCallResult['output']): void {
    if (!output.length) return;
    const text = Buffer.concat(output.map(([, chunk]) => chunk)).toString('utf8').replace(/\n$/, '');
    const who = caller ? ` (caller ${caller})` : '';
    for (const line of text.split('\n')) this.ctx.log(`job ${name}${who}: ${line}`);
  }
}

function answer(outcome: RunOutcome, output: DirectCallResult['output'] | undefined): PerformAnswer {
  const shown = output?.map(([stream, chunk]) => [stream, chunk.toString('utf8')]);
  if (outcome.ok) {
    let result: string;
    try {
      result = jobJson(decode(joined(outcome.value)));
    } catch (error) {
      if (!(error instanceof UnsendableResult)) throw error;
      return { status: 422, json: JSON.stringify({ error: 'unsendable_result', detail: error.message, ...(shown && { output: shown }) }) };
    }
    return { status: 200, json: shown ? `{"result":${result},"output":${JSON.stringify(shown)}}` : result };
  }
  const { kind, pythonType, message, traceback } = outcome.failure;
  const body = { error: kind, detail: message, ...(pythonType && { pythonType }), ...(traceback && { traceback }), ...(shown && { output: shown }) };
  return { status: failureStatus[kind] ?? 500, json: JSON.stringify(body) };
}
