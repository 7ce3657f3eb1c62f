import { readFileSync } from 'node:fs';
import type { RedisOptions } from 'ioredis';
import { Keys } from '../keys.js';

/** The forms `--redis-connection` takes, for error messages and `--help`. */
export const redisConnectionForms =
  'redis://[user:pass@]host:port/db, rediss://[user:pass@]host:port/db[?ca=/path/ca.pem] (TLS), redis-sentinel://h1:p1,h2:p2/NAME[?db=N], redis-cluster://[user:pass@]h1:p1,h2:p2 (Redis Cluster), tcp://host:port?db=N, unix:///path.sock?db=N or /path.sock';

/**
 * ioredis options for `--redis-connection`: `redis://[user:pass@]host:port/db` (or `?db=N`),
 * `rediss://` the same over TLS (`?ca=PATH` trusts that CA besides the system's),
 * `redis-sentinel://h1:p1,h2:p2/NAME` (the master Sentinel names NAME, followed through
 * failovers), kitchensink's `tcp://host:port?db=N`, `unix:///path.sock?db=N`, or a bare
 * socket path.
 * @throws Error in one line that names the accepted forms
 */
export function redisOptions(connection: string): RedisOptions {
  const refuse = (why: string): never => {
    throw new Error(`--redis-connection ${JSON.stringify(connection)} ${why}; give ${redisConnectionForms}`);
  };
  if (connection.startsWith('/')) return { path: connection };
  if (connection.startsWith('redis-sentinel:')) return sentinelOptions(connection, refuse);
  if (connection.startsWith('redis-cluster:')) {
    const { nodes, options } = clusterOptions(connection)!;
    return { ...options, ...nodes[0] };
  }
  let url: URL;
  try {
    url = new URL(connection);
  } catch {
    return refuse('is not a url nor an absolute socket path');
  }
  const query = new URLSearchParams(url.search);
  const known = url.protocol === 'rediss:' ? ['db', 'ca'] : ['db'];
  const unknown = [...query.keys()].filter((key) => !known.includes(key));
  if (unknown.length) refuse(`has an unknown parameter ${JSON.stringify(unknown[0])}`);
  if (url.protocol === 'unix:') {
    if (url.host) refuse('puts a host where the socket path goes (three slashes: unix:///path.sock)');
    if (url.pathname.length < 2) refuse('names no socket path');
    return { path: decodeURIComponent(url.pathname), db: dbNumber(query.get('db'), refuse) };
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:' && url.protocol !== 'tcp:') refuse(`has the unknown scheme ${url.protocol}//`);
  if (!url.hostname) refuse('names no host');
  const port = url.port ? Number(url.port) : 6379;
  if (!(port >= 1 && port <= 65535)) refuse(`has port ${url.port}`);
  const pathDb = url.pathname.replace(/^\/+|\/+$/g, '');
  if (pathDb && query.has('db')) refuse('gives the db twice (path and ?db=)');
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const options: RedisOptions = {
    host,
    port,
    db: dbNumber(pathDb || query.get('db'), refuse),
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
  };
  if (url.protocol === 'rediss:') options.tls = tlsOptions(host, query.get('ca'), refuse);
  return options;
}

/** True for the forms that name a Redis a node must never start itself (TLS, Sentinel, Cluster). */
export function isManagedRedis(connection: string): boolean {
  return connection.startsWith('rediss:') || connection.startsWith('redis-sentinel:') || connection.startsWith('redis-cluster:');
}

/** A Redis Cluster to connect to: some of its nodes (ioredis finds the rest), and the options for each. */
export interface ClusterTarget {
  nodes: { host: string; port: number }[];
  options: RedisOptions;
}

/**
 * `redis-cluster://[user:pass@]h1:p1,h2:p2`: the cluster those nodes belong to; undefined for
 * every other form.
 * @throws Error in one line that names the accepted forms
 */
export function clusterOptions(connection: string): ClusterTarget | undefined {
  if (!connection.startsWith('redis-cluster:')) return undefined;
  const refuse = (why: string): never => {
    throw new Error(`--redis-connection ${JSON.stringify(connection)} ${why}; give ${redisConnectionForms}`);
  };
  const m = /^redis-cluster:\/\/(?:([^@/]*)@)?([^/?]+)\/?$/.exec(connection);
  if (!m) return refuse('is not redis-cluster://host:port,host:port (no path, no parameters)');
  const [, credentials, hostList] = m;
  return { nodes: hostPorts(hostList, 'node', 6379, refuse), options: userAndPassword(credentials) };
}

/** `h1:p1,h2:p2` (IPv6 in brackets; `defaultPort` where none is given) as hosts and ports; `what` names one in errors. */
function hostPorts(list: string, what: string, defaultPort: number, refuse: (why: string) => never): { host: string; port: number }[] {
  return list.split(',').map((entry) => {
    const hm = /^(\[[^\]]+\]|[^:]+)(?::(\d{1,5}))?$/.exec(entry);
    if (!hm) return refuse(`has the ${what} ${JSON.stringify(entry)}, not host:port`);
    const port = hm[2] ? Number(hm[2]) : defaultPort;
    if (!(port >= 1 && port <= 65535)) refuse(`has the ${what} port ${hm[2]}`);
    return { host: hm[1].replace(/^\[(.*)\]$/, '$1'), port };
  });
}

/** `user:pass` (percent-encoded) from a url's credentials part. */
function userAndPassword(credentials: string | undefined): Pick<RedisOptions, 'username' | 'password'> {
  const [user, pass] = credentials ? credentials.split(':').map(decodeURIComponent) : [];
  return { username: user || undefined, password: pass || undefined };
}

function dbNumber(text: string | null, refuse: (why: string) => never): number {
  if (text === null || text === '') return 0;
  if (!/^\d{1,5}$/.test(text)) refuse(`has db ${JSON.stringify(text)}, not a number`);
  return Number(text);
}

/** TLS to `host`, trusting the CA file `ca` (PEM) besides the system's when given. */
function tlsOptions(host: string, ca: string | null, refuse: (why: string) => never): RedisOptions['tls'] {
  const tls: NonNullable<RedisOptions['tls']> = { servername: /^[\d.]+$|:/.test(host) ? undefined : host };
  if (ca !== null) {
    try {
      tls.ca = readFileSync(ca);
    } catch (error) {
      refuse(`names a CA file that cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
  }
  return tls;
}

/** `redis-sentinel://[user:pass@]h1:p1,h2:p2/NAME[?db=N]`: the sentinels, and the master's name. */
function sentinelOptions(connection: string, refuse: (why: string) => never): RedisOptions {
  const m = /^redis-sentinel:\/\/(?:([^@/]*)@)?([^/?]+)\/([^/?]*)\/?(?:\?(.*))?$/.exec(connection);
  if (!m) return refuse('is not redis-sentinel://host:port,host:port/NAME');
  const [, credentials, hostList, name, search] = m;
  if (!name) refuse('names no master (redis-sentinel://host:port,.../NAME)');
  const query = new URLSearchParams(search ?? '');
  const unknown = [...query.keys()].filter((key) => key !== 'db');
  if (unknown.length) refuse(`has an unknown parameter ${JSON.stringify(unknown[0])}`);
  return {
    sentinels: hostPorts(hostList, 'sentinel', 26379, refuse),
    name: decodeURIComponent(name),
    db: dbNumber(query.get('db'), refuse),
    // The master's credentials; Sentinels themselves are asked without.
    ...userAndPassword(credentials),
  };
}

/** The key names for `connection`: with hashtags when it names a Redis Cluster. */
export function keysFor(connection: string, prefix: string): Keys {
  return new Keys(prefix, clusterOptions(connection) !== undefined);
}
