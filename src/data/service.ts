import type { Readable, Writable } from 'node:stream';
import { BadRequest, Forbidden, NotFound, RangeNotSatisfiable } from '../errors.js';
import { dataFormats, type HostInfo } from '../types.js';
import { validateDataUrl, type Catalog } from './catalog.js';
import type { DataInfo, DataRegistry } from './registry.js';
import type { DataMover } from './transfer.js';
import { checksumOf, type Checksum } from './checksum.js';


export interface DataServiceContext {
  catalog: Catalog;
  registry: DataRegistry;
  mover: DataMover;
  nodeName: string;
  readOnly: boolean;
  liveHosts(): Promise<HostInfo[]>;
}

export interface DataRead {
  /** Size of the whole file. */
  size: number;
  /** The byte range asked for, when the request asked for one. */
  range?: { start: number; end: number };
  /** The registry's checksum of the file; a whole file is checked against it as it is sent. */
  checksum?: Checksum;
  /** Writes the file, or the range, to `destination` and ends it. */
  send(destination: Writable): Promise<void>;
}

/** Parses one `bytes=` range of a file of `size` bytes; throws 416 when it cannot be served. */
export function parseRange(header: string, size: number): { start: number; end: number } {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (!m[1] && !m[2])) throw new RangeNotSatisfiable(`only a single 'bytes=start-end' range is served, not ${JSON.stringify(header.slice(0, 100))}`);
  let start: number;
  let end: number;
  if (!m[1]) {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
  }
  if (start > end || start >= size) throw new RangeNotSatisfiable(`range ${header} is outside the ${size} bytes of the file`);
  return { start, end };
}

/** The data plane behind `/api/v1/data`: store, read, delete, describe, copy. */
export class DataService {
  constructor(private readonly ctx: DataServiceContext) {}

  /** Stores an upload under `url` and registers this host's copy. */
  async put(url: string, source: Readable, fmt: string, declaredSize?: number, memory?: boolean): Promise<{ url: string; size: number; crc32: string; fmt: string; tier: 'memory' | 'disk' }> {
    validateDataUrl(url);
    if (!(dataFormats as readonly string[]).includes(fmt)) throw new BadRequest(`fmt must be one of ${dataFormats.join(', ')}`);
    if (this.ctx.readOnly) throw new Forbidden('this node was started with --read-only: it stores no data');
    const stored = await this.ctx.catalog.write(url, source, { declaredSize, memory });
    try {
      await this.ctx.registry.register(url, this.ctx.nodeName, { ...stored, fmt });
    } catch (error) {
      await this.ctx.catalog.delete(url);
      throw error;
    }
    return { url, ...stored, fmt, tier: this.ctx.catalog.inMemoryTier(url) ? 'memory' : 'disk' };
  }

  /** Opens this host's copy, whole or a byte range of it. */
  async read(url: string, rangeHeader?: string): Promise<DataRead> {
    const size = await this.ctx.catalog.size(validateDataUrl(url));
    const range = rangeHeader ? parseRange(rangeHeader, size) : undefined;
    const { start, end } = range ?? { start: 0, end: size - 1 };
    const entry = (await this.ctx.registry.info([url], new Set()))[url];
    if (!entry) throw new NotFound(`data ${JSON.stringify(url)} is on this host but not in the registry: it is not served`);
    const checksum = checksumOf(entry);
    return { size, range, checksum, send: (destination) => this.ctx.catalog.send(url, start, end, destination, range ? undefined : checksum) };
  }

  /** Deletes this host's copy and forgets it; resolves to how many holders remain. */
  async remove(url: string): Promise<{ deleted: boolean; holdersLeft: number }> {
    validateDataUrl(url);
    const deleted = await this.ctx.catalog.delete(url);
    const holdersLeft = await this.ctx.registry.unregister(url, this.ctx.nodeName);
    if (!deleted && holdersLeft === 0) throw new NotFound(`no data ${JSON.stringify(url)}`);
    return { deleted, holdersLeft };
  }

  /** Size, checksum, format and live holders of each url, and the live hosts to route among. */
  async info(urls: string[]): Promise<{ data: Record<string, DataInfo>; hosts: HostInfo[] }> {
    urls.forEach(validateDataUrl);
    const hosts = await this.ctx.liveHosts();
    return { data: await this.ctx.registry.info(urls, new Set(hosts.map((h) => h.name))), hosts };
  }

  /** Urls matching a glob. */
  search(glob: string): Promise<string[]> {
    // eslint-disable-next-line no-control-regex
    if (!glob || glob.length > 1024 || /[\x00-\x1f\\:]/.test(glob)) throw new BadRequest('glob must be a pattern of up to 1024 characters, without control characters, \\ or :');
    return this.ctx.registry.search(glob);
  }

  /** Copies `url` to this host from a live holder. */
  async replicate(url: string): Promise<{ url: string; host: string }> {
    validateDataUrl(url);
    if (this.ctx.readOnly) throw new Forbidden('this node was started with --read-only: it stores no data');
    await this.ctx.mover.replicate(url);
    return { url, host: this.ctx.nodeName };
  }
}
