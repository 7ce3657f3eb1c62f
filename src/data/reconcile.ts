import type { Redis } from 'ioredis';
import type { Keys } from '../keys.js';
import { urlsUnder, type Catalog } from './catalog.js';
import type { DataRegistry } from './registry.js';

export interface Reconciled {
  /** Urls the registry said this node held, which it no longer does. */
  gone: string[];
  /** Of those, the ones no other host holds either: lost. */
  lost: string[];
  /** Files in the datadir the registry does not know: never served. */
  unregistered: number;
}

/**
 * Makes the registry agree with what a starting node holds: a url the registry lists this node
 * for but whose file is gone (its memory tier, emptied at every start, or a file deleted by
 * hand) loses this node as a holder, and is reported lost when no other copy remains. Files
 * the registry does not know are left alone and counted: they are never served.
 */
export async function reconcileData(redis: Redis, keys: Keys, registry: DataRegistry, catalog: Catalog, nodeName: string): Promise<Reconciled> {
  const prefix = keys.data('');
  const suffix = ':hosts';
  const gone: string[] = [];
  const lost: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}*${suffix}`, 'COUNT', 1000);
    cursor = next;
    const pipe = redis.pipeline();
    for (const key of found) pipe.sismember(key, nodeName);
    const members = (await pipe.exec()) ?? [];
    for (const [k, key] of found.entries()) {
      if (members[k]?.[1] !== 1) continue;
      const url = key.slice(prefix.length, -suffix.length);
      if (await catalog.has(url)) continue;
      gone.push(url);
      if ((await registry.unregister(url, nodeName)) === 0) lost.push(url);
    }
  } while (cursor !== '0');
  const urls = await urlsUnder(catalog.root);
  let unregistered = 0;
  for (let k = 0; k < urls.length; k += 1000) {
    const pipe = redis.pipeline();
    for (const url of urls.slice(k, k + 1000)) pipe.exists(keys.data(url));
    for (const [, exists] of (await pipe.exec()) ?? []) if (exists === 0) unregistered += 1;
  }
  return { gone, lost, unregistered };
}

/** The log lines a reconciliation deserves, if any. */
export function reconciledReport({ gone, lost, unregistered }: Reconciled): string[] {
  const lines: string[] = [];
  const some = (urls: string[]) => urls.slice(0, 10).join(', ') + (urls.length > 10 ? `, and ${urls.length - 10} more` : '');
  if (gone.length) lines.push(`${gone.length} urls the registry said this host held are no longer here (memory tier, or deleted): this host no longer holds them (${some(gone)})`);
  if (lost.length) lines.push(`WARNING: ${lost.length} urls were held by this host alone and are lost: ${some(lost)}`);
  if (unregistered) lines.push(`${unregistered} files in the datadir are not in the registry: they are not served`);
  return lines;
}
