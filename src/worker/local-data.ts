import type { LocalData } from '../data/transfer.js';
import type { CallData, RunOutcome } from './executor.js';

/** What a worker needs of the data plane: a url made local for the length of a call. */
export interface DataSource {
  ensureLocal(url: string): Promise<LocalData>;
}

/**
 * Makes every data url local (streamed from a holder when needed) for the length of `run`.
 * Data that cannot be had fails the call as `rejected`, naming the url, without running it.
 */
export async function withLocalData(source: DataSource, urls: string[], run: (data: CallData) => Promise<RunOutcome>): Promise<RunOutcome> {
  const held: LocalData[] = [];
  try {
    const data: CallData = {};
    for (const url of new Set(urls)) {
      try {
        const local = await source.ensureLocal(url);
        held.push(local);
        data[url] = [local.path, local.fmt, local.checksum];
      } catch (error) {
        return { ok: false, failure: { kind: 'rejected', message: `cannot make data ${JSON.stringify(url)} local: ${(error as Error).message}` } };
      }
    }
    return await run(data);
  } finally {
    await Promise.all(held.map((h) => h.release()));
  }
}
