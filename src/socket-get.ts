import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { answerError, type NodeRequestError } from './errors.js';

/** The longest status line and headers accepted. */
export const maxHeadBytes = 64 * 1024;

/** An HTTP/1.x answer's status line and headers (names lower-cased); `status` undefined when it is not HTTP. */
export interface AnswerHead {
  statusLine: string;
  status?: number;
  /** HTTP/1.0: the connection closes after this answer. */
  http10: boolean;
  headers: Record<string, string>;
}

/** Reads the head of an answer: its bytes up to the blank line, as latin1 text. */
export function parseAnswerHead(text: string): AnswerHead {
  const [statusLine, ...lines] = text.split('\r\n');
  const match = /^HTTP\/1\.([01]) (\d{3})/.exec(statusLine);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { statusLine, status: match ? Number(match[2]) : undefined, http10: match?.[1] === '0', headers };
}

/** A GET's answer, its head read, its body still on the socket. */
export interface SocketAnswer {
  status: number;
  /** Header names lower-cased. */
  headers: Record<string, string>;
  /** The body's length in bytes (its Content-Length). */
  length: number;
  /**
   * Reads the next body bytes into `into`, filling it unless the body ends first; resolves to
   * how many bytes came (0 once the whole body is read). One at a time.
   */
  fill(into: Buffer): Promise<number>;
  /** Closes the connection; a body not read to its end is dropped. Idempotent. */
  close(): void;
}

interface Fill {
  into: Buffer;
  at: number;
  resolve(bytes: number): void;
  reject(error: Error): void;
}

/**
 * An HTTP/1.1 GET over a plain socket whose body the kernel copies straight into the caller's
 * buffers (net.Socket's `onread`). node:http hands a body over as fresh 64 kB chunks: for a
 * gigabyte that is 16,000 allocations, each touched for the first time and then copied once
 * more, and on these VMs first-touching memory costs as much as moving it. Only what our
 * nodes answer is read: a Content-Length body, no chunked encoding, one request per connection.
 * `idleMs`: no byte for this long, connecting or reading, fails the GET.
 */
export function socketGet(target: URL, headers: Record<string, string>, idleMs: number): Promise<SocketAnswer> {
  if (target.protocol !== 'http:') return Promise.reject(new Error(`socketGet reads http:// urls only, not ${target.protocol}`));
  return new Promise<SocketAnswer>((resolveHead, rejectHead) => {
    const head = Buffer.allocUnsafe(maxHeadBytes);
    let headBytes = 0;
    let answer: SocketAnswer | undefined;
    /** Body bytes not yet read from the socket. */
    let unread = 0;
    /** Body bytes that arrived before a fill asked for them (with the head). */
    let early: Buffer | undefined;
    let current: Fill | undefined;
    let failure: Error | undefined;
    /** Where the next read lands when no fill waits: its bytes are kept in `early`. */
    const spare = Buffer.allocUnsafe(64 * 1024);

    const fail = (error: Error) => {
      if (failure) return;
      failure = error;
      socket.destroy();
      rejectHead(error);
      current?.reject(error);
      current = undefined;
    };

    const finishFill = () => {
      const done = current!;
      current = undefined;
      done.resolve(done.at);
    };

    const onHead = (bytes: number): boolean => {
      headBytes += bytes;
      const end = head.subarray(0, headBytes).indexOf('\r\n\r\n');
      if (end < 0) {
        if (headBytes === maxHeadBytes) fail(new Error(`${target.origin} answered with a head over ${maxHeadBytes} bytes`));
        return true;
      }
      const { statusLine, status, headers: fields } = parseAnswerHead(head.toString('latin1', 0, end));
      const length = Number(fields['content-length']);
      if (!status) {
        fail(new Error(`${target.origin} did not answer HTTP: ${JSON.stringify(statusLine.slice(0, 100))}`));
        return false;
      }
      if (fields['transfer-encoding'] || !Number.isSafeInteger(length) || length < 0) {
        fail(new Error(`${target.origin} answered ${status} without a Content-Length (Transfer-Encoding ${fields['transfer-encoding'] ?? 'none'})`));
        return false;
      }
      const arrived = head.subarray(end + 4, Math.min(headBytes, end + 4 + length));
      early = arrived.length ? Buffer.from(arrived) : undefined;
      unread = length - arrived.length;
      answer = { status, headers: fields, length, fill, close: () => socket.destroy() };
      resolveHead(answer);
      if (unread === 0) socket.destroy();
      // Nothing more is read until a fill asks.
      return false;
    };

    const onBody = (bytes: number, buffer: Uint8Array): boolean => {
      unread -= bytes;
      const fill = current;
      // The read landed in the fill's own memory (the usual case), or in `spare`: keep those bytes.
      if (fill && buffer.buffer === fill.into.buffer && buffer.byteOffset === fill.into.byteOffset + fill.at) {
        fill.at += bytes;
      } else {
        const got = Buffer.from(buffer.subarray(0, bytes));
        early = early ? Buffer.concat([early, got]) : got;
        if (fill) takeEarly(fill);
      }
      if (fill && (fill.at === fill.into.length || unread === 0)) finishFill();
      if (unread === 0) socket.destroy();
      return current !== undefined;
    };

    const takeEarly = (fill: Fill) => {
      if (!early) return;
      const taken = early.copy(fill.into, fill.at);
      fill.at += taken;
      early = taken < early.length ? early.subarray(taken) : undefined;
    };

    function fill(into: Buffer): Promise<number> {
      if (failure) return Promise.reject(failure);
      if (current) return Promise.reject(new Error('socketGet: one fill at a time'));
      return new Promise<number>((resolve, reject) => {
        current = { into, at: 0, resolve, reject };
        takeEarly(current);
        if (current.at === into.length || (unread === 0 && !early)) return finishFill();
        socket.resume();
      });
    }

    const socket = connect({
      // An IPv6 literal comes bracketed in a url ('[::1]'), bare to connect().
      host: target.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: Number(target.port || 80),
      onread: {
        buffer: () => {
          if (!answer) return head.subarray(headBytes);
          if (!current || current.at === current.into.length) return spare;
          return current.into.subarray(current.at, current.at + Math.min(unread, current.into.length - current.at));
        },
        callback: (bytes, buffer) => (answer ? onBody(bytes, buffer) : onHead(bytes)),
      },
    });
    socket.setNoDelay(true);
    socket.setTimeout(idleMs, () => fail(new Error(`no byte from ${target.origin} for ${idleMs} ms`)));
    socket.on('error', fail);
    socket.on('close', () => {
      if (!answer) fail(new Error(`${target.origin} closed the connection before answering`));
      else if (unread > 0 || current) fail(new Error(`${target.href} ended after ${answer.length - unread} of ${answer.length} bytes`));
    });
    const path = `${target.pathname}${target.search}`;
    const lines = [`GET ${path} HTTP/1.1`, `host: ${target.host}`, 'connection: close', ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)];
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  });
}

/**
 * A 200 answer's body as a stream of `chunkBytes` chunks, each read straight into a buffer of
 * its own (the consumer may keep it, or move it to another thread).
 */
export function bodyStream(answer: SocketAnswer, chunkBytes: number): Readable {
  return new Readable({
    read() {
      const chunk = Buffer.allocUnsafeSlow(chunkBytes);
      answer.fill(chunk).then(
        (bytes) => this.push(bytes ? chunk.subarray(0, bytes) : null),
        (error: Error) => this.destroy(error),
      );
    },
    destroy(error, callback) {
      answer.close();
      callback(error);
    },
  });
}

/** A non-200 answer as the node's error: its `{error, detail}` body read, the connection closed. */
export async function answerFailure(answer: SocketAnswer, url: string): Promise<NodeRequestError> {
  try {
    const text = Buffer.allocUnsafe(Math.min(answer.length, 64 * 1024));
    const read = await answer.fill(text);
    return answerError(answer.status, text.toString('utf8', 0, read), url);
  } finally {
    answer.close();
  }
}
