import type { Redis } from 'ioredis';
import type { Keys } from '../keys.js';
import type { HostInfo } from '../types.js';

export interface RegistryOptions {
  heartbeatIntervalMs: number;
  heartbeatTtlMs: number;
  /** How long a `liveHosts()` answer may be reused. */
  cacheMs: number;
  /** Told when Redis no longer knew this host at a heartbeat: it restarted empty, or was flushed. */
  onForgotten?: () => void;
  /** JSON of the jobs this host loaded, for `ks:jobs`: written when the host (re)registers. */
  jobsJson?: string;
}

/** KEYS: beats. ARGV: host. Records the beat at Redis's time, in ms. */
const beatScript = `
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], ARGV[1], t[1] * 1000 + math.floor(t[2] / 1000))
return 1`;

/** Defines `ksBeat` on a connection (once). */
function withBeatCommand(redis: Redis): Redis & { ksBeat(beats: string, host: string): Promise<number> } {
  const r = redis as Redis & { ksBeat(beats: string, host: string): Promise<number> };
  if (typeof r.ksBeat !== 'function') redis.defineCommand('ksBeat', { numberOfKeys: 1, lua: beatScript });
  return r;
}

/** Reads every registered host and whether its heartbeat is still alive, in one round trip. */
export async function readHosts(redis: Redis, keys: Keys): Promise<HostInfo[]> {
  const all = await redis.hgetall(keys.hosts);
  const names = Object.keys(all).sort();
  if (!names.length) return [];
  const alive = await redis.mget(names.map((name) => keys.alive(name)));
  return names.map((name, k) => ({ ...(JSON.parse(all[name]) as HostInfo), name, alive: alive[k] !== null }));
}

/**
 * This host's entry in `ks:hosts` and its heartbeat `ks:alive:<host>`. The heartbeat rewrites
 * the entry too, so a Redis that restarted empty learns the host again within a beat.
 */
export class HostRegistry {
  private timer?: NodeJS.Timeout;
  private registered = false;
  /** When a heartbeat last reached Redis; one still on its way is not sent again. */
  private lastBeat = Date.now();
  private beating = false;
  private cache?: { at: number; hosts: Promise<HostInfo[]> };

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly self: HostInfo,
    private readonly opts: RegistryOptions,
  ) {
    withBeatCommand(redis);
  }

  async register(): Promise<void> {
    await this.beat();
    this.timer = setInterval(() => {
      if (this.beating) return;
      this.beating = true;
      void this.beat()
        .catch(() => {})
        .finally(() => (this.beating = false));
    }, this.opts.heartbeatIntervalMs);
    this.timer.unref();
  }

  /** Live hosts, from a snapshot at most `cacheMs` old unless `fresh`. */
  liveHosts(fresh = false): Promise<HostInfo[]> {
    const now = Date.now();
    if (fresh || !this.cache || now - this.cache.at > this.opts.cacheMs) {
      const hosts = readHosts(this.redis, this.keys).then((all) => all.filter((h) => h.alive));
      hosts.catch(() => {
        this.cache = undefined;
      });
      this.cache = { at: now, hosts };
    }
    return this.cache.hosts;
  }

  /** How long since a heartbeat last reached Redis (ms). */
  get silentFor(): number {
    return Date.now() - this.lastBeat;
  }

  async deregister(): Promise<void> {
    clearInterval(this.timer);
    await this.redis.multi().hdel(this.keys.hosts, this.self.name).del(this.keys.alive(this.self.name)).hdel(this.keys.jobs, this.self.name).hdel(this.keys.beats, this.self.name).exec();
  }

  close(): void {
    clearInterval(this.timer);
  }

  private async beat(): Promise<void> {
    const multi = this.redis
      .multi()
      .hset(this.keys.hosts, this.self.name, JSON.stringify({ ...this.self, beatAt: Date.now() }))
      .set(this.keys.alive(this.self.name), String(Date.now()), 'PX', this.opts.heartbeatTtlMs);
    // By Redis's clock: the sweeper judges silence by it, whatever this machine's clock says.
    (multi as unknown as { ksBeat(beats: string, host: string): void }).ksBeat(this.keys.beats, this.self.name);
    const replies = await multi.exec();
    this.lastBeat = Date.now();
    // HSET answers 1 when the entry was new: after the first beat, Redis forgot this host.
    const created = replies?.[0]?.[1] === 1;
    if (created && this.registered) this.opts.onForgotten?.();
    if ((created || !this.registered) && this.opts.jobsJson) await this.redis.hset(this.keys.jobs, this.self.name, this.opts.jobsJson);
    this.registered = true;
  }
}
