import type { RedisOptions } from 'ioredis';

/** The forms `--redis-connection` takes, for error messages and `--help`. */
export const redisConnectionForms = 'redis://[user:pass@]host:port/db, tcp://host:port?db=N, unix:///path.sock?db=N or /path.sock';

/**
 * ioredis options for `--redis-connection`: `redis://[user:pass@]host:port/db` (or `?db=N`),
 * kitchensink's `tcp://host:port?db=N`, `unix:///path.sock?db=N`, or a bare socket path.
 * @throws Error in one line that names the accepted forms
 */
export function redisOptions(connection: string): RedisOptions {
  const refuse = (why: string): never => {
    throw new Error(`--redis-connection ${JSON.stringify(connection)} ${why}; give ${redisConnectionForms}`);
  };
  if (connection.startsWith('/')) return { path: connection };
  let url: URL;
  try {
    url = new URL(connection);
  } catch {
    return refuse('is not a url nor an absolute socket path');
  }
  const query = new URLSearchParams(url.search);
  const unknown = [...query.keys()].filter((key) => key !== 'db');
  if (unknown.length) refuse(`has an unknown parameter ${JSON.stringify(unknown[0])}`);
  const db = (text: string | null): number => {
    if (text === null || text === '') return 0;
    if (!/^\d{1,5}$/.test(text)) refuse(`has db ${JSON.stringify(text)}, not a number`);
    return Number(text);
  };
  if (url.protocol === 'unix:') {
    if (url.host) refuse('puts a host where the socket path goes (three slashes: unix:///path.sock)');
    if (url.pathname.length < 2) refuse('names no socket path');
    return { path: decodeURIComponent(url.pathname), db: db(query.get('db')) };
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'tcp:') refuse(`has the unknown scheme ${url.protocol}//`);
  if (!url.hostname) refuse('names no host');
  const port = url.port ? Number(url.port) : 6379;
  if (!(port >= 1 && port <= 65535)) refuse(`has port ${url.port}`);
  const pathDb = url.pathname.replace(/^\/+|\/+$/g, '');
  if (pathDb && query.has('db')) refuse('gives the db twice (path and ?db=)');
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port,
    db: db(pathDb || query.get('db')),
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
  };
}
