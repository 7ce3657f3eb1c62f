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
  const scored = bytesPerHost(dataUrls, holdingsOf(data), hosts).sort((a, b) => a.bytesToCopy - b.bytesToCopy || byName(a, b));
  const kept = scored.filter((s) => s.bytesToCopy < thresholdBytes);
  return kept.length ? kept : scored.slice(0, 1);
}

/** Each known url's size and holders, as sets routing may add to. */
type Holdings = Map<string, { size: number; holders: Set<string> }>;

const holdingsOf = (data: Record<string, RoutedData>): Holdings => new Map(Object.entries(data).map(([url, { size, holders }]) => [url, { size, holders: new Set(holders) }]));

/** Every host with the bytes it would copy for a call, in the order of `hosts`. */
function bytesPerHost(dataUrls: string[], holdings: Holdings, hosts: string[]): RankedHost[] {
  const known = [...new Set(dataUrls)].flatMap((url) => holdings.get(url) ?? []);
  return hosts.map((name) => {
    let bytesToCopy = 0;
    let copies = 0;
    for (const datum of known) {
      if (datum.holders.has(name)) continue;
      bytesToCopy += datum.size;
      copies++;
    }
    return { name, bytesToCopy, copies };
  });
}

/** The first `count` of `items` by `compare`, in order, without sorting the rest. */
function firstOf<T>(items: T[], count: number, compare: (a: T, b: T) => number): T[] {
  if (count >= items.length) return items.sort(compare);
  const best: T[] = [];
  for (const item of items) {
    if (best.length === count && compare(item, best[count - 1]) >= 0) continue;
    let at = best.length;
    while (at > 0 && compare(item, best[at - 1]) < 0) at--;
    best.splice(at, 0, item);
    if (best.length > count) best.pop();
  }
  return best;
}

const byName = (a: { name: string }, b: { name: string }): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

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
 * Ranks hosts for each call of a batch, in two passes.
 *
 * First the calls some host could run copying less than `thresholdBytes`, in turn, as a list
 * scheduler would: by when each host could start the call (its calls routed so far in this
 * batch, their copies and runs at `costs`, then this call's copies), ties by bytes, then name;
 * without costs, by bytes. Hosts at or over the threshold are left out. Each call counts the
 * copies the batch's earlier calls will make: once a call is routed, its first host will hold
 * the call's data, so later calls on the same data go where it gathers instead of copying it
 * again, unless that host is so far behind that copying elsewhere starts sooner (Dask's worker
 * objective).
 *
 * Then the calls every host would copy the threshold or more for. Copying that much is what
 * the threshold says is worse than waiting, so these go for the fewest bytes, not the soonest
 * start: calls that share data (directly or through other such calls) form a group, and each
 * call goes to the host its group's data would gather on at the least cost, given what the
 * batch has gathered so far; a group is then copied to one host once instead of to each host
 * that holds one of its data. Their route is that host alone.
 *
 * `hosts[k]` are the hosts that may run call k; a call without data gets no ranking ([]). A
 * route holds at most `hostsPerRoute` hosts.
 */
export function routeCalls(
  urlsPerCall: string[][],
  data: Record<string, RoutedData>,
  hosts: string[][],
  thresholdBytes: number,
  { bytesPerMs, copyMs, callMs }: RoutingCosts = { bytesPerMs: Infinity, copyMs: 0, callMs: 0 },
  hostsPerRoute = Infinity,
): RankedHost[][] {
  const holdings = holdingsOf(data);
  const busyMs = new Map<string, number>();
  const startMs = (h: RankedHost) => (busyMs.get(h.name) ?? 0) + h.copies * copyMs + h.bytesToCopy / bytesPerMs;
  /** The groups of data the calls over the threshold read together, once those calls are known. */
  let groups: DataGroups | undefined;
  /** Per group and host, the bytes of the group's data the host does not hold yet. */
  const leftToGather = new Map<string, Map<string, number>>();
  const routeTo = (k: number, route: RankedHost[]) => {
    const first = route[0];
    busyMs.set(first.name, startMs(first) + callMs);
    for (const url of urlsPerCall[k]) {
      const datum = holdings.get(url);
      if (!datum || datum.holders.has(first.name)) continue;
      datum.holders.add(first.name);
      const left = groups && leftToGather.get(groups.rootOf(url));
      if (left?.has(first.name)) left.set(first.name, left.get(first.name)! - datum.size);
    }
    return route;
  };
  const routes: RankedHost[][] = urlsPerCall.map(() => []);
  /** Routes call k by when each host could start it, if any host copies less than the threshold. */
  const spread = (k: number): boolean => {
    const eligible = bytesPerHost(urlsPerCall[k], holdings, hosts[k]).flatMap((h) => (h.bytesToCopy < thresholdBytes ? [{ host: h, start: startMs(h) }] : []));
    if (!eligible.length) return false;
    const first = firstOf(eligible, hostsPerRoute, (a, b) => a.start - b.start || a.host.bytesToCopy - b.host.bytesToCopy || byName(a.host, b.host));
    routes[k] = routeTo(k, first.map((h) => h.host));
    return true;
  };
  const overThreshold = urlsPerCall.flatMap((urls, k) => (urls.length && hosts[k].length && !spread(k) ? [k] : []));
  groups = dataGroups(overThreshold.map((k) => urlsPerCall[k].filter((url) => holdings.has(url))));
  const gatherBytes = (group: string, host: string): number => {
    let left = leftToGather.get(group);
    if (!left) leftToGather.set(group, (left = new Map()));
    if (!left.has(host)) left.set(host, groups!.members(group).reduce((sum, url) => sum + (holdings.get(url)!.holders.has(host) ? 0 : holdings.get(url)!.size), 0));
    return left.get(host)!;
  };
  for (const k of overThreshold) {
    // The copies planned since may have brought a host under the threshold.
    if (spread(k)) continue;
    const known = urlsPerCall[k].find((url) => holdings.has(url));
    const group = known && groups.rootOf(known);
    const [{ name: cheapest }] = firstOf(
      hosts[k].map((name) => ({ name, gather: group ? gatherBytes(group, name) : 0 })),
      1,
      (a, b) => a.gather - b.gather || byName(a, b),
    );
    routes[k] = routeTo(k, bytesPerHost(urlsPerCall[k], holdings, [cheapest]));
  }
  return routes;
}

/** Urls read together: a url's group holds every url it is read with, directly or through others. */
interface DataGroups {
  /** The url that names the group of `url`. */
  rootOf(url: string): string;
  members(root: string): string[];
}

function dataGroups(urlSets: string[][]): DataGroups {
  const parent = new Map<string, string>();
  const rootOf = (url: string): string => {
    const up = parent.get(url) ?? url;
    if (up === url) return url;
    const top = rootOf(up);
    parent.set(url, top);
    return top;
  };
  for (const urls of urlSets) for (const url of urls) parent.set(rootOf(url), rootOf(urls[0]));
  const members = new Map<string, string[]>();
  for (const url of parent.keys()) {
    const top = rootOf(url);
    if (!members.has(top)) members.set(top, []);
    members.get(top)!.push(url);
  }
  return { rootOf, members: (root) => members.get(root) ?? [root] };
}

/**
 * The hosts a node queues a routed call on: the route's live hosts, each once, in the route's
 * order, at most `maxHosts` of them (whoever made the route), with the bytes each would copy
 * beyond what the first copies.
 */
export function liveRoute(route: string[], routeBytes: number[] | undefined, live: Set<string>, maxHosts: number): { name: string; extraBytes: number }[] {
  const kept: { name: string; bytesToCopy: number }[] = [];
  for (const [k, name] of route.entries()) {
    if (kept.length === maxHosts) break;
    if (live.has(name) && !kept.some((h) => h.name === name)) kept.push({ name, bytesToCopy: routeBytes?.[k] ?? 0 });
  }
  return kept.map(({ name, bytesToCopy }) => ({ name, extraBytes: Math.max(0, bytesToCopy - kept[0].bytesToCopy) }));
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
