/** What routing needs to know of a data url. */
export interface RoutedData {
  size: number;
  holders: string[];
}

/** A host a call may run on, and what it would copy to run it. */
export interface RankedHost {
  name: string;
  bytesToCopy: number;
  /** How many of the call's data it lacks. */
  copies: number;
}

/**
 * Ranks hosts for a call by the bytes each would have to copy to run it: the sizes of the
 * call's data it does not hold. Ordered by (bytes, name); hosts at or over `thresholdBytes`
 * are left out, but never all of them: then the single cheapest host is kept.
 */
export function rankHosts(dataUrls: string[], data: Record<string, RoutedData>, hosts: string[], thresholdBytes: number): string[] {
  return scoreHosts(dataUrls, data, hosts, thresholdBytes).map((h) => h.name);
}

/** `rankHosts`, with the bytes each host would copy. */
export function scoreHosts(dataUrls: string[], data: Record<string, RoutedData>, hosts: string[], thresholdBytes: number): RankedHost[] {
  if (!hosts.length) return [];
  const urls = [...new Set(dataUrls)].filter((url) => data[url]);
  const scored = hosts.map((name) => {
    const lacking = urls.filter((url) => !data[url].holders.includes(name));
    return { name, bytesToCopy: lacking.reduce((sum, url) => sum + data[url].size, 0), copies: lacking.length };
  });
  scored.sort((a, b) => a.bytesToCopy - b.bytesToCopy || byName(a, b));
  const kept = scored.filter((s) => s.bytesToCopy < thresholdBytes);
  return kept.length ? kept : scored.slice(0, 1);
}

const byName = (a: RankedHost, b: RankedHost): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** What `routeCalls` expects a copy and a call to cost, in ms. */
export interface RoutingCosts {
  /** The rate a host copies at. */
  bytesPerMs: number;
  /** Each copy's own cost, whatever its size (a request to the holder, the registry). */
  copyMs: number;
  /** A call's run. */
  callMs: number;
}

/**
 * Ranks hosts for each call of a batch in turn, as a list scheduler would: by when each host
 * could start the call (its calls routed so far in this batch, their copies and runs at
 * `costs`, then this call's copies), ties by bytes, then name; without costs, by bytes. Counts
 * the copies the batch's earlier calls will make: once a call is routed, its first host will
 * hold the call's data, so later calls on the same data go where it gathers instead of copying
 * it again, unless that host is so far behind that copying elsewhere starts sooner (Dask's
 * worker objective). Hosts at or over `thresholdBytes` are left out as in `rankHosts`.
 * `hosts[k]` are the hosts that may run call k; a call without data gets no ranking ([]).
 */
export function routeCalls(
  urlsPerCall: string[][],
  data: Record<string, RoutedData>,
  hosts: string[][],
  thresholdBytes: number,
  { bytesPerMs, copyMs, callMs }: RoutingCosts = { bytesPerMs: Infinity, copyMs: 0, callMs: 0 },
): RankedHost[][] {
  const holders = new Map(Object.entries(data).map(([url, info]) => [url, new Set(info.holders)]));
  const busyMs = new Map<string, number>();
  const view: Record<string, RoutedData> = {};
  const startMs = (h: RankedHost) => (busyMs.get(h.name) ?? 0) + h.copies * copyMs + h.bytesToCopy / bytesPerMs;
  return urlsPerCall.map((urls, k) => {
    if (!urls.length) return [];
    for (const url of urls) if (data[url]) view[url] = { size: data[url].size, holders: [...holders.get(url)!] };
    const route = scoreHosts(urls, view, hosts[k], thresholdBytes);
    route.sort((a, b) => startMs(a) - startMs(b) || a.bytesToCopy - b.bytesToCopy || byName(a, b));
    if (!route.length) return route;
    const first = route[0];
    busyMs.set(first.name, startMs(first) + callMs);
    for (const url of urls) holders.get(url)?.add(first.name);
    return route;
  });
}

/** BullMQ's highest priority number (the lowest priority). */
const maxPriority = 2_097_152;

/**
 * When, and in what order, the queued copy of a call on its host of rank `rank` may run: the
 * first host's at once; another's `rank` × stealDelayMs later, and later still by the time its
 * `extraBytes` (beyond the first host's copy) would take at `copyBytesPerMs`; among one host's
 * copies, those that copy least go first (BullMQ priority: lower first).
 */
export function copyTiming(rank: number, extraBytes: number, { stealDelayMs, copyBytesPerMs }: { stealDelayMs: number; copyBytesPerMs: number }): { priority?: number; delay?: number } {
  if (!rank) return {};
  return {
    // One step of priority per extra megabyte.
    priority: Math.min(rank + Math.floor(extraBytes / 1e6), maxPriority),
    delay: rank * stealDelayMs + Math.round(extraBytes / copyBytesPerMs),
  };
}
