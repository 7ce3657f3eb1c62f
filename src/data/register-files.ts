import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { Keys } from '../keys.js';
import { dataFormats } from '../types.js';
import { urlsUnder, validateDataUrl } from './catalog.js';
import { StreamChecksum } from './checksum.js';
import { DataRegistry } from './registry.js';

/** The format a file's extension says; `raw` for any other. */
export function formatOfName(name: string): string {
  const ext = /\.([^./]+)$/.exec(name)?.[1]?.toLowerCase();
  return { npy: 'ndarray', json: 'json', msgpack: 'msgpack', mpk: 'msgpack', pkl: 'pickle', pickle: 'pickle' }[ext ?? ''] ?? 'raw';
}

/** A glob (`*` within a path segment, `**` across them, `?`) as a RegExp over whole urls. */
function globPattern(glob: string): RegExp {
  const source = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*/g, '\u0000').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]').replace(/\u0000/g, '.*');
  return new RegExp(`^${source}$`);
}

export interface RegisterResult {
  registered: string[];
  already: string[];
  refused: string[];
}

/**
 * Registers files put into a node's datadir by hand (rsync, cp) as that node's data: size,
 * CRC-32 and format (by extension, or `fmt`). A url the registry knows with other bytes is
 * refused, never overwritten; one it knows with the same bytes just gains this holder.
 */
export async function registerFiles(redis: Redis, keys: Keys, opts: { datadir: string; node: string; glob: string; fmt?: string; say(line: string): void }): Promise<RegisterResult> {
  if (opts.fmt !== undefined && !(dataFormats as readonly string[]).includes(opts.fmt)) throw new Error(`--fmt must be one of ${dataFormats.join(', ')}`);
  const root = join(opts.datadir, 'data');
  const files = await urlsUnder(root).catch((error: NodeJS.ErrnoException) => {
    throw new Error(error.code === 'ENOENT' ? `${root} does not exist: is ${opts.datadir} a node's --datadir?` : error.message);
  });
  const pattern = globPattern(opts.glob);
  const urls = files.filter((url) => pattern.test(url)).sort();
  const registry = new DataRegistry(redis, keys);
  const known = await registry.info(urls, new Set());
  const result: RegisterResult = { registered: [], already: [], refused: [] };
  for (const url of urls) {
    try {
      validateDataUrl(url);
      const checksum = new StreamChecksum();
      for await (const chunk of createReadStream(join(root, url), { highWaterMark: 1 << 20 })) checksum.update(chunk as Buffer);
      const fmt = known[url]?.fmt ?? opts.fmt ?? formatOfName(url);
      await registry.register(url, opts.node, { size: checksum.size, crc32: checksum.crc32, fmt });
      (known[url] ? result.already : result.registered).push(url);
      opts.say(`${known[url] ? 'holder added' : 'registered'}: ${url} (${checksum.size} bytes, crc32 ${checksum.crc32}, ${fmt})`);
    } catch (error) {
      result.refused.push(url);
      opts.say(`refused: ${url}: ${(error as Error).message}`);
    }
  }
  return result;
}
