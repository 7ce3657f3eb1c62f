import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context } from 'koa';
import { Readable } from 'node:stream';
import { byteLengthOf, decode, encodePieces, jsonSafe, Spliced } from '../codec.js';
import { BadRequest, PayloadTooLarge, UnsupportedMediaType } from '../errors.js';
import { payloadBytesHeader } from '../keys.js';

export const msgpackType = 'application/msgpack';

export function isMsgpack(type: string | undefined): boolean {
  return !!type && /^application\/(x-)?msgpack\b/i.test(type);
}

/** Reads the whole body, refusing more than `limitBytes` before buffering it. */
export async function readRawBody(ctx: Context, limitBytes: number): Promise<Buffer> {
  const declared = Number(ctx.get('content-length') || 0);
  if (declared > limitBytes) throw new PayloadTooLarge(`body of ${declared} bytes is over --max-request-size ${limitBytes}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limitBytes) {
      ctx.req.resume();
      throw new PayloadTooLarge(`body is over --max-request-size ${limitBytes} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/** A msgpack request body; BadRequest when it is not msgpack. */
export function decodeBody(raw: Buffer): unknown {
  try {
    return decode(raw);
  } catch (error) {
    throw new BadRequest(`body is not valid msgpack: ${(error as Error).message}`);
  }
}

/** The request body as msgpack or JSON, by Content-Type; an empty body is `{}`. */
export async function readBody(ctx: Context, limitBytes: number): Promise<unknown> {
  // Taken where it is valid by the routes answered without Koa (`fastCallRoutes`).
  if (ctx.get(payloadBytesHeader)) throw new BadRequest(`${payloadBytesHeader} is taken only on POST /api/v1/call with a msgpack body, as a whole number of bytes up to its Content-Length`);
  const raw = await readRawBody(ctx, limitBytes);
  if (!raw.length) return {};
  const type = ctx.get('content-type');
  if (isMsgpack(type)) return decodeBody(raw);
  if (!type || /^application\/json\b/i.test(type)) return parseJson(raw);
  throw new UnsupportedMediaType(`Content-Type ${type} is neither application/msgpack nor application/json`);
}

/** A JSON request body; BadRequest when it is not JSON. */
export function parseJson(raw: Buffer): unknown {
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch (error) {
    throw new BadRequest(`body is not valid JSON: ${(error as Error).message}`);
  }
}

/**
 * For the routes answered without Koa: reads the whole body, then writes what `answer` makes
 * of it (which turns its own errors into an answer). A client gone mid-body gets nothing.
 * The body's last `trailingBytes` (a payload, `payloadBytesHeader`) are kept as they came.
 */
export function answerAfterBody(
  req: IncomingMessage,
  res: ServerResponse,
  contentType: string,
  answer: (raw: Buffer, trailing?: Spliced) => Promise<{ status: number; body: Uint8Array[] | string; headers?: Record<string, string> }>,
  trailingBytes?: number,
): void {
  const body = new BodyBuffer(Number(req.headers['content-length']), trailingBytes);
  req.on('data', (chunk: Buffer) => body.add(chunk));
  req.on('error', () => {});
  req.on('end', () => {
    void answer(body.bytes(), body.trailing()).then(({ status, body, headers }) => {
      const pieces = typeof body === 'string' ? [Buffer.from(body)] : body;
      res.writeHead(status, { ...headers, 'content-type': contentType, 'content-length': byteLengthOf(pieces) });
      res.cork();
      for (const piece of pieces) res.write(piece);
      res.end();
      res.uncork();
    });
  });
}

/**
 * A body's bytes gathered into one buffer of its Content-Length as they arrive: one copy, and
 * never the chunks and their concatenation in memory at once. Without a length (or past it),
 * chunks are kept and joined at the end. The last `trailingBytes` are not gathered: they stay
 * the chunks they came in (no fresh buffer to fault in and copy to: 64 MB took 80 ms that way).
 */
class BodyBuffer {
  private buffer?: Buffer;
  private size = 0;
  private readonly chunks: Buffer[] = [];
  private readonly trailingChunks: Buffer[] = [];

  constructor(
    declared: number,
    private readonly trailingBytes = 0,
  ) {
    if (Number.isSafeInteger(declared) && declared > 0) this.buffer = Buffer.allocUnsafeSlow(declared - trailingBytes);
  }

  add(chunk: Buffer): void {
    if (this.trailingBytes && this.buffer) {
      const room = this.buffer.length - this.size;
      const gathered = chunk.subarray(0, room);
      gathered.copy(this.buffer, this.size);
      this.size += gathered.length;
      if (chunk.length > room) this.trailingChunks.push(chunk.subarray(room));
      return;
    }
    if (this.buffer && this.size + chunk.length > this.buffer.length) {
      // More than declared: what came so far becomes the first chunk.
      this.chunks.push(this.buffer.subarray(0, this.size));
      this.buffer = undefined;
    }
    if (this.buffer) chunk.copy(this.buffer, this.size);
    else this.chunks.push(chunk);
    this.size += chunk.length;
  }

  bytes(): Buffer {
    return this.buffer ? this.buffer.subarray(0, this.size) : Buffer.concat(this.chunks);
  }

  /** The trailing bytes, when the body has them. */
  trailing(): Spliced | undefined {
    return this.trailingBytes ? new Spliced(this.trailingChunks) : undefined;
  }
}

/** True when the answer goes out as msgpack: the client sent or accepts msgpack. */
export function answersMsgpack(ctx: Context): boolean {
  return isMsgpack(ctx.get('content-type')) || isMsgpack(ctx.get('accept'));
}

/** Answers in msgpack when the client sent or accepts msgpack, else in JSON. */
export function reply(ctx: Context, body: unknown, status = 200): void {
  ctx.status = status;
  if (answersMsgpack(ctx)) {
    ctx.type = msgpackType;
    const pieces = encodePieces(body);
    // Big values (a direct call's array) go out from where they are, not copied into one buffer.
    ctx.body = pieces.length === 1 ? pieces[0] : Readable.from(pieces);
    ctx.length = byteLengthOf(pieces);
  } else {
    ctx.type = 'application/json';
    ctx.body = JSON.stringify(jsonSafe(body));
  }
}
