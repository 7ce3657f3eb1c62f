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
