import type { Redis } from 'ioredis';
import { scanKeys } from '../redis-cluster.js';
import { Conflict } from '../errors.js';
import type { Keys } from '../keys.js';

/**
 * What the registry knows of one data url. `holders` lists live hosts only. `crc32` is absent
 * only for an entry written before kitchensink used CRCs, which has `md5` instead until a copy
 * checked against that md5 registers its CRC.
 */
export interface DataInfo {
  size: number;
  crc32?: string;
  md5?: string;
  fmt: string;
  holders: string[];
  /** The holders that keep it in their memory tier, by name (the others keep it on disk). */
  tiers?: Record<string, 'memory'>;
}

/**
 * KEYS: info, holders. ARGV: size, crc32, fmt, createdAt, host, tier. Records a copy of a url
 * (a memory-tier copy as `tier:<host>` in the info); a
 * copy whose CRC differs from the registered one is refused (returns the registered CRC). An
 * entry with only an md5 (written before CRCs; the caller checked the copy against it) gets
 * the CRC in its place.
 */
const registerScript = `
local known = redis.call('HGET', KEYS[1], 'crc32')
if known and known ~= ARGV[2] then return known end
if not known then
  if redis.call('HEXISTS', KEYS[1], 'md5') == 1 then
    redis.call('HSET', KEYS[1], 'crc32', ARGV[2])
    redis.call('HDEL', KEYS[1], 'md5')
  else
    redis.call('HSET', KEYS[1], 'size', ARGV[1], 'crc32', ARGV[2], 'fmt', ARGV[3], 'createdAt', ARGV[4])
  end
end
redis.call('SADD', KEYS[2], ARGV[5])
if ARGV[6] == 'memory' then redis.call('HSET', KEYS[1], 'tier:' .. ARGV[5], 'memory') else redis.call('HDEL', KEYS[1], 'tier:' .. ARGV[5]) end
return 'ok'`;

/** KEYS: info, holders. ARGV: host. Forgets a copy; the url itself when it was the last. */
const unregisterScript = `
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], 'tier:' .. ARGV[1])
if redis.call('SCARD', KEYS[2]) == 0 then redis.call('DEL', KEYS[1]) end
return redis.call('SCARD', KEYS[2])`;

interface RegistryCommands {
  ksDataRegister(info: string, holders: string, size: number, crc32: string, fmt: string, createdAt: number, host: string, tier: string): Promise<string>;
  ksDataUnregister(info: string, holders: string, host: string): Promise<number>;
}

/** The data registry in Redis: `ks:data:<url>` (size, crc32, fmt, createdAt) and `ks:data:<url>:hosts`. */
export class DataRegistry {
  private readonly redis: Redis & RegistryCommands;

  constructor(
    redis: Redis,
    private readonly keys: Keys,
  ) {
    this.redis = redis as Redis & RegistryCommands;
    if (typeof this.redis.ksDataRegister !== 'function') {
      redis.defineCommand('ksDataRegister', { numberOfKeys: 2, lua: registerScript });
      redis.defineCommand('ksDataUnregister', { numberOfKeys: 2, lua: unregisterScript });
    }
  }

  /** Records that `host` holds `url`; a different CRC than the registered one is a Conflict. */
  async register(url: string, host: string, file: { size: number; crc32: string; fmt: string; tier?: 'memory' | 'disk' }): Promise<void> {
    const answer = await this.redis.ksDataRegister(this.keys.data(url), this.keys.dataHosts(url), file.size, file.crc32, file.fmt, Date.now(), host, file.tier ?? 'disk');
    if (answer !== 'ok') throw new Conflict(`data ${JSON.stringify(url)} is registered with crc32 ${answer}, this copy has ${file.crc32}`);
  }

  /** Forgets `host`'s copy; resolves to how many holders remain. */
  unregister(url: string, host: string): Promise<number> {
    return this.redis.ksDataUnregister(this.keys.data(url), this.keys.dataHosts(url), host);
  }

  /**
   * Size, checksum, format and live holders of each url, in one round trip (the commands sent
   * at once; under Redis Cluster they go to each url's shard); unknown urls are left out.
   */
  async info(urls: string[], liveHosts: Set<string>): Promise<Record<string, DataInfo>> {
    if (!urls.length) return {};
    const replies = await Promise.all(urls.map((url) => Promise.all([this.redis.hgetall(this.keys.data(url)), this.redis.smembers(this.keys.dataHosts(url))])));
    const out: Record<string, DataInfo> = {};
    urls.forEach((url, k) => {
      const [fields, holders] = replies[k];
      if (!fields.crc32 && !fields.md5) return;
      const checksum = fields.crc32 ? { crc32: fields.crc32 } : { md5: fields.md5 };
      const live = holders.filter((h) => liveHosts.has(h)).sort();
      const inMemory = live.filter((h) => fields[`tier:${h}`] === 'memory');
      out[url] = { size: Number(fields.size), ...checksum, fmt: fields.fmt, holders: live, ...(inMemory.length ? { tiers: Object.fromEntries(inMemory.map((h) => [h, 'memory' as const])) } : {}) };
    });
    return out;
  }

  /** Urls matching a glob (`*`, `?`), by SCAN rather than KEYS so Redis never stalls. */
  async search(glob: string): Promise<string[]> {
    const found = new Set<string>();
    await scanKeys(this.redis, this.keys.data(glob), async (keys) => {
      for (const key of keys) if (!key.endsWith(':hosts')) found.add(this.keys.urlOfDataKey(key));
    });
    return [...found].sort();
  }
}
