import type { RunOutcome, RunRequest } from '../worker/executor.js';
import { functionLabel } from '../types.js';
import type { PersistedCalls } from './persisted.js';

/**
 * Runs the persisted ALL calls of `queues`, in order, on a fresh interpreter before it takes
 * other calls; throws at the first that fails, naming it (the pool then keeps the interpreter
 * out of service, replaces it and tries again). Their output goes to the node's log.
 */
export async function replayPersisted(persisted: PersistedCalls, queues: string[], run: (request: RunRequest) => Promise<RunOutcome>, log: (message: string) => void): Promise<void> {
  for (const call of await persisted.forQueues(queues)) {
    const outcome = await run({
      fn: call.fn,
      payload: Buffer.from(call.payload, 'base64'),
      timeoutMs: call.timeoutS === undefined ? undefined : call.timeoutS * 1000,
      onOutput: (_stream, chunk) => log(`replay ${call.id}: ${chunk.toString('utf8').replace(/\n$/, '')}`),
    });
    if (!outcome.ok) {
      const { pythonType, kind, message } = outcome.failure;
      throw new Error(`persisted call ${call.id} (${functionLabel(call.fn)}) failed: ${pythonType ?? kind}: ${message}`);
    }
  }
}
