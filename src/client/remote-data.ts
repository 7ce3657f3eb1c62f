import { Readable } from 'node:stream';
import { fromNpy, NDArray, ndarrayWire, npyHeader, type TypedArray } from '../ndarray.js';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import got from 'got';
import { byteLengthOf, decode, encode, registerRemoteDataClass } from '../codec.js';
import { answerError, NodeRequestError } from '../errors.js';
import { dataRoute, sameNode } from '../node-url.js';
import type { DataFormat, HostInfo } from '../types.js';
import type { Client } from './client.js';


/**
 * Size, CRC-32 (8 hex digits), format and live holders of a data url (`Client.dataInfo`). An
 * entry saved before kitchensink used CRCs shows its `md5` instead until its next copy.
 */
export interface DataInfo {
  size: number;
  crc32?: string;
  md5?: string;
  fmt: DataFormat;
  holders: string[];
  /** The holders that keep it in their memory tier (the others keep it on disk). */
  tiers?: Record<string, 'memory'>;
}

export interface RemoteDataSource {
  /** A value, stored as msgpack (or `fmt`). */
  obj?: unknown;
  /** Bytes, stored as they are. */
  raw?: Uint8Array;
  /** A local file, streamed when saved. */
  localPath?: string;
  /** Data already on the cluster. */
  dataUrl?: string;
  fmt?: DataFormat;
  /** The client to use; default: the one `setupClient` set. */
  client?: Client;
}

export interface SaveOptions {
  /** The data url; default `prefix` + a random name. */
  url?: string;
  prefix?: string;
  /** Store it on this host; default the node the client talks to. */
  host?: string;
  /**
   * Keep it in the host's memory tier (tmpfs): not fsynced before the save is acknowledged,
   * and lost when that node stops or restarts. Default: the host's own tier (disk, unless it
   * was started with `--memory-datadir`).
   */
  memory?: boolean;
}

let resolveClient: () => Client = () => {
  throw new Error('no default client: call setupClient(url) first');
};
/** Set by the client module: where RemoteData without `{client}` finds one. */
export function setDefaultClientResolver(resolver: () => Client): void {
  resolveClient = resolver;
}

/** The client decoding a batch's results, so the pointers it finds are bound to it. */
let decodingClient: Client | undefined;
export function decodeWith<T>(client: Client, bytes: Uint8Array): T {
  decodingClient = client;
  try {
    return decode<T>(bytes);
  } finally {
    decodingClient = undefined;
  }
}

/**
 * A pointer to data kept on the cluster, or local data to be saved there. Passed as a call
 * argument, it arrives in Python as `kitchensink.RemoteData` with its file already local, and
 * the call is routed to the host that must copy the fewest bytes.
 */
/** An NDArray, or a TypedArray that is not bytes: saved as `fmt: 'ndarray'`. */
function isArray(value: unknown): value is NDArray | TypedArray {
  return value instanceof NDArray || (ArrayBuffer.isView(value) && !(value instanceof Uint8Array) && !(value instanceof DataView));
}

export class RemoteData {
  dataUrl?: string;
  readonly fmt: DataFormat;
  private value?: unknown;
  private bytes?: Uint8Array;
  private readonly path?: string;
  private readonly boundClient?: Client;

  constructor(source: RemoteDataSource) {
    const given = ['obj', 'raw', 'localPath', 'dataUrl'].filter((k) => source[k as keyof RemoteDataSource] !== undefined);
    if (given.length !== 1) throw new TypeError('RemoteData takes exactly one of {obj}, {raw}, {localPath}, {dataUrl}');
    this.dataUrl = source.dataUrl;
    this.value = source.obj;
    this.bytes = source.raw;
    this.path = source.localPath;
    this.fmt = source.fmt ?? (source.obj === undefined ? 'raw' : isArray(source.obj) ? 'ndarray' : 'msgpack');
    this.boundClient = source.client;
  }

  get client(): Client {
    return this.boundClient ?? resolveClient();
  }

  /** True once the data is on the cluster. */
  get saved(): boolean {
    return this.dataUrl !== undefined;
  }

  /** Stores the data on a node (streamed from `localPath`); resolves to this, now with `dataUrl`. */
  async save(opts: SaveOptions = {}): Promise<this> {
    if (this.dataUrl) return this;
    const url = opts.url ?? `${opts.prefix ?? ''}${randomBytes(16).toString('hex')}`;
    const base = opts.host ? await this.client.hostUrl(opts.host) : this.client.url;
    const target = dataRoute(base, url, `?fmt=${this.fmt}${opts.memory === undefined ? '' : `&memory=${opts.memory ? 1 : 0}`}`);
    const headers: Record<string, string> = { ...this.client.http.authHeader(), 'content-type': 'application/octet-stream' };
    if (this.path) headers['content-length'] = String((await stat(this.path)).size);
    // A file streams from disk; never the whole of it in memory. An array goes as its .npy
    // header, then its elements from where they are.
    const pieces = this.path ? [] : this.serialize();
    if (pieces.length > 1) headers['content-length'] = String(byteLengthOf(pieces));
    const body = this.path ? createReadStream(this.path) : pieces.length > 1 ? Readable.from(pieces) : asBuffer(pieces[0]);
    const res = await got.put(target, { headers, body, retry: { limit: 0 }, throwHttpErrors: false });
    if (res.statusCode !== 201) throw answerError(res.statusCode, res.body, target);
    this.dataUrl = url;
    return this;
  }

  /** The value: the one given, or the stored bytes decoded by `fmt` (msgpack, json, raw; ndarray as an NDArray). */
  async obj<T = unknown>(): Promise<T> {
    if (this.value !== undefined) return this.value as T;
    const info = await this.info();
    const bytes = await this.raw();
    if (info.fmt === 'msgpack') return decodeWith<T>(this.client, bytes);
    if (info.fmt === 'json') return JSON.parse(bytes.toString('utf8')) as T;
    if (info.fmt === 'raw') return bytes as T;
    if (info.fmt === 'ndarray') return fromNpy(bytes) as T;
    throw new TypeError(`data ${this.dataUrl} is ${info.fmt}; read it in Python, or use raw()`);
  }

  /** The bytes, fetched from a holder when the data is remote. */
  async raw(): Promise<Buffer> {
    if (this.bytes) return asBuffer(this.bytes);
    if (this.path && !this.dataUrl) return readFile(this.path);
    if (this.value !== undefined && !this.dataUrl) return Buffer.concat(this.serialize());
    return this.client.http.download(await this.holderUrl());
  }

  /** A local file with the data: the given path, or a download streamed into a temp file. */
  async localPath(): Promise<string> {
    if (this.path) return this.path;
    const target = join(tmpdir(), `ks-data-${randomBytes(8).toString('hex')}`);
    if (!this.dataUrl) {
      await writeFile(target, await this.raw());
      return target;
    }
    await this.client.http.downloadTo(await this.holderUrl(), target);
    return target;
  }

  /** Copies the data to every live host that stores data; each copy is streamed and CRC-checked. */
  async pipeline(): Promise<string[]> {
    const { info, hosts } = await this.infoAndHosts();
    const missing = hosts.filter((h) => !h.readOnly && !info.holders.includes(h.name));
    await Promise.all(
      missing.map(async (host) => {
        const target = dataRoute(host.url, this.dataUrl!, '/replicate');
        const res = await got.post(target, { headers: this.client.http.authHeader(), retry: { limit: 0 }, throwHttpErrors: false });
        if (res.statusCode !== 200) throw answerError(res.statusCode, res.body, target);
      }),
    );
    return [...info.holders, ...missing.map((h) => h.name)].sort();
  }

  /** Deletes every copy on the cluster. */
  async delete(): Promise<void> {
    const { info, hosts } = await this.infoAndHosts();
    const urls = new Map(hosts.map((h) => [h.name, h.url]));
    for (const holder of info.holders) {
      const target = dataRoute(urls.get(holder)!, this.dataUrl!);
      const res = await got.delete(target, { headers: this.client.http.authHeader(), retry: { limit: 0 }, throwHttpErrors: false });
      if (res.statusCode !== 200 && res.statusCode !== 404) throw answerError(res.statusCode, res.body, target);
    }
  }

  toString(): string {
    return `RemoteData(${this.dataUrl ?? 'unsaved'})`;
  }

  /** The bytes to store, as pieces written one after the other. */
  private serialize(): Uint8Array[] {
    if (this.bytes) return [this.bytes];
    if (this.fmt === 'msgpack') return [encode(this.value)];
    if (this.fmt === 'json') return [Buffer.from(JSON.stringify(this.value))];
    if (this.fmt === 'raw' && this.value instanceof Uint8Array) return [this.value];
    if (this.fmt === 'ndarray' && isArray(this.value)) {
      const [dtype, shape, bytes] = ndarrayWire(this.value);
      return [npyHeader(dtype, shape), bytes];
    }
    throw new TypeError(`a TypeScript value cannot be saved as ${this.fmt}`);
  }

  private async info(): Promise<DataInfo> {
    return (await this.infoAndHosts()).info;
  }

  private async infoAndHosts(): Promise<{ info: DataInfo; hosts: HostInfo[] }> {
    if (!this.dataUrl) throw new Error('this RemoteData is not saved yet: call save() first');
    const { data, hosts } = await this.client.dataInfoAndHosts([this.dataUrl]);
    const info = data[this.dataUrl];
    if (!info) throw new NodeRequestError(404, 'not_found', `no data ${this.dataUrl}`, this.client.url);
    return { info, hosts };
  }

  /** Where to download from: the contacted node if it holds the data, else a live holder. */
  private async holderUrl(): Promise<string> {
    const { info, hosts } = await this.infoAndHosts();
    const contacted = hosts.find((h) => sameNode(h.url, this.client.url) && info.holders.includes(h.name));
    const holder = contacted ?? hosts.find((h) => info.holders.includes(h.name));
    if (!holder) throw new NodeRequestError(404, 'not_found', `data ${this.dataUrl} is held by no live host`, this.client.url);
    return dataRoute(holder.url, this.dataUrl!);
  }
}

/** A Buffer over the same memory (no copy of what may be hundreds of MB). */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

registerRemoteDataClass(RemoteData, (url) => new RemoteData({ dataUrl: url, client: decodingClient }));

/** `new RemoteData({obj})`. */
export const dobj = (obj: unknown, opts: Omit<RemoteDataSource, 'obj' | 'raw' | 'localPath' | 'dataUrl'> = {}) => new RemoteData({ ...opts, obj });
/** `new RemoteData({raw})`. */
export const dr = (raw: Uint8Array, opts: Omit<RemoteDataSource, 'obj' | 'raw' | 'localPath' | 'dataUrl'> = {}) => new RemoteData({ ...opts, raw });
/** `new RemoteData({localPath})`. */
export const dp = (localPath: string, opts: Omit<RemoteDataSource, 'obj' | 'raw' | 'localPath' | 'dataUrl'> = {}) => new RemoteData({ ...opts, localPath });
/** `new RemoteData({dataUrl})`. */
export const du = (dataUrl: string, opts: Omit<RemoteDataSource, 'obj' | 'raw' | 'localPath' | 'dataUrl'> = {}) => new RemoteData({ ...opts, dataUrl });
