import type { Redis } from 'ioredis';
import { isCluster, masters } from '../redis-cluster.js';

export interface ReplicaWaitOptions {
  /** The longest a batch's answer waits for a replica to confirm it has the batch. */
  timeoutMs: number;
  /** How often the masters are asked whether they have replicas. */
  refreshMs: number;
  log(message: string): void;
}

/**
 * Holds a batch's answer until a replica of each master has the batch (Redis `WAIT`), where the
 * masters have replicas: Redis replicates asynchronously, so a master that failed over right
 * after it acknowledged a batch could otherwise take the batch with it while the client holds
 * its task ids, and the client would wait for calls nobody runs. `WAIT` counts the writes of
 * the connection it is sent on, so it goes on the connection the batch went on (under Redis
 * Cluster, the cluster's own connection to each master). A master without replicas is not
 * asked (WAIT would sit out its timeout), nor is one whose replicas are not online (a full
 * resync). One whose replica does not confirm within the timeout is logged and not asked again
 * until the next look (WAIT holds up the connection it is sent on, which the node shares), and
 * the batch is answered all the same: it is queued on the master.
 */
export class ReplicaWait {
  /** The masters that had a replica online when last asked (and have not missed a WAIT since). */
  private replicated = new Set<Redis>();
  private timer?: NodeJS.Timeout;
  private lastWarningAt = 0;

  constructor(
    private readonly redis: Redis,
    private readonly opts: ReplicaWaitOptions,
  ) {}

  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.opts.refreshMs);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** Resolves once a replica of each replicated master has this connection's writes so far, or the timeout passed. */
  async afterWrites(): Promise<void> {
    if (!this.replicated.size) return;
    const waiting = [...this.replicated];
    const confirmed = await Promise.all(waiting.map((master) => this.wait(master)));
    const behind = waiting.filter((_, k) => !(Number(confirmed[k]) >= 1));
    for (const master of behind) this.replicated.delete(master);
    if (behind.length && Date.now() - this.lastWarningAt > 60_000) {
      this.lastWarningAt = Date.now();
      const why = confirmed.find((answer) => answer instanceof Error);
      this.opts.log(`no replica of ${behind.map(describe).join(', ')} confirmed a batch ${why ? `(WAIT failed: ${why.message})` : `within ${this.opts.timeoutMs} ms`}: a failover now could lose it`);
    }
  }

  /**
   * A master's WAIT: the replicas that confirmed, or why not. A master that does not answer
   * (its connection down, its commands queued until it comes back) counts as unconfirmed once
   * WAIT's own timeout and a second more have passed.
   */
  private wait(master: Redis): Promise<number | Error> {
    return answered(master.call('WAIT', 1, this.opts.timeoutMs) as Promise<number>, this.opts.timeoutMs + 1_000);
  }

  private async refresh(): Promise<void> {
    const nodes = isCluster(this.redis) ? masters(this.redis) : [this.redis];
    // Each replica is a line `slave0:ip=...,port=...,state=online,offset=...,lag=0`; a master
    // that does not answer is not waited for.
    const infos = await Promise.all(nodes.map((node) => answered(node.info('replication'), this.opts.timeoutMs + 1_000)));
    this.replicated = new Set(nodes.filter((_, k) => typeof infos[k] === 'string' && /^slave\d+:.*\bstate=online\b/m.test(infos[k] as string)));
  }
}

/** What `promise` resolves to, or the error it rejects with, or an error once `ms` passed without either. */
async function answered<T>(promise: Promise<T>, ms: number): Promise<T | Error> {
  let timer: NodeJS.Timeout | undefined;
  const silent = new Promise<Error>((resolve) => (timer = setTimeout(() => resolve(new Error(`no answer in ${ms} ms`)), ms)));
  try {
    return await Promise.race([promise.catch((error: Error) => error), silent]);
  } finally {
    clearTimeout(timer);
  }
}

const describe = (node: Redis): string => `${node.options.host ?? node.options.path}:${node.options.port}`;
