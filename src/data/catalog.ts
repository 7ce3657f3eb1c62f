import { randomBytes } from 'node:crypto';
import { link, mkdir, open, rm, stat, statfs, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
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

/** A copy whose bytes fail the registry's checksum. */
export class CorruptData extends Error {}

export interface StoredFile {
  size: number;
  /** CRC-32, 8 hex digits. */
  crc32: string;
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

/**
 * Files under `<datadir>/data/<url>`. Writes stream to a temporary file (size and CRC-32 computed
 * on the way), are fsynced, then linked into place, which fails if the url exists: no silent
 * overwrite, and an interrupted write leaves nothing behind.
 */
export class Catalog {
  readonly root: string;
  private readonly tmpDir: string;


  constructor(
    datadir: string,
    private readonly minFreeDiskBytes: number,
  ) {
    this.root = join(datadir, 'data');
    this.tmpDir = join(datadir, '.tmp');
  }

  async init(): Promise<void> {
    await mkdir(this.root, { recursive: true });
    // Leftovers of writes a crash interrupted.
    await rm(this.tmpDir, { recursive: true, force: true });
    await mkdir(this.tmpDir, { recursive: true });
  }

  path(url: string): string {
    return join(this.root, validateDataUrl(url));
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

  /** Refuses new data when free disk is under `--min-free-disk` (or would be, given `incomingBytes`). */
  async checkFreeDisk(incomingBytes = 0): Promise<void> {
    const fs = await statfs(this.root);
    const free = fs.bavail * fs.bsize;
    if (free - incomingBytes < this.minFreeDiskBytes) {
      throw new InsufficientStorage(`only ${free} bytes free on this host, and --min-free-disk is ${this.minFreeDiskBytes}`);
    }
  }

  /**
   * Streams `source` into a new file at `url`. With `expected`, a mismatch discards it.
   * Never overwrites: an existing url is a Conflict.
   */
  async write(url: string, source: Readable, opts: { expected?: Checksum; declaredSize?: number } = {}): Promise<StoredFile> {
    const target = this.path(url);
    if (await this.has(url)) throw new Conflict(`data ${JSON.stringify(url)} exists; delete it first`);
    await this.checkFreeDisk(opts.declaredSize ?? 0);
    const tmp = this.tempPath();
    try {
      const { size, crc32 } = await this.receive(url, source, tmp, opts.expected);
      try {
        await mkdir(dirname(target), { recursive: true });
        await link(tmp, target);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        // EEXIST: the url, or a folder of that name ('a' when 'a/b' exists); ENOTDIR: 'a/b' when 'a' is data.
        if (code === 'EEXIST' || code === 'ENOTDIR') throw new Conflict(`data ${JSON.stringify(url)} exists, or clashes with data whose url is a prefix of it or starts with it`);
        throw error;
      }
      return { size, crc32 };
    } finally {
      await unlink(tmp).catch(() => {});
    }
  }

  /**
   * Streams `source` into a private temporary file that is never registered: how a read-only
   * host holds another host's data for the length of one call. The caller deletes it.
   */
  async writeTemp(url: string, source: Readable, expected: Checksum): Promise<string> {
    const tmp = this.tempPath();
    try {
      await this.receive(url, source, tmp, expected);
      return tmp;
    } catch (error) {
      await unlink(tmp).catch(() => {});
      throw error;
    }
  }

  /** Streams into `tmp`, checksumming on the way, fsyncs, and checks the checksum when one is expected. */
  private async receive(url: string, source: Readable, tmp: string, expected?: Checksum): Promise<StoredFile> {
    const file = await open(tmp, 'wx');
    const sink = new FileSink(file, new StreamChecksum(expected));
    try {
      await pipeline(source, sink);
      await sink.sync();
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
      return true;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR' || code === 'EPERM') return false;
      throw error;
    }
  }

  async close(): Promise<void> {}

  private tempPath(): string {
    return join(this.tmpDir, `${randomBytes(8).toString('hex')}.part`);
  }
}
