import { Cluster, type Redis } from 'ioredis';

/*
 * What differs under Redis Cluster, for the parts that must know: a connection to one is an
 * ioredis `Cluster`, typed as a `Redis` everywhere else (the commands used are the same).
 */

/** True when `redis` is a connection to a Redis Cluster. */
export function isCluster(redis: Redis): boolean {
  return (redis as unknown) instanceof Cluster;
}

/** A Redis Cluster's masters, as the connections the cluster sends its commands on. */
export function masters(redis: Redis): Redis[] {
  return (redis as unknown as Cluster).nodes('master');
}

/** The keys matching `pattern`, by SCAN (on every master under Redis Cluster), a batch at a time to `each`. */
export async function scanKeys(redis: Redis, pattern: string, each: (keys: string[]) => Promise<void>): Promise<void> {
  const nodes = isCluster(redis) ? masters(redis) : [redis];
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await each(keys);
    } while (cursor !== '0');
  }
}
