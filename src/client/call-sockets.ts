import { constants } from 'node:buffer';
import { connect, type Socket } from 'node:net';
import { maxHeadBytes, parseAnswerHead } from '../socket-get.js';

/**
 * Where reads land that have no buffer of their own (chunked or close-delimited bodies, bytes
 * no request asked for). One for all sockets: a read is handed to its callback before the next.
 */
const spare = Buffer.allocUnsafe(64 * 1024);

/** A node's answer: its status, its headers (names lower-cased) and its whole body. */
export interface CallAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface CallSocketsOptions {
  /** At most this many connections at once; further requests wait for one. */
  maxSockets: number;
  /** A connection idle this long is closed (before the node's keep-alive timeout closes it). */
  idleMs: number;
}

/**
 * Keep-alive HTTP/1.1 connections to one node, over http, whose answers the kernel copies
 * straight into a buffer of their Content-Length (net.Socket's `onread`). node:http hands a
 * body over as fresh 64 kB chunks to be copied into one buffer afterwards: a 64 MB array
 * answered took 85-135 ms to read that way here, 51-59 ms this way. Chunked and
 * close-delimited answers (a proxy's) are read too, through a spare buffer.
 */
export class CallSockets {
  private readonly idle: CallSocket[] = [];
  private readonly busy = new Set<CallSocket>();
  private readonly waiting: ((socket: CallSocket) => void)[] = [];
  private closed = false;

  /** `label` names the node in errors. */
  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly label: string,
    private readonly opts: CallSocketsOptions,
  ) {}

  /** Sends `head` (request line and headers, ending in a blank line) and `body`; resolves to the answer. */
  async request(head: string, body: readonly Uint8Array[], timeoutMs: number): Promise<CallAnswer> {
    const socket = await this.take();
    try {
      return await socket.exchange(head, body, timeoutMs);
    } finally {
      this.give(socket);
    }
  }

  /** Closes every connection; requests under way fail. Idempotent. */
  close(): void {
    this.closed = true;
    for (const socket of [...this.idle, ...this.busy]) socket.destroy();
    this.idle.length = 0;
  }

  private connect(): CallSocket {
    return new CallSocket(this.host, this.port, this.label);
  }

  private take(): Promise<CallSocket> {
    if (this.closed) return Promise.reject(new Error('the client is closed'));
    // The most recently used first: the others may then idle long enough to close.
    let socket = this.idle.pop();
    // One the node closed since (its close not yet handled) would fail a request sent on it.
    while (socket && !socket.reusable) socket = this.idle.pop();
    socket ??= this.busy.size < this.opts.maxSockets ? this.connect() : undefined;
    if (socket) {
      this.busy.add(socket);
      return Promise.resolve(socket);
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private give(socket: CallSocket): void {
    this.busy.delete(socket);
    const next = this.waiting.shift();
    if (next) {
      const handed = socket.reusable ? socket : this.connect();
      this.busy.add(handed);
      return next(handed);
    }
    if (!socket.reusable || this.closed) return socket.destroy();
    socket.idleFor(this.opts.idleMs, () => {
      const k = this.idle.indexOf(socket);
      if (k >= 0) this.idle.splice(k, 1);
    });
    this.idle.push(socket);
  }
}

/** The answer being read on a connection. */
interface Exchange {
  resolve(answer: CallAnswer): void;
  reject(error: Error): void;
  headBytes: number;
  status?: number;
  headers?: Record<string, string>;
  /** A Content-Length body: read straight into `body`, `at` bytes so far. */
  body?: Buffer;
  at: number;
  /** A chunked or close-delimited body: its bytes so far, and (chunked) the bytes not yet parsed. */
  pieces?: Buffer[];
  chunked?: { pending: Buffer };
}

/** One keep-alive connection; one request at a time. */
class CallSocket {
  private readonly socket: Socket;
  private readonly head = Buffer.allocUnsafe(maxHeadBytes);
  private current?: Exchange;
  private onGone?: () => void;
  /** False once the connection cannot carry another request. */
  reusable = true;

  constructor(
    host: string,
    port: number,
    private readonly label: string,
  ) {
    this.socket = connect({
      // An IPv6 literal comes bracketed in a url ('[::1]'), bare to connect().
      host: host.replace(/^\[(.*)\]$/, '$1'),
      port,
      onread: { buffer: () => this.landing(), callback: (bytes, buffer) => this.received(bytes, buffer) },
    });
    this.socket.setNoDelay(true);
    this.socket.on('error', (error) => this.fail(error));
    this.socket.on('timeout', () => (this.current ? this.fail(new Error(`no answer from ${this.label} within ${this.socket.timeout} ms`)) : this.socket.destroy()));
    this.socket.on('close', () => {
      this.reusable = false;
      this.onGone?.();
      const current = this.current;
      if (current?.pieces && !current.chunked) return this.finish(Buffer.concat(current.pieces));
      if (current) this.fail(new Error(current.status ? `${this.label} closed the connection after ${current.at} bytes of its answer` : `${this.label} closed the connection before answering`));
    });
  }

  exchange(head: string, body: readonly Uint8Array[], timeoutMs: number): Promise<CallAnswer> {
    this.onGone = undefined;
    return new Promise((resolve, reject) => {
      if (!this.reusable) return reject(new Error(`${this.label} closed the connection`));
      this.current = { resolve, reject, headBytes: 0, at: 0 };
      this.socket.setTimeout(timeoutMs);
      this.socket.cork();
      this.socket.write(head);
      for (const piece of body) this.socket.write(piece);
      this.socket.uncork();
    });
  }

  /** Idle from now: closes after `idleMs`, and says when it is gone. */
  idleFor(idleMs: number, gone: () => void): void {
    this.onGone = gone;
    this.socket.setTimeout(idleMs);
  }

  destroy(): void {
    this.reusable = false;
    this.socket.destroy();
  }

  /** Where the next read goes: the head's buffer, the body's own, or the spare. */
  private landing(): Uint8Array {
    const current = this.current;
    if (!current || current.status === undefined) return current ? this.head.subarray(current.headBytes) : spare;
    return current.body ? current.body.subarray(current.at) : spare;
  }

  /**
   * A read's bytes. Node asks for the next read's buffer right after each read, so the first
   * read of an answer lands in the spare (no answer was awaited when it asked): those bytes,
   * and any that land outside their place, are copied to where they belong.
   */
  private received(bytes: number, buffer: Uint8Array): boolean {
    const current = this.current;
    if (!current) {
      // Bytes no request asked for: the connection is out of step.
      this.destroy();
      return false;
    }
    if (current.status === undefined && landedAt(buffer, this.head, current.headBytes)) {
      current.headBytes += bytes;
      this.readHead(current);
    } else if (current.body && landedAt(buffer, current.body, current.at)) {
      current.at += bytes;
      if (current.at === current.body.length) this.finish(current.body);
    } else {
      this.elsewhere(current, Buffer.from(buffer.subarray(0, bytes)));
    }
    return true;
  }

  /** Bytes that landed outside their place, moved there. */
  private elsewhere(current: Exchange, bytes: Buffer): void {
    while (bytes.length && this.current === current) {
      if (current.status === undefined) {
        const taken = bytes.copy(this.head, current.headBytes);
        current.headBytes += taken;
        bytes = bytes.subarray(taken);
        this.readHead(current);
        if (current.status === undefined && bytes.length) return this.fail(new Error(`the answer's head is over ${maxHeadBytes} bytes`));
      } else if (current.body) {
        if (current.at + bytes.length > current.body.length) return this.fail(new Error(`the answer is longer than its Content-Length ${current.body.length}`));
        current.at += bytes.copy(current.body, current.at);
        bytes = bytes.subarray(bytes.length);
        if (current.at === current.body.length) this.finish(current.body);
      } else {
        this.bodyBytes(current, bytes);
        return;
      }
    }
  }

  private readHead(current: Exchange): void {
    const end = this.head.subarray(0, current.headBytes).indexOf('\r\n\r\n');
    if (end < 0) {
      if (current.headBytes === maxHeadBytes) this.fail(new Error(`the answer's head is over ${maxHeadBytes} bytes`));
      return;
    }
    const { statusLine, status, http10, headers } = parseAnswerHead(this.head.toString('latin1', 0, end));
    if (status === undefined) return this.fail(new Error(`${this.label} did not answer HTTP: ${JSON.stringify(statusLine.slice(0, 100))}`));
    if (status >= 100 && status < 200) {
      // An interim answer (100 Continue): the real one follows.
      this.head.copy(this.head, 0, end + 4, current.headBytes);
      current.headBytes -= end + 4;
      return this.readHead(current);
    }
    current.status = status;
    current.headers = headers;
    if (http10 || /\bclose\b/i.test(headers.connection ?? '')) this.reusable = false;
    const early = this.head.subarray(end + 4, current.headBytes);
    const length = Number(headers['content-length']);
    if (/\bchunked\b/i.test(headers['transfer-encoding'] ?? '')) {
      current.pieces = [];
      current.chunked = { pending: Buffer.alloc(0) };
    } else if (status === 204 || status === 304) {
      current.body = Buffer.alloc(0);
    } else if (headers['content-length'] !== undefined && Number.isSafeInteger(length) && length >= 0) {
      if (length > constants.MAX_LENGTH) return this.fail(new Error(`the answer is ${length} bytes, more than one Buffer can hold`));
      current.body = Buffer.allocUnsafe(length);
    } else {
      // Neither: the body runs until the node closes the connection.
      this.reusable = false;
      current.pieces = [];
    }
    if (current.body) {
      if (early.length > current.body.length) return this.fail(new Error(`the answer is longer than its Content-Length ${current.body.length}`));
      current.at = early.copy(current.body);
      if (current.at === current.body.length) this.finish(current.body);
    } else if (early.length) {
      this.bodyBytes(current, Buffer.from(early));
    }
  }

  /** Bytes of a chunked or close-delimited body. */
  private bodyBytes(current: Exchange, bytes: Buffer): void {
    if (!current.chunked) {
      current.pieces!.push(bytes);
      current.at += bytes.length;
      return;
    }
    let pending = current.chunked.pending.length ? Buffer.concat([current.chunked.pending, bytes]) : bytes;
    for (;;) {
      const lineEnd = pending.indexOf('\r\n');
      if (lineEnd < 0) break;
      const size = parseInt(pending.toString('latin1', 0, lineEnd).split(';')[0], 16);
      if (!Number.isSafeInteger(size) || size < 0) return this.fail(new Error('the answer has a malformed chunk size'));
      if (size === 0) {
        // The last chunk, then trailers (ignored) up to an empty line.
        const rest = pending.subarray(lineEnd + 2);
        if (rest.subarray(0, 2).toString('latin1') === '\r\n' || rest.indexOf('\r\n\r\n') >= 0) return this.finish(Buffer.concat(current.pieces!));
        break;
      }
      if (pending.length < lineEnd + 2 + size + 2) break;
      current.pieces!.push(pending.subarray(lineEnd + 2, lineEnd + 2 + size));
      current.at += size;
      pending = pending.subarray(lineEnd + 2 + size + 2);
    }
    current.chunked.pending = pending;
  }

  private finish(body: Buffer): void {
    const current = this.current!;
    this.current = undefined;
    current.resolve({ status: current.status!, headers: current.headers!, body });
  }

  private fail(error: Error): void {
    this.destroy();
    const current = this.current;
    this.current = undefined;
    current?.reject(error);
  }
}

/** True when `buffer` is `target`'s memory from byte `at` on: a read that landed in place. */
function landedAt(buffer: Uint8Array, target: Buffer, at: number): boolean {
  return buffer.buffer === target.buffer && buffer.byteOffset === target.byteOffset + at;
}
