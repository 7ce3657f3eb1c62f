import { checksumOf, describeChecksum, type Checksum } from './checksum.js';
import { unlink } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { HostInfo } from '../types.js';
import { config } from '../config.js';
import { NotFound } from '../errors.js';
import { bearerHeader } from '../keys.js';
import { dataRoute } from '../node-url.js';
import { answerFailure, bodyStream, socketGet } from '../socket-get.js';
import type { Catalog } from './catalog.js';
import type { DataRegistry } from './registry.js';

export interface TransferContext {
  catalog: Catalog;
  registry: DataRegistry;
  nodeName: string;
  /** A read-only host fetches data for one call into a private file and registers nothing. */
  readOnly: boolean;
  /** Bearer token for other nodes' data routes. */
  token?: string;
  liveHosts(): Promise<HostInfo[]>;
  log(message: string): void;
  /** Told the size of every copy received from a holder. */
  onReceived?(bytes: number): void;
}

/** A local file a call can read, and what to do once the call is over. */
export interface LocalData {
  path: string;
  fmt: string;
  /** The registry's checksum (a pre-CRC entry's md5): Python keeps decoded objects by url and this. */
  checksum: string;
  release(): Promise<void>;
}

/**
 * Makes data local before a call runs: streams it from a live holder, checks its CRC-32 (and tries
 * another holder on a mismatch or a dead holder), stores it and registers the new copy.
 * Concurrent calls needing the same missing url share one transfer.
 */
export class DataMover {
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(private readonly ctx: TransferContext) {}

  async ensureLocal(url: string): Promise<LocalData> {
    const { catalog, registry } = this.ctx;
    const hosts = await this.ctx.liveHosts();
    const info = (await registry.info([url], new Set(hosts.map((h) => h.name))))[url];
    if (!info) throw new NotFound(`data ${JSON.stringify(url)} is not registered (never saved, or deleted)`);
    const done = async () => {};
    const checksum = info.crc32 ?? info.md5!;
    if (await catalog.has(url)) return { path: catalog.path(url), fmt: info.fmt, checksum, release: done };
    const expected = checksumOf(info);
    if (this.ctx.readOnly) {
      const path = await this.fromHolders(url, expected, info.holders, hosts, (source) => catalog.writeTemp(url, source, expected));
      this.ctx.onReceived?.(info.size);
      return { path, fmt: info.fmt, checksum, release: () => unlink(path).catch(() => {}) };
    }
    let transfer = this.inFlight.get(url);
    if (!transfer) {
      // A pre-CRC entry is checked against its md5 here, and registering the copy gives it its CRC.
      transfer = this.fromHolders(url, expected, info.holders, hosts, async (source) => {
        const stored = await catalog.write(url, source, { expected, declaredSize: info.size });
        await registry.register(url, this.ctx.nodeName, { ...stored, fmt: info.fmt });
        this.ctx.onReceived?.(stored.size);
      }).finally(() => this.inFlight.delete(url));
      this.inFlight.set(url, transfer);
    }
    await transfer;
    return { path: catalog.path(url), fmt: info.fmt, checksum, release: done };
  }

  /** Copies a url here from a live holder (for `POST data/<url>/replicate` and `pipeline()`). */
  async replicate(url: string): Promise<void> {
    await (await this.ensureLocal(url)).release();
  }

  private async fromHolders<T>(
    url: string,
    expected: Checksum,
    holders: string[],
    hosts: HostInfo[],
    store: (source: Readable) => Promise<T>,
  ): Promise<T> {
    const urls = new Map(hosts.map((h) => [h.name, h.url]));
    const candidates = holders.filter((h) => h !== this.ctx.nodeName && urls.has(h));
    if (!candidates.length) throw new NotFound(`data ${JSON.stringify(url)} (${describeChecksum(expected)}) is held by no live host`);
    // Spread the readers over the holders.
    const start = Math.floor(Math.random() * candidates.length);
    const failures: string[] = [];
    for (let k = 0; k < candidates.length; k++) {
      const holder = candidates[(start + k) % candidates.length];
      let source: Readable | undefined;
      try {
        source = await this.open(dataRoute(urls.get(holder)!, url));
        return await store(source);
      } catch (error) {
        source?.destroy();
        failures.push(`${holder}: ${(error as Error).message}`);
        this.ctx.log(`fetching ${url} from ${holder} failed: ${(error as Error).message}`);
      }
    }
    throw new NotFound(`data ${JSON.stringify(url)} could not be fetched from any holder (${failures.join('; ')})`);
  }

  /**
   * GETs a holder's copy; resolves to the body once the holder answered 200. The body is read
   * 1 MB at a time straight from the socket (`socketGet`): node:http's 64 kB chunks, 16,000 per
   * gigabyte, each allocated, parsed and passed along, cost the reader more CPU than the copy.
   */
  private async open(target: string): Promise<Readable> {
    const answer = await socketGet(new URL(target), bearerHeader(this.ctx.token), config.transferIdleMs);
    if (answer.status === 200) return bodyStream(answer, config.transferChunkBytes);
    throw await answerFailure(answer, target);
  }
}
