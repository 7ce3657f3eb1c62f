import type { RemoteError } from '../errors.js';

/** A call that passed its SLA, once it ended: its task id, its index in its batch, its outcome. */
export interface Straggler<T = unknown> {
  taskId: string;
  index: number;
  outcome: { ok: true; value: T } | { ok: false; error: RemoteError };
}

/** Late outcomes kept for a reader that has not come, and task ids `result()` answers for: the newest this many. */
const keptStragglers = 10_000;

/**
 * The late outcomes of calls that passed their SLA: read in order by `stragglers()` (an async
 * iterator that waits for the next), and by task id with `result()`. A client that reads
 * neither keeps only the newest 10,000.
 */
export class Stragglers {
  private readonly arrived: Straggler[] = [];
  private readonly readers: ((straggler: Straggler) => void)[] = [];
  private readonly byTask = new Map<string, { promise: Promise<Straggler['outcome']>; resolve(outcome: Straggler['outcome']): void }>();

  /** Notes a call that passed its SLA: `result(taskId)` waits for it from now on. */
  expect(taskId: string): void {
    if (this.byTask.has(taskId)) return;
    let resolve!: (outcome: Straggler['outcome']) => void;
    const promise = new Promise<Straggler['outcome']>((r) => (resolve = r));
    this.byTask.set(taskId, { promise, resolve });
    if (this.byTask.size > keptStragglers) this.byTask.delete(this.byTask.keys().next().value!);
  }

  /** A late outcome arrived. */
  deliver(straggler: Straggler): void {
    this.byTask.get(straggler.taskId)?.resolve(straggler.outcome);
    const reader = this.readers.shift();
    if (reader) reader(straggler);
    else if (this.arrived.push(straggler) > keptStragglers) this.arrived.shift();
  }

  /** The outcome of a call that passed its SLA, once it ends. */
  result(taskId: string): Promise<Straggler['outcome']> {
    const expected = this.byTask.get(taskId);
    if (!expected) return Promise.reject(new Error(`no call ${taskId} passed its SLA on this client`));
    return expected.promise;
  }

  /** Every late outcome, in the order they arrive; waits for the next one. */
  async *iterate(): AsyncGenerator<Straggler> {
    for (;;) yield this.arrived.shift() ?? (await new Promise<Straggler>((resolve) => this.readers.push(resolve)));
  }
}
