import { constants } from 'node:buffer';
import { createWriteStream } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import got from 'got';
import { crc32 } from 'node:zlib';
import { crcHeader, crcHex } from '../data/checksum.js';
import type { IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { config } from '../config.js';
import { byteLengthOf, decode, encodePieces } from '../codec.js';
import { answerError, NodeRequestError } from '../errors.js';
import { CallSockets } from './call-sockets.js';
import { answerFailure, socketGet, type SocketAnswer } from '../socket-get.js';
import { bearerHeader, payloadBytesHeader } from '../keys.js';
import { nodeRoute, normalizeNodeUrl } from '../node-url.js';

const msgpackType = 'application/msgpack';
const maxBufferBytes = constants.MAX_LENGTH;

export interface NodeHttpOptions {
  token?: string;
  timeoutMs?: number;
}

/**
 * msgpack over keep-alive HTTP to one node: over http through `CallSockets` (answers read
 * straight into their buffer), over https through node:https.
 */
export class NodeHttp {
  private readonly sockets?: CallSockets;
  private readonly agent?: HttpsAgent;
  private readonly base: URL;
  /** The node's path prefix (`/ks` behind `http://proxy/ks/`), '' for most. */
  private readonly prefix: string;
  /** The node's url, without trailing slashes. */
  readonly url: string;

  constructor(
    url: string,
    private readonly opts: NodeHttpOptions = {},
  ) {
    this.url = normalizeNodeUrl(url);
    this.base = new URL(this.url);
    this.prefix = this.base.pathname.replace(/\/+$/, '');
    if (this.base.protocol === 'https:') this.agent = new HttpsAgent({ keepAlive: true, maxSockets: config.clientMaxSockets });
    else this.sockets = new CallSockets(this.base.hostname, Number(this.base.port || 80), this.url, { maxSockets: config.clientMaxSockets, idleMs: config.clientIdleSocketMs });
  }

  /** How long a request may go without an answer, or a download without a byte. */
  private get timeoutMs(): number {
    return this.opts.timeoutMs ?? config.clientRequestTimeoutMs;
  }

  /**
   * Sends `body` as msgpack to `path` (`/api/v1/...`) and decodes the msgpack answer; a non-2xx
   * answer rejects. `trailing`: bytes sent after the msgpack (`payloadBytesHeader`).
   */
  async request<T>(method: string, path: string, body?: unknown, trailing?: Uint8Array[]): Promise<T> {
    // Big arrays and payloads go out from where they are, not copied into one buffer.
    const pieces = body === undefined ? [] : encodePieces(body);
    const headers: Record<string, string | number> = { accept: msgpackType };
    if (trailing) {
      headers[payloadBytesHeader] = byteLengthOf(trailing);
      pieces.push(...trailing);
    }
    if (pieces.length) {
      headers['content-type'] = msgpackType;
      headers['content-length'] = byteLengthOf(pieces);
    }
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    const target = nodeRoute(this.url, path);
    if (!this.sockets) {
      const res = await this.viaHttps(method, path, headers, pieces);
      return decodeAnswer<T>(res.statusCode ?? 0, res.headers['content-type'], await readBytes(res), target);
    }
    const lines = [`${method} ${this.prefix}${path} HTTP/1.1`, `host: ${this.base.host}`, ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)];
    const answer = await this.sockets.request(`${lines.join('\r\n')}\r\n\r\n`, pieces, this.timeoutMs);
    return decodeAnswer<T>(answer.status, answer.headers['content-type'], answer.body, target);
  }

  private viaHttps(method: string, path: string, headers: Record<string, string | number>, pieces: Uint8Array[]): Promise<IncomingMessage> {
    const target = nodeRoute(this.url, path);
    return new Promise((resolve, reject) => {
      const req = httpsRequest(this.base, { method, path: `${this.prefix}${path}`, headers, agent: this.agent, timeout: this.timeoutMs }, resolve);
      req.on('timeout', () => req.destroy(new Error(`no answer from ${target} within ${this.timeoutMs} ms`)));
      req.on('error', reject);
      for (const piece of pieces) req.write(piece);
      req.end();
    });
  }

  /**
   * GETs bytes from `url` (any node) into one buffer sized by Content-Length. Over http the
   * kernel copies the body straight into that buffer (`socketGet`): no 64 kB chunks to
   * allocate and copy again (a 256 MB download took 0.7-1.4 s that way here, 0.22-0.32 now).
   */
  async download(url: string): Promise<Buffer> {
    const target = new URL(url);
    if (target.protocol !== 'http:') return this.downloadOverHttps(target);
    const answer = await this.get(target);
    try {
      if (answer.length > maxBufferBytes) throw new Error(`${url} holds ${answer.length} bytes, more than one Buffer can (${maxBufferBytes}): read it with localPath()`);
      const body = Buffer.allocUnsafe(answer.length);
      await answer.fill(body).catch((error: Error) => {
        throw new Error(`${url}: the download broke off (${error.message}); a holder never sends the whole of a copy that fails its CRC (its log says so)`);
      });
      checkCrc(url, answer.headers[crcHeader], crc32(body));
      return body;
    } finally {
      answer.close();
    }
  }

  /**
   * GETs bytes from `url` into a new file at `path`, through two 1 MB buffers: one fills from
   * the socket while the other is written. A failed download removes the file.
   */
  async downloadTo(url: string, path: string): Promise<void> {
    const target = new URL(url);
    if (target.protocol !== 'http:') return pipeline(got.stream(target, { headers: this.authHeader(), retry: { limit: 0 } }), createWriteStream(path, { flags: 'wx' }));
    const answer = await this.get(target);
    let complete = false;
    try {
      const file = await open(path, 'wx');
      try {
        const buffers = [Buffer.allocUnsafe(config.downloadBufferBytes), Buffer.allocUnsafe(config.downloadBufferBytes)];
        let writing: Promise<unknown> = Promise.resolve();
        let crc = 0;
        for (let k = 0; ; k++) {
          const buffer = buffers[k % 2];
          const bytes = await answer.fill(buffer);
          await writing;
          if (!bytes) break;
          crc = crc32(buffer.subarray(0, bytes), crc);
          writing = file.write(buffer, 0, bytes);
          // Awaited after the next fill; until then a failed write must not count as unhandled.
          writing.catch(() => {});
        }
        checkCrc(url, answer.headers[crcHeader], crc);
        complete = true;
      } finally {
        await file.close();
        // A download cut short leaves no partial file behind.
        if (!complete) await unlink(path).catch(() => {});
      }
    } finally {
      answer.close();
    }
  }

  /** A GET over http whose answer is a 200, its body still to read; otherwise the node's error. */
  private async get(target: URL): Promise<SocketAnswer> {
    const answer = await socketGet(target, this.authHeader(), this.timeoutMs);
    if (answer.status === 200) return answer;
    throw await answerFailure(answer, target.href);
  }

  /** The bearer token's header, when the client has a token. */
  authHeader(): Record<string, string> {
    return bearerHeader(this.opts.token);
  }

  private downloadOverHttps(target: URL): Promise<Buffer> {
    const url = target.href;
    const headers = this.authHeader();
    return new Promise<Buffer>((resolve, reject) => {
      const req = httpsRequest(target, { method: 'GET', headers, timeout: this.timeoutMs }, (res) => {
        const status = res.statusCode ?? 0;
        if (status !== 200) return void readAnswer(res, url).then(() => reject(new NodeRequestError(status, 'http_error', 'unexpected answer', url)), reject);
        const total = Number(res.headers['content-length']);
        if (!Number.isSafeInteger(total)) return void readAnswer<Buffer>(res, url).then((b) => resolve(Buffer.from(b)), reject);
        const body = Buffer.allocUnsafe(total);
        let at = 0;
        res.on('data', (chunk: Buffer) => {
          if (at + chunk.length > total) return res.destroy(new Error(`${url} sent more than its Content-Length`));
          chunk.copy(body, at);
          at += chunk.length;
        });
        res.on('end', () => (at === total ? resolve(body) : reject(new Error(`${url} ended after ${at} of ${total} bytes`))));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within ${this.timeoutMs} ms`)));
      req.on('error', reject);
      req.end();
    });
  }

  close(): void {
    this.sockets?.close();
    this.agent?.destroy();
  }
}

/** The answer's body in one buffer of its Content-Length, each chunk copied in once as it comes. */
async function readBytes(res: IncomingMessage): Promise<Buffer> {
  const declared = Number(res.headers['content-length']);
  const chunks: Buffer[] = [];
  if (!(Number.isSafeInteger(declared) && declared > 0)) {
    for await (const chunk of res) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }
  const body = Buffer.allocUnsafeSlow(declared);
  let at = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    if (at + chunk.length > declared) throw new Error(`the answer is longer than its Content-Length ${declared}`);
    chunk.copy(body, at);
    at += chunk.length;
  }
  return body.subarray(0, at);
}

/** Throws when a download's CRC-32 is not the one its holder announced (a holder that announced none: nothing to check). */
function checkCrc(url: string, announced: string | undefined, crc: number): void {
  if (announced !== undefined && announced !== crcHex(crc)) throw new Error(`${url}: the bytes received have crc32 ${crcHex(crc)}, the holder announced ${announced}`);
}

async function readAnswer<T>(res: IncomingMessage, target: string): Promise<T> {
  return decodeAnswer<T>(res.statusCode ?? 0, res.headers['content-type'], await readBytes(res), target);
}

/** The decoded body of a 2xx answer; any other status throws the node's error. */
function decodeAnswer<T>(status: number, type = '', raw: Buffer, target: string): T {
  let body: unknown;
  try {
    body = type.startsWith(msgpackType) ? decode(raw) : type.includes('json') ? JSON.parse(raw.toString()) : raw.toString();
  } catch (error) {
    throw new NodeRequestError(status, 'bad_answer', `cannot decode the answer: ${(error as Error).message}`, target);
  }
  if (status >= 200 && status < 300) return body as T;
  throw answerError(status, body, target);
}
