/** What routing needs to know of a data url. */
export interface RoutedData {
  size: number;
  holders: string[];
}

/**
 * Ranks hosts for a call by the bytes each would have to copy to run it: the sizes of the
 * call's data it does not hold. Ordered by (bytes, name); hosts at or over `thresholdBytes`
 * are left out, but never all of them: then the single cheapest host is kept.
 */
export function rankHosts(dataUrls: string[], data: Record<string, RoutedData>, hosts: string[], thresholdBytes: number): string[] {
  if (!hosts.length) return [];
  const urls = [...new Set(dataUrls)].filter((url) => data[url]);
  const scored = hosts.map((name) => ({
    name,
    bytesToCopy: urls.reduce((sum, url) => sum + (data[url].holders.includes(name) ? 0 : data[url].size), 0),
  }));
  scored.sort((a, b) => a.bytesToCopy - b.bytesToCopy || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const kept = scored.filter((s) => s.bytesToCopy < thresholdBytes);
  return (kept.length ? kept : scored.slice(0, 1)).map((s) => s.name);
}

/**
 * Ranks hosts for each call of a batch in turn (`rankHosts`), counting the copies the batch's
 * earlier calls will make: once a call is routed, its first host will hold the call's data, so
 * later calls on the same data go where it gathers instead of copying it again elsewhere.
 * `hosts[k]` are the hosts that may run call k; a call without data gets no ranking ([]).
 */
export function routeCalls(urlsPerCall: string[][], data: Record<string, RoutedData>, hosts: string[][], thresholdBytes: number): string[][] {
  const holders = new Map(Object.entries(data).map(([url, info]) => [url, new Set(info.holders)]));
  const view: Record<string, RoutedData> = {};
  return urlsPerCall.map((urls, k) => {
    if (!urls.length) return [];
    for (const url of urls) if (data[url]) view[url] = { size: data[url].size, holders: [...holders.get(url)!] };
    const route = rankHosts(urls, view, hosts[k], thresholdBytes);
    if (route.length) for (const url of urls) holders.get(url)?.add(route[0]);
    return route;
  });
}
