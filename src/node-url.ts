/**
 * Node urls, as users and the host registry hand them over: with or without a trailing slash,
 * with or without a path prefix (`http://proxy/ks/` in front of a node). Every url of a node's
 * route is built here, so that none of them becomes `http://host:port//api/v1/...`.
 */

/** A node url with its trailing slashes removed: `http://host:port` or `http://proxy/ks`. */
export function normalizeNodeUrl(url: string): string {
  return parseNodeUrl(url).href.replace(/\/+$/, '');
}

/**
 * Checks a node url: http or https, a host, no query, fragment or credentials.
 * @throws Error naming the url and the form expected
 */
export function parseNodeUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`node url ${JSON.stringify(url)} is not a url: give http://host:port/`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new Error(`node url ${JSON.stringify(url)} must start with http:// or https://`);
  }
  if (!parsed.hostname) throw new Error(`node url ${JSON.stringify(url)} names no host`);
  if (parsed.search || parsed.hash || parsed.username || parsed.password) {
    throw new Error(`node url ${JSON.stringify(url)} may not carry a query, a fragment or credentials`);
  }
  return parsed;
}

/** The url of `route` (`/api/v1/...`) on the node at `nodeUrl`, its path prefix kept. */
export function nodeRoute(nodeUrl: string, route: string): string {
  return `${nodeUrl.replace(/\/+$/, '')}${route}`;
}

/** The HTTP path of a data url under `/api/v1/data/`, each segment percent-encoded. */
export function dataPath(url: string): string {
  return `/api/v1/data/${url.split('/').map(encodeURIComponent).join('/')}`;
}

/** The url of data `url` on the node at `nodeUrl`, followed by `suffix` (`/replicate`, `?fmt=...`). */
export function dataRoute(nodeUrl: string, url: string, suffix = ''): string {
  return nodeRoute(nodeUrl, `${dataPath(url)}${suffix}`);
}

/** True when both urls name the same node, whatever their trailing slashes. */
export function sameNode(a: string, b: string): boolean {
  return a.replace(/\/+$/, '') === b.replace(/\/+$/, '');
}

/** The port a node advertised at `url` listens on (kitchensink's rule): the url's, or its scheme's default. */
export function portOf(url: URL): number {
  if (url.port) return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}
