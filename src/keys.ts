import { randomFillSync } from 'node:crypto';
import { defaultQueue } from './config.js';
import { isJobSpec, type WireCall } from './types.js';

/** Redis key names, in one place (DESIGN's "Redis layout"). */
export class Keys {
  constructor(readonly prefix: string) {}

  get hosts(): string {
    return `${this.prefix}:hosts`;
  }
  /** Host name → when its last heartbeat reached Redis, by Redis's clock (ms): no two machines' clocks are compared. */
  get beats(): string {
    return `${this.prefix}:beats`;
  }
  alive(host: string): string {
    return `${this.prefix}:alive:${host}`;
  }
  claim(taskId: string): string {
    return `${this.prefix}:claim:${taskId}`;
  }
  /** How often a call was taken over from a dead host (bounds its re-runs). */
  claimTries(taskId: string): string {
    return `${this.prefix}:claim:${taskId}:tries`;
  }
  batchEvents(batchId: string): string {
    return `${this.prefix}:batch:${batchId}:events`;
  }
  /** Number of calls in the batch; tells a finished-and-expired batch from an unknown one. */
  batchMeta(batchId: string): string {
    return `${this.prefix}:batch:${batchId}:meta`;
  }
  /** Host name → JSON of the jobs it loaded (`JobDescription[]`). */
  get jobs(): string {
    return `${this.prefix}:jobs`;
  }
  /** The ALL calls recorded for `queue`, in order (JSON of `PersistedCall`). */
  persisted(queue: string): string {
    return `${this.prefix}:persist:${queue}`;
  }
  /** The queues that have recorded ALL calls. */
  get persistedQueues(): string {
    return `${this.prefix}:persist:queues`;
  }
  get cancelChannel(): string {
    return `${this.prefix}:cancel`;
  }
  /** The dashboard's feed: a tick from each node each second, while somebody watches (capped). */
  get dashboard(): string {
    return `${this.prefix}:dashboard`;
  }
  /** Exists while some node has dashboard viewers; nodes publish ticks only then. */
  get dashboardWatched(): string {
    return `${this.prefix}:dashboard:watched`;
  }
  data(url: string): string {
    return `${this.prefix}:data:${url}`;
  }
  dataHosts(url: string): string {
    return `${this.prefix}:data:${url}:hosts`;
  }
}

/** The queue of a job: served by every node that loaded it; nodes without it forward there. */
export function jobQueue(job: string): string {
  return `job.${job}`;
}

/** The queue of an `--env NAME=PYTHON` environment's interpreters. */
export function envQueue(env: string): string {
  return `env.${env}`;
}

/** The queue a call belongs to: its `queue`, else its `env`'s, its job's, or the default. */
export function callQueue(call: Pick<WireCall, 'fn' | 'opts'>): string {
  const opts = call.opts;
  if (opts?.queue) return opts.queue;
  if (opts?.env) return envQueue(opts.env);
  return isJobSpec(call.fn) ? jobQueue(call.fn.job) : defaultQueue;
}

/** The BullMQ queue a call goes to: `queue` anywhere, or `queue` on one host. */
export function queueName(queue: string, host?: string): string {
  if (!host) return queue;
  return queue === defaultQueue ? `host.${host}` : `${queue}.host.${host}`;
}

export function taskIdOf(batchId: string, index: number): string {
  return `${batchId}-${index}`;
}

/** Splits a task id into its batch id and index, or returns undefined for a malformed id. */
export function parseTaskId(taskId: string): { batchId: string; index: number } | undefined {
  const m = /^(b[0-9a-f]{16})-(\d{1,9})$/.exec(taskId);
  return m ? { batchId: m[1], index: Number(m[2]) } : undefined;
}

/**
 * On `POST /api/v1/call` with a msgpack body: the body's last N bytes are the call's payload,
 * which its msgpack then leaves out. The node hands those bytes to Python as they arrived
 * rather than gathering a big payload into one buffer with the rest of the body.
 */
export const payloadBytesHeader = 'x-ks-payload-bytes';

/** The header that carries a node's `--token` (none without one). */
export function bearerHeader(token: string | undefined): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** Random bytes for batch ids, drawn 512 ids at a time: one getrandom call, not one per batch. */
const idPool = Buffer.alloc(8 * 512);
let idPoolUsed = idPool.length;

/** A new batch id: `b` and 64 random bits in hex. */
export function newBatchId(): string {
  if (idPoolUsed === idPool.length) {
    randomFillSync(idPool);
    idPoolUsed = 0;
  }
  idPoolUsed += 8;
  return `b${idPool.toString('hex', idPoolUsed - 8, idPoolUsed)}`;
}

export const batchIdPattern = /^b[0-9a-f]{16}$/;
/** Every batch id's length: a task id's first characters are its batch's id. */
export const batchIdLength = 17;
/** Host and queue names: safe inside Redis keys and BullMQ queue names (no `:`). */
export const namePattern = /^[A-Za-z0-9_.-]{1,100}$/;
