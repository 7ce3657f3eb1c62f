import type { Redis } from 'ioredis';
import type { Keys } from '../keys.js';
import { scanKeys } from '../redis-cluster.js';
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
  const gone: string[] = [];
  const lost: string[] = [];
  await scanKeys(redis, keys.dataHosts('*'), async (found) => {
    const members = await Promise.all(found.map((key) => redis.sismember(key, nodeName)));
    for (const [k, key] of found.entries()) {
      if (members[k] !== 1) continue;
      const url = keys.urlOfDataKey(key);
      if (await catalog.has(url)) continue;
      gone.push(url);
      if ((await registry.unregister(url, nodeName)) === 0) lost.push(url);
    }
  });
  const urls = await urlsUnder(catalog.root);
  let unregistered = 0;
  for (let k = 0; k < urls.length; k += 1000) {
    const exists = await Promise.all(urls.slice(k, k + 1000).map((url) => redis.exists(keys.data(url))));
    unregistered += exists.filter((n) => n === 0).length;
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
