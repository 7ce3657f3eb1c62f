import type { Redis } from 'ioredis';
import type { Keys } from '../keys.js';
import type { HostInfo, JobDescription, JobEndpoint } from '../types.js';

/** A job in the cluster's catalogue: as its first live host describes it, and every live host that loaded it. */
export interface CatalogEntry extends JobDescription {
  hosts: string[];
}

export interface JobCatalogContext {
  redis: Redis;
  keys: Keys;
  liveHosts(): Promise<HostInfo[]>;
}

/**
 * Every job loaded by a live node. Each node writes the descriptions of its jobs to `ks:jobs`
 * once when it registers; this reads them back for the live hosts, at most every `cacheMs`.
 */
export class JobCatalog {
  private cache?: { at: number; entries: Promise<Map<string, CatalogEntry>> };
  /** Parsed descriptions by the JSON they came from: a host's entry is parsed once, not per read. */
  private parsed = new Map<string, JobDescription[]>();

  constructor(
    private readonly ctx: JobCatalogContext,
    /** The jobs this node loaded, by name. */
    readonly local: Record<string, JobDescription>,
    private readonly cacheMs: number,
  ) {}

  /** Every job of the cluster, by name. */
  all(): Promise<Map<string, CatalogEntry>> {
    const now = Date.now();
    if (!this.cache || now - this.cache.at > this.cacheMs) {
      const entries = this.read();
      entries.catch(() => (this.cache = undefined));
      this.cache = { at: now, entries };
    }
    return this.cache.entries;
  }

  /** A job by name, this node's own first; undefined when no live node loaded it. */
  async find(name: string): Promise<JobDescription | undefined> {
    return this.local[name] ?? (await this.all()).get(name);
  }

  private async read(): Promise<Map<string, CatalogEntry>> {
    const [hosts, written] = await Promise.all([this.ctx.liveHosts(), this.ctx.redis.hgetall(this.ctx.keys.jobs)]);
    const entries = new Map<string, CatalogEntry>();
    const parsed = new Map<string, JobDescription[]>();
    for (const host of hosts) {
      const json = written[host.name];
      if (!json) continue;
      const jobs = this.parsed.get(json) ?? (JSON.parse(json) as JobDescription[]);
      parsed.set(json, jobs);
      for (const job of jobs) {
        const entry = entries.get(job.name) ?? { ...job, hosts: [] };
        entry.hosts.push(host.name);
        entries.set(job.name, entry);
      }
    }
    this.parsed = parsed;
    return entries;
  }
}

/** The endpoint at `path` of a job (`/perform` or an auxiliary one). */
export function endpointOf(job: JobDescription, path: string): JobEndpoint | undefined {
  return job.endpoints.find((e) => e.path === path);
}
