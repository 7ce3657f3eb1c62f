import { randomBytes } from 'node:crypto';
import { link, mkdir, open, rm, stat, statfs, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { BadRequest, Conflict, InsufficientStorage, NotFound } from '../errors.js';
import { config } from '../config.js';
import { youngGc } from '../gc.js';
import { Md5Hasher } from './md5-hasher.js';

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

export interface StoredFile {
  size: number;
  md5: string;
}

/**
 * Fills `into` with the next bytes of an incoming file, all of it unless the file ends first;
 * resolves to how many bytes came (0: the file has ended).
 */
export type Fill = (into: Buffer) => Promise<number>;

/**
 * A stream's bytes as a Fill: its chunks (64 kB per socket read for an upload) are copied into
 * the buffer being filled as they come, and the stream is paused while no fill waits. The
 * chunks die at once, and V8 is made to collect them young (see youngGc).
 */
export function fillFrom(stream: Readable): Fill {
  let current: { into: Buffer; at: number; resolve(bytes: number): void; reject(error: Error): void } | undefined;
  /** What is left of a chunk that came while no fill waited, or that overflowed the last one. */
  let held: Buffer | undefined;
  let ended = false;
  let failure: Error | undefined;
  let sinceScavenge = 0;

  const finish = () => {
    const done = current!;
    current = undefined;
    done.resolve(done.at);
  };
  /** Copies what fits of `chunk` into the waiting fill; keeps the rest and pauses. */
  const take = (chunk: Buffer) => {
    let rest = chunk;
    if (current) {
      const copied = chunk.copy(current.into, current.at);
      current.at += copied;
      rest = chunk.subarray(copied);
      if (current.at === current.into.length) finish();
    }
    if (rest.length) {
      held = held ? Buffer.concat([held, rest]) : rest;
      stream.pause();
    }
  };
  const fail = (error: Error) => {
    failure ??= error;
    current?.reject(failure);
    current = undefined;
  };

  stream.on('data', (chunk: Buffer) => {
    sinceScavenge += chunk.length;
    if (sinceScavenge >= config.fileScavengeEveryBytes) {
      sinceScavenge = 0;
      youngGc();
    }
    take(chunk);
  });
  stream.pause();
  stream.on('end', () => {
    ended = true;
    if (current) finish();
  });
  stream.on('error', fail);
  stream.on('close', () => {
    if (!ended) fail(new Error('the upload was cut off before its end'));
  });

  return (into) =>
    new Promise<number>((resolve, reject) => {
      if (failure) return reject(failure);
      current = { into, at: 0, resolve, reject };
      if (held) {
        const chunk = held;
        held = undefined;
        take(chunk);
      }
      if (!current || held) return;
      if (ended) return finish();
      stream.resume();
    });
}

/** Writes `bytes` of `buffer` at `position`; a short write (a full disk) is an error. */
async function writeAt(file: FileHandle, buffer: Buffer, bytes: number, position: number): Promise<void> {
  const { bytesWritten } = await file.write(buffer, 0, bytes, position);
  if (bytesWritten !== bytes) throw new Error(`short write: ${bytesWritten} of ${bytes} bytes`);
}

/**
 * Files under `<datadir>/data/<url>`. Writes stream to a temporary file (size and md5 computed
 * on the way), are fsynced, then linked into place, which fails if the url exists: no silent
 * overwrite, and an interrupted write leaves nothing behind.
 */
export class Catalog {
  readonly root: string;
  private readonly tmpDir: string;

  private readonly hasher = new Md5Hasher();

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
   * Receives a new file at `url` from `fill`. With `expectedMd5`, a mismatch discards it.
   * Never overwrites: an existing url is a Conflict.
   */
  async write(url: string, fill: Fill, opts: { expectedMd5?: string; declaredSize?: number } = {}): Promise<StoredFile> {
    const target = this.path(url);
    if (await this.has(url)) throw new Conflict(`data ${JSON.stringify(url)} exists; delete it first`);
    await this.checkFreeDisk(opts.declaredSize ?? 0);
    const tmp = this.tempPath();
    try {
      const { size, md5 } = await this.receive(url, fill, tmp, opts.expectedMd5);
      try {
        await mkdir(dirname(target), { recursive: true });
        await link(tmp, target);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        // EEXIST: the url, or a folder of that name ('a' when 'a/b' exists); ENOTDIR: 'a/b' when 'a' is data.
        if (code === 'EEXIST' || code === 'ENOTDIR') throw new Conflict(`data ${JSON.stringify(url)} exists, or clashes with data whose url is a prefix of it or starts with it`);
        throw error;
      }
      return { size, md5 };
    } finally {
      await unlink(tmp).catch(() => {});
    }
  }

  /**
   * Receives from `fill` a private temporary file that is never registered: how a read-only
   * host holds another host's data for the length of one call. The caller deletes it.
   */
  async writeTemp(url: string, fill: Fill, expectedMd5: string): Promise<string> {
    const tmp = this.tempPath();
    try {
      await this.receive(url, fill, tmp, expectedMd5);
      return tmp;
    } catch (error) {
      await unlink(tmp).catch(() => {});
      throw error;
    }
  }

  /**
   * Receives into `tmp` through the md5 session's ring: each slot, once filled, is written and
   * hashed at the same time, and refilled once both are done, so md5 never waits for the disk.
   * An fdatasync runs in the background every `fileSyncEveryBytes`, so the final one has
   * little left to do (a 1 GB upload waited 0.65 s for it otherwise). Checks the md5 when one
   * is expected.
   */
  private async receive(url: string, fill: Fill, tmp: string, expectedMd5?: string): Promise<StoredFile> {
    const file = await open(tmp, 'wx');
    const md5Session = this.hasher.session();
    const { slots } = md5Session;
    const busy: Promise<void>[] = slots.map(() => Promise.resolve());
    let size = 0;
    let syncedUpTo = 0;
    let backgroundSync: Promise<void> | undefined;
    try {
      for (let k = 0; ; k = (k + 1) % slots.length) {
        await busy[k];
        const bytes = await fill(slots[k]);
        if (!bytes) break;
        const position = size;
        size += bytes;
        busy[k] = Promise.all([writeAt(file, slots[k], bytes, position), md5Session.hash(k, bytes)]).then(() => {});
        // Awaited when the slot comes round again; a failure until then is not unhandled.
        busy[k].catch(() => {});
        if (!backgroundSync && size - syncedUpTo >= config.fileSyncEveryBytes) {
          const upTo = size;
          backgroundSync = file.datasync().then(
            () => void ((syncedUpTo = upTo), (backgroundSync = undefined)),
            // The final fsync reports a failing disk.
            () => void (backgroundSync = undefined),
          );
        }
        if (bytes < slots[k].length) break;
      }
      await Promise.all(busy);
      await backgroundSync;
      await file.sync();
    } catch (error) {
      md5Session.abandon();
      throw error;
    } finally {
      await Promise.allSettled(busy);
      await backgroundSync;
      await file.close();
    }
    const md5 = await md5Session.digest(size);
    if (expectedMd5 && expectedMd5 !== md5) throw new BadRequest(`data ${JSON.stringify(url)} arrived with md5 ${md5}, expected ${expectedMd5}`);
    return { size, md5 };
  }

  /**
   * Writes bytes `[start, end]` (inclusive) of the file to `destination`, then ends it. Eight
   * 1 MB buffers go round: one is read into again once the socket has sent it, so a send
   * allocates nothing per chunk (a read stream's fresh buffer per read kept V8's GC busy on
   * every core: 0.4 s of CPU per GB sent). Stops when the destination closes.
   */
  async send(url: string, start: number, end: number, destination: Writable): Promise<void> {
    const file = await open(this.path(url), 'r');
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

  async close(): Promise<void> {
    await this.hasher.close();
  }

  private tempPath(): string {
    return join(this.tmpDir, `${randomBytes(8).toString('hex')}.part`);
  }
}
