import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { link, mkdir, open, readdir, rm, stat, statfs, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { BadRequest, Conflict, InsufficientStorage, NotFound } from '../errors.js';
import { config } from '../config.js';
import { youngGc } from '../gc.js';
import { StreamChecksum, type Checksum } from './checksum.js';

/** The longest data url accepted. */
export const maxDataUrlLength = 1024;

/**
 * Checks a data url: relative, `/`-separated, no `.`/`..` segments, no NUL, backslash, colon
 * or control characters, bounded length. Throws BadRequest naming what is wrong.
 */
export function validateDataUrl(url: unknown): string {
  if (typeof url !== 'string' || !url.length) throw new BadRequest('a data url must be a non-empty string');
  if (url.length > maxDataUrlLength) throw new BadRequest(`a data url is at most ${maxDataUrlLength} characters`);
  if (url.startsWith('/')) throw new BadRequest(`data url ${JSON.stringify(url)} must be relative`);
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f\\:*?[\]]/.test(url)) throw new BadRequest(`data url ${JSON.stringify(url)} has a forbidden character (control, \\, :, *, ?, [ or ])`);
  for (const segment of url.split('/')) {
    if (!segment || segment === '.' || segment === '..') throw new BadRequest(`data url ${JSON.stringify(url)} has an empty, '.' or '..' segment`);
  }
  return url;
}

/** The urls of the files under a data root (`<datadir>/data`), `/`-separated. */
export async function urlsUnder(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath ?? e.path, e.name).slice(root.length + 1));
}

/** A copy whose bytes fail the registry's checksum. */
export class CorruptData extends Error {}

export interface StoredFile {
  size: number;
  /** CRC-32, 8 hex digits. */
  crc32: string;
  /** The memory tier (not fsynced) or the disk. */
  tier: 'memory' | 'disk';
}

/**
 * Writes a stream to an open file, coalescing the socket's 64 kB chunks into one writev per
 * turn, and checksums each chunk on the way (CRC-32 costs about 0.2 ms per MB here).
 */
class FileSink extends Writable {
  size = 0;
  private syncedUpTo = 0;
  private scavengedAt = 0;
  /** The fdatasync running in the background, if one is: the file stays open until it ends. */
  backgroundSync?: Promise<void>;

  constructor(
    private readonly file: FileHandle,
    readonly checksum: StreamChecksum,
  ) {
    super({ highWaterMark: config.fileWriteBufferBytes });
  }

  _write(chunk: Buffer, _encoding: string, callback: (error?: Error | null) => void): void {
    this.writeAll([chunk], callback);
  }

  _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    this.writeAll(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  /** Resolves once everything written is on disk (fsync). */
  async sync(): Promise<void> {
    await this.backgroundSync;
    await this.file.sync();
  }

  /**
   * Starts writing back what is written so far (fdatasync on libuv's thread pool) while the
   * upload goes on: the disk then works alongside the socket, and the final fsync has little
   * left to do instead of the whole file (a 1 GB upload waited 0.65 s for it).
   */
  private syncSome(): void {
    if (this.backgroundSync || this.size - this.syncedUpTo < config.fileSyncEveryBytes) return;
    const upTo = this.size;
    this.backgroundSync = this.file.datasync().then(
      () => {
        this.syncedUpTo = upTo;
        this.backgroundSync = undefined;
      },
      // The final fsync reports a failing disk.
      () => (this.backgroundSync = undefined),
    );
  }

  private writeAll(buffers: Buffer[], callback: (error?: Error | null) => void): void {
    const bytes = buffers.reduce((sum, b) => sum + b.length, 0);
    for (const buffer of buffers) this.checksum.update(buffer);
    this.file
      .writev(buffers)
      .then(({ bytesWritten }) => {
        if (bytesWritten !== bytes) throw new Error(`short write: ${bytesWritten} of ${bytes} bytes`);
        this.size += bytes;
        this.syncSome();
        if (this.size - this.scavengedAt >= config.fileScavengeEveryBytes) {
          this.scavengedAt = this.size;
          youngGc();
        }
      })
      .then(
        () => callback(),
        (error: Error) => callback(error),
      );
  }
}

/** Where files of one tier live: the disk tier is fsynced before a save is acknowledged, the memory tier is not. */
interface Tier {
  root: string;
  tmpDir: string;
  durable: boolean;
}

/** tmpfs's `f_type`, as statfs reports it. */
const tmpfsMagic = 0x01021994;

export interface CatalogOptions {
  minFreeDiskBytes: number;
  /** `--memory-datadir`: every save goes to the memory tier there. */
  memoryDatadir?: string;
}

/**
 * Files under `<datadir>/data/<url>` (the disk tier) or `<memory dir>/data/<url>` (the memory
 * tier: `--memory-datadir`, else a folder of this node in /dev/shm). Writes stream to a
 * temporary file of their tier (size and CRC-32 computed on the way), are fsynced on the disk
 * tier, then linked into place, which fails if the url exists: no silent overwrite, and an
 * interrupted write leaves nothing behind. The memory tier is emptied when the node starts
 * and stops: its data is lost with its node, by design.
 */
export class Catalog {
  readonly root: string;
  private readonly disk: Tier;
  private readonly memory?: Tier;
  /** Urls this node holds in the memory tier. */
  private readonly inMemory = new Set<string>();
  private readonly minFreeDiskBytes: number;


  constructor(
    datadir: string,
    private readonly opts: CatalogOptions,
  ) {
    this.minFreeDiskBytes = opts.minFreeDiskBytes;
    this.disk = { root: join(datadir, 'data'), tmpDir: join(datadir, '.tmp'), durable: true };
    this.root = this.disk.root;
    const memoryDir = opts.memoryDatadir ?? (existsSync('/dev/shm') ? join('/dev/shm', `kitchensink-${createHash('sha1').update(resolve(datadir)).digest('hex').slice(0, 12)}`) : undefined);
    if (memoryDir) this.memory = { root: join(memoryDir, 'data'), tmpDir: join(memoryDir, '.tmp'), durable: false };
  }

  /** Prepares both tiers; resolves to a warning to log, if there is one. */
  async init(): Promise<string | undefined> {
    await mkdir(this.disk.root, { recursive: true });
    // Leftovers of writes a crash interrupted.
    await rm(this.disk.tmpDir, { recursive: true, force: true });
    await mkdir(this.disk.tmpDir, { recursive: true });
    // What the memory tier held before this start is gone by design, whatever is left of it.
    await this.emptyMemory();
    if (this.opts.memoryDatadir) {
      await this.memoryReady();
      if ((await statfs(this.opts.memoryDatadir)).type !== tmpfsMagic) {
        return `--memory-datadir ${this.opts.memoryDatadir} is not a tmpfs: its data is not fsynced, yet it is written to a disk`;
      }
    }
    return undefined;
  }

  /** Makes the memory tier's folders, on its first save (a node that never uses it leaves nothing in /dev/shm). */
  private async memoryReady(): Promise<void> {
    await mkdir(this.memory!.root, { recursive: true });
    await mkdir(this.memory!.tmpDir, { recursive: true });
  }

  /** Where the memory tier keeps its files, if this host has one. */
  get memoryRoot(): string | undefined {
    return this.memory?.root;
  }

  /** True when the url's copy here is in the memory tier. */
  inMemoryTier(url: string): boolean {
    return this.inMemory.has(url);
  }

  path(url: string): string {
    return join(this.inMemory.has(url) ? this.memory!.root : this.disk.root, validateDataUrl(url));
  }

  /** The tier a save goes to: memory when asked (or on a --memory-datadir node), else disk. */
  private tierFor(memory?: boolean): Tier {
    if (!(memory ?? this.opts.memoryDatadir !== undefined)) return this.disk;
    if (!this.memory) throw new InsufficientStorage('this host has no /dev/shm for the memory tier: start its node with --memory-datadir DIR on a tmpfs');
    return this.memory;
  }

  /** Deletes the memory tier's data; its folder in /dev/shm too, unless `--memory-datadir` named it. */
  private async emptyMemory(): Promise<void> {
    if (!this.memory) return;
    this.inMemory.clear();
    await rm(this.memory.root, { recursive: true, force: true });
    await rm(this.memory.tmpDir, { recursive: true, force: true });
    if (!this.opts.memoryDatadir) await rm(dirname(this.memory.root), { recursive: true, force: true });
  }

  async has(url: string): Promise<boolean> {
    try {
      return (await stat(this.path(url))).isFile();
    } catch {
      return false;
    }
  }

  async size(url: string): Promise<number> {
    const path = this.path(url);
    const found = await stat(path).catch(() => undefined);
    // A url that is a folder of other urls ('a' when 'a/b' exists) is not data.
    if (!found?.isFile()) throw new NotFound(`no data ${JSON.stringify(url)} on this host`);
    return found.size;
  }

  /**
   * Refuses new data when free disk is under `--min-free-disk` (or would be, given
   * `incomingBytes`); in the memory tier, when it has not room for `incomingBytes`.
   */
  async checkFreeDisk(incomingBytes = 0, tier: Tier = this.disk): Promise<void> {
    const fs = await statfs(tier.root);
    const free = fs.bavail * fs.bsize;
    const reserve = tier.durable ? this.minFreeDiskBytes : 0;
    if (free - incomingBytes < reserve) {
      throw new InsufficientStorage(tier.durable ? `only ${free} bytes free on this host, and --min-free-disk is ${this.minFreeDiskBytes}` : `only ${free} bytes free in this host's memory tier (${dirname(tier.root)}), ${incomingBytes} needed`);
    }
  }

  /**
   * Streams `source` into a new file at `url`. With `expected`, a mismatch discards it.
   * Never overwrites: an existing url is a Conflict.
   */
  async write(url: string, source: Readable, opts: { expected?: Checksum; declaredSize?: number; memory?: boolean } = {}): Promise<StoredFile> {
    validateDataUrl(url);
    const tier = this.tierFor(opts.memory);
    if (await this.has(url)) throw new Conflict(`data ${JSON.stringify(url)} exists; delete it first`);
    if (!tier.durable) await this.memoryReady();
    await this.checkFreeDisk(opts.declaredSize ?? 0, tier);
    const target = join(tier.root, url);
    const tmp = this.tempPath(tier);
    try {
      const { size, crc32 } = await this.receive(url, source, tmp, opts.expected, tier.durable);
      try {
        // The other tier must not hold the url either (a save racing this one).
        if (await this.has(url)) throw Object.assign(new Error('exists'), { code: 'EEXIST' });
        await mkdir(dirname(target), { recursive: true });
        await link(tmp, target);
        if (!tier.durable) this.inMemory.add(url);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        // EEXIST: the url, or a folder of that name ('a' when 'a/b' exists); ENOTDIR: 'a/b' when 'a' is data.
        if (code === 'EEXIST' || code === 'ENOTDIR') throw new Conflict(`data ${JSON.stringify(url)} exists, or clashes with data whose url is a prefix of it or starts with it`);
        throw error;
      }
      return { size, crc32, tier: tier.durable ? 'disk' : 'memory' };
    } finally {
      await unlink(tmp).catch(() => {});
    }
  }

  /**
   * Streams `source` into a private temporary file that is never registered: how a read-only
   * host holds another host's data for the length of one call. The caller deletes it.
   */
  async writeTemp(url: string, source: Readable, expected: Checksum): Promise<string> {
    const tmp = this.tempPath(this.disk);
    try {
      await this.receive(url, source, tmp, expected);
      return tmp;
    } catch (error) {
      await unlink(tmp).catch(() => {});
      throw error;
    }
  }

  /** Streams into `tmp`, checksumming on the way, fsyncs, and checks the checksum when one is expected. */
  private async receive(url: string, source: Readable, tmp: string, expected?: Checksum, durable = true): Promise<Omit<StoredFile, 'tier'>> {
    const file = await open(tmp, 'wx');
    const sink = new FileSink(file, new StreamChecksum(expected));
    try {
      await pipeline(source, sink);
      if (durable) await sink.sync();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOSPC') throw new InsufficientStorage(`no space left for data ${JSON.stringify(url)} on this host${durable ? '' : "'s memory tier"}`);
      throw error;
    } finally {
      await sink.backgroundSync;
      await file.close();
    }
    const mismatch = expected && sink.checksum.mismatch(expected);
    if (mismatch) throw new BadRequest(`data ${JSON.stringify(url)} arrived with ${mismatch}`);
    return { size: sink.size, crc32: sink.checksum.crc32 };
  }

  /**
   * Writes bytes `[start, end]` (inclusive) of the file to `destination`, then ends it. Eight
   * 1 MB buffers go round: one is read into again once the socket has sent it, so a send
   * allocates nothing per chunk (a read stream's fresh buffer per read kept V8's GC busy on
   * every core: 0.4 s of CPU per GB sent). Stops when the destination closes.
   */
  async send(url: string, start: number, end: number, destination: Writable, expected?: Checksum): Promise<void> {
    const file = await open(this.path(url), 'r');
    // A whole file is checked as it goes out; its last bytes stay here if it fails the check,
    // so the reader never gets the whole of a corrupt copy.
    const checksum = expected && new StreamChecksum(expected);
    const free = Array.from({ length: config.fileSendBuffers }, () => Buffer.allocUnsafeSlow(config.fileSendBufferBytes));
    let wake: (() => void) | undefined;
    let gone = destination.destroyed;
    const goneNow = () => {
      gone = true;
      wake?.();
    };
    destination.once('close', goneNow);
    try {
      for (let position = start; position <= end && !gone; ) {
        if (!free.length) await new Promise<void>((resolve) => (wake = resolve));
        const buffer = free.pop();
        if (gone || !buffer) break;
        const { bytesRead } = await file.read(buffer, 0, Math.min(buffer.length, end + 1 - position), position);
        if (!bytesRead) throw new Error(`data ${JSON.stringify(url)} is shorter than its size`);
        position += bytesRead;
        checksum?.update(buffer.subarray(0, bytesRead));
        const mismatch = checksum && position > end && checksum.mismatch(expected!);
        if (mismatch) throw new CorruptData(`data ${JSON.stringify(url)} on this host has ${mismatch}: its copy is corrupt and is not served`);
        destination.write(buffer.subarray(0, bytesRead), () => {
          free.push(buffer);
          const waiting = wake;
          wake = undefined;
          waiting?.();
        });
      }
      if (!gone) destination.end();
    } finally {
      destination.off('close', goneNow);
      await file.close();
    }
  }

  async delete(url: string): Promise<boolean> {
    try {
      await unlink(this.path(url));
      this.inMemory.delete(url);
      return true;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR' || code === 'EPERM') return false;
      throw error;
    }
  }

  /** Empties the memory tier: its data goes with the node. */
  async close(): Promise<void> {
    await this.emptyMemory();
  }

  private tempPath(tier: Tier): string {
    return join(tier.tmpDir, `${randomBytes(8).toString('hex')}.part`);
  }
}
