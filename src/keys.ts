import { randomFillSync } from 'node:crypto';
import { defaultQueue } from './config.js';
import { isJobSpec, type WireCall } from './types.js';

/**
 * Redis key names, in one place (DESIGN's "Redis layout"). Under Redis Cluster (`cluster`) every
 * key carries a hashtag, so that what one Lua script or MULTI touches shares a slot while
 * batches and data spread over the shards: a batch's keys (stream, meta, claims) hash by the
 * batch id, a datum's two keys by its url, and the registry's keys (hosts, heartbeats, jobs,
 * persisted calls, the dashboard's feed) by the prefix, `{ks}:hosts`.
 */
export class Keys {
  /** The registry's keys' start: `ks`, or `{ks}` under Redis Cluster. */
  private readonly shared: string;

  constructor(
    readonly prefix: string,
    readonly cluster = false,
  ) {
    this.shared = cluster ? `{${prefix}}` : prefix;
  }

  /** `id` as a hashtag under Redis Cluster, as it is otherwise. */
  private tag(id: string): string {
    return this.cluster ? `{${id}}` : id;
  }

  get hosts(): string {
    return `${this.shared}:hosts`;
  }
  /** Host name → when its last heartbeat reached Redis, by Redis's clock (ms): no two machines' clocks are compared. */
  get beats(): string {
    return `${this.shared}:beats`;
  }
  alive(host: string): string {
    return `${this.shared}:alive:${host}`;
  }
  claim(taskId: string): string {
    // A task id starts with its batch's id, of a fixed length.
    return this.cluster ? `${this.prefix}:claim:{${taskId.slice(0, batchIdLength)}}${taskId.slice(batchIdLength)}` : `${this.prefix}:claim:${taskId}`;
  }
  /** How often a call was taken over from a dead host (bounds its re-runs). */
  claimTries(taskId: string): string {
    return `${this.claim(taskId)}:tries`;
  }
  batchEvents(batchId: string): string {
    return `${this.prefix}:batch:${this.tag(batchId)}:events`;
  }
  /** Number of calls in the batch; tells a finished-and-expired batch from an unknown one. */
  batchMeta(batchId: string): string {
    return `${this.prefix}:batch:${this.tag(batchId)}:meta`;
  }
  /** Host name → JSON of the jobs it loaded (`JobDescription[]`). */
  get jobs(): string {
    return `${this.shared}:jobs`;
  }
  /** The ALL calls recorded for `queue`, in order (JSON of `PersistedCall`). */
  persisted(queue: string): string {
    return `${this.shared}:persist:${queue}`;
  }
  /** The queues that have recorded ALL calls. */
  get persistedQueues(): string {
    return `${this.shared}:persist:queues`;
  }
  get cancelChannel(): string {
    return `${this.prefix}:cancel`;
  }
  /** The dashboard's feed: a tick from each node each second, while somebody watches (capped). */
  get dashboard(): string {
    return `${this.shared}:dashboard`;
  }
  /** Exists while some node has dashboard viewers; nodes publish ticks only then. */
  get dashboardWatched(): string {
    return `${this.shared}:dashboard:watched`;
  }
  data(url: string): string {
    return `${this.prefix}:data:${this.tag(url)}`;
  }
  dataHosts(url: string): string {
    return `${this.data(url)}:hosts`;
  }
  /** The url a data key (`data()` or `dataHosts()`) names; `data(glob)` is the SCAN pattern of those. */
  urlOfDataKey(key: string): string {
    const dataKey = key.endsWith(':hosts') ? key.slice(0, -':hosts'.length) : key;
    // Under Redis Cluster the url is between `ks:data:{` and the last `}`.
    return this.cluster ? dataKey.slice(`${this.prefix}:data:{`.length, -1) : dataKey.slice(`${this.prefix}:data:`.length);
  }
  /** The BullMQ queue name of `queue`: its own hashtag under Redis Cluster, so each queue has its slot. */
  bullQueue(queue: string): string {
    return this.tag(queue);
  }
  /** One of BullMQ's keys of `queue` (`wait`, `prioritized`, a job id), read by the dashboard. */
  bullKey(queue: string, type: string): string {
    return `${this.prefix}:${this.bullQueue(queue)}:${type}`;
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
