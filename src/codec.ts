import { randomBytes } from 'node:crypto';
import { Packr, addExtension } from 'msgpackr';
import { NDArray, ndarrayFromWire, ndarrayWire, type TypedArray } from './ndarray.js';

/**
 * The one msgpack setup shared by client and node, readable by Python's `msgpack`:
 * no records (Python would see ExtType 114), ints past 2^53 as BigInt instead of losing
 * digits, `undefined` as nil. NDArrays and typed arrays cross as ext 2 (numpy arrays in Python;
 * msgpackr alone packs a Float64Array as bin of the right length but the wrong bytes), and
 * ext 2 always decodes to an NDArray.
 */
export const packr = new Packr({
  useRecords: false,
  // 'auto' (number when safe, else BigInt) exists in msgpackr 2.1 but not in its typings.
  int64AsType: 'auto' as 'bigint',
  encodeUndefinedAsNil: true,
  mapsAsObjects: true,
});

/** Ext type of a `RemoteData` pointer: the payload is the data url in UTF-8. */
export const remoteDataExtType = 1;
/** Ext type of an n-dimensional array: the payload is msgpack `[dtype, shape, bytes]`. */
export const ndarrayExtType = 2;

/**
 * Bytes sent as one msgpack bin without being copied into the packed message: `encodePieces`
 * leaves them as they are, to be written after the bytes before them.
 */
export class Spliced {
  readonly byteLength: number;
  constructor(readonly pieces: Uint8Array[]) {
    this.byteLength = byteLengthOf(pieces);
  }
}

/** The bytes in one buffer: `Spliced` pieces joined (one copy), anything else as it is. */
export function joined(bytes: Uint8Array | Spliced): Buffer {
  if (bytes instanceof Spliced) return bytes.pieces.length === 1 ? joined(bytes.pieces[0]) : Buffer.concat(bytes.pieces, bytes.byteLength);
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** How many bytes the pieces hold together (a Content-Length, a frame's length). */
export function byteLengthOf(pieces: readonly Uint8Array[]): number {
  return pieces.reduce((sum, piece) => sum + piece.byteLength, 0);
}

/** Bytes this long or longer are spliced rather than copied (`spliceable`, big arrays). */
export const spliceBytes = 1 << 20;

/** `bytes` as a `Spliced` when it is big enough to be worth not copying, else itself. */
export function spliceable(bytes: Uint8Array | Spliced): Uint8Array | Spliced {
  if (bytes instanceof Spliced) return bytes;
  return bytes.byteLength >= spliceBytes ? new Spliced([bytes]) : bytes;
}

/** Ext type of a placeholder in a message being spliced; it never leaves `encodePieces`. */
const placeholderExtType = 0x7f;

/** The splicing under way: what each placeholder stands for, and the marker they share. */
interface Splicing {
  marker: Buffer;
  parts: SplicedPart[];
}
/** What a placeholder stands for: a header and bytes; for a big array, also its dtype and shape. */
interface SplicedPart {
  header: Uint8Array;
  pieces: Uint8Array[];
  array?: [string, number[]];
}
let splicing: Splicing | undefined;

/** A placeholder's 16-byte payload: the splicing's marker, then its number. */
function placeholder(header: Uint8Array, pieces: Uint8Array[], array?: [string, number[]]): Buffer {
  const parts = splicing!.parts;
  parts.push({ header, pieces, array });
  const payload = Buffer.alloc(16);
  splicing!.marker.copy(payload);
  payload.writeUInt32BE(parts.length - 1, 12);
  return payload;
}

function binHeader(size: number): Uint8Array {
  const header = Buffer.alloc(5);
  header[0] = 0xc6;
  header.writeUInt32BE(size, 1);
  return header;
}

/**
 * Packs `value` as buffers to write one after the other: `Spliced` bytes and big arrays stay
 * where they are instead of being copied into the message (copying 64 MB cost 0.2-0.4 s here,
 * twice per message with msgpackr's growing buffer). Small messages are one buffer.
 */
export function encodePieces(value: unknown): Uint8Array[] {
  if (value instanceof Packed) return value.pieces;
  return splice(value, (part) => [part.header, ...part.pieces]);
}

/** A message already packed, as pieces: `encodePieces` hands them on as they are. */
export class Packed {
  constructor(readonly pieces: Uint8Array[]) {}
}

/** First byte of a payload whose big arrays follow its msgpack (msgpack never uses 0xc1). */
const tailedPayloadTag = 0xc1;
/** Ext type of an array whose bytes follow the payload's msgpack: `[dtype, shape, offset, nbytes]`. */
const tailedArrayExtType = 3;
/** Each array after a payload's msgpack starts at a multiple of this from the payload's start. */
const tailAlignBytes = 64;

/**
 * A call's payload, msgpack of `[args, kwargs]`, as buffers to write one after the other. Big
 * arrays (1 MB or more) go after the msgpack rather than inside it, each at an offset that is a
 * multiple of 64, and the msgpack holds ext 3 `[dtype, shape, offset, nbytes]` in their place
 * (offset from the first multiple of 64 after the msgpack). Such a payload starts with 0xc1 and
 * the msgpack's length (4 bytes, big-endian). Python's msgpack copies every ext's bytes into a
 * new `bytes` (35 ms for 64 MB here); this way numpy views the received payload itself.
 */
export function encodePayload(args: unknown[], kwargs: Record<string, unknown>): Uint8Array[] {
  const arrays: Uint8Array[] = [];
  let tailBytes = 0;
  const packed = splice([args, kwargs], (part) => {
    if (!part.array) return [part.header, ...part.pieces];
    const nbytes = byteLengthOf(part.pieces);
    const ref = packr.pack([...part.array, tailBytes, nbytes]);
    arrays.push(...part.pieces, Buffer.alloc(padding(nbytes)));
    tailBytes += nbytes + padding(nbytes);
    return [extHeader(tailedArrayExtType, ref.length), ref];
  });
  if (!arrays.length) return packed;
  const length = byteLengthOf(packed);
  const head = Buffer.alloc(5);
  head[0] = tailedPayloadTag;
  head.writeUInt32BE(length, 1);
  return [head, ...packed, Buffer.alloc(padding(5 + length)), ...arrays].filter((piece) => piece.byteLength);
}

/** Bytes from `length` to the next multiple of 64. */
function padding(length: number): number {
  return (tailAlignBytes - (length % tailAlignBytes)) % tailAlignBytes;
}

/** An ext 32 header (valid msgpack for any length). */
function extHeader(type: number, length: number): Buffer {
  const header = Buffer.alloc(6);
  header[0] = 0xc9;
  header.writeUInt32BE(length, 1);
  header[5] = type;
  return header;
}

/** Packs `value` with placeholders, then each placeholder replaced by what `expand` makes of its part. */
function splice(value: unknown, expand: (part: SplicedPart) => Uint8Array[]): Uint8Array[] {
  const current: Splicing = { marker: randomBytes(12), parts: [] };
  const { marker, parts } = (splicing = current);
  let packed: Buffer;
  try {
    packed = packr.pack(value);
  } finally {
    splicing = undefined;
  }
  if (!parts.length) return [packed];
  const out: Uint8Array[] = [];
  let at = 0;
  for (const [k, part] of parts.entries()) {
    // A fixext 16 (0xd8) of either type, holding the marker and k, in packing order.
    const tag = Buffer.alloc(16);
    marker.copy(tag);
    tag.writeUInt32BE(k, 12);
    const found = packed.indexOf(tag, at) - 2;
    out.push(packed.subarray(at, found), ...expand(part));
    at = found + 18;
  }
  out.push(packed.subarray(at));
  return out.filter((piece) => piece.byteLength);
}

addExtension({
  Class: Spliced,
  type: placeholderExtType,
  pack: (spliced: Spliced) => {
    if (!splicing) throw new TypeError('Spliced bytes are packed by encodePieces() only');
    return placeholder(binHeader(spliced.byteLength), spliced.pieces);
  },
});

/** A big array's ext 2 as a placeholder: its header and payload head, then its bytes where they are. */
function splicedNdarray([dtype, shape, bytes]: [string, number[], Uint8Array]): Buffer {
  // [dtype, shape, 0] packed, less the 0 (one byte): the payload up to its third item.
  const head = packr.pack([dtype, shape, 0]).subarray(0, -1);
  const headBytes = Buffer.concat([head, binHeader(bytes.byteLength)]);
  return placeholder(Buffer.concat([extHeader(ndarrayExtType, headBytes.length + bytes.byteLength), headBytes]), [bytes], [dtype, shape]);
}

/**
 * Reads an ext 2 payload `[dtype, shape, bytes]` by hand: msgpackr's unpack called inside an
 * extension saves its state by copying the whole message being read (0.7 s for 64 MB here).
 */
function unpackNdarray(payload: Uint8Array): NDArray {
  const bytes = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  let at = 0;
  const uint = (width: number): number => {
    const value = width === 1 ? bytes[at] : width === 2 ? bytes.readUInt16BE(at) : width === 4 ? bytes.readUInt32BE(at) : Number(bytes.readBigUInt64BE(at));
    at += width;
    return value;
  };
  /**
   * A header's number: tags lo..hi carry it in their bits above lo (fixarray, fixstr, positive
   * fixint), the tags of `wide` in the next 1, 2, 4 or 8 bytes.
   */
  const next = (what: string, [lo, hi]: [number, number], wide: Record<number, number>): number => {
    const tag = bytes[at++];
    if (tag >= lo && tag <= hi) return tag - lo;
    if (wide[tag]) return uint(wide[tag]);
    throw new TypeError(`an ndarray payload has byte 0x${tag?.toString(16)} at ${at - 1} where ${what} belongs`);
  };
  const arrayLength = () => next('an array', [0x90, 0x9f], { 0xdc: 2, 0xdd: 4 });
  if (arrayLength() !== 3) throw new TypeError('an ndarray payload is [dtype, shape, bytes]');
  const dtypeLength = next('the dtype', [0xa0, 0xbf], { 0xd9: 1, 0xda: 2, 0xdb: 4 });
  const dtype = bytes.toString('latin1', at, (at += dtypeLength));
  const shape: number[] = [];
  for (let dims = arrayLength(); dims > 0; dims--) shape.push(next('a dimension', [0x00, 0x7f], { 0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8 }));
  const size = next('the bytes', [-1, -1], { 0xc4: 1, 0xc5: 2, 0xc6: 4 });
  return ndarrayFromWire(dtype, shape, payload.subarray(at, at + size));
}

for (const Class of [NDArray, Int8Array, Int16Array, Int32Array, Uint16Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array]) {
  addExtension({
    Class,
    type: ndarrayExtType,
    pack: (array: NDArray | TypedArray) => {
      const wire = ndarrayWire(array);
      return splicing && wire[2].byteLength >= spliceBytes ? splicedNdarray(wire) : packr.pack(wire);
    },
    unpack: unpackNdarray,
  });
}

export function encode(value: unknown): Buffer {
  return packr.pack(value);
}

export function decode<T = unknown>(bytes: Uint8Array): T {
  return packr.unpack(bytes) as T;
}

/**
 * Registers the class that `RemoteData` pointers decode to. The client does this with its
 * own `RemoteData`; code that never registers one sees `{ dataUrl }` objects.
 */
export function registerRemoteDataClass<T extends { dataUrl?: string }>(
  Class: new (...args: never[]) => T,
  fromUrl: (url: string) => T,
): void {
  addExtension({
    Class,
    type: remoteDataExtType,
    pack: (data: T) => {
      if (!data.dataUrl) throw new TypeError('a RemoteData must be saved before it is sent');
      return Buffer.from(data.dataUrl, 'utf8');
    },
    unpack: (payload: Uint8Array) => fromUrl(Buffer.from(payload).toString('utf8')),
  });
}

addExtension({
  type: remoteDataExtType,
  unpack: (payload: Uint8Array) => ({ dataUrl: Buffer.from(payload).toString('utf8') }),
});

/** Turns bytes into something JSON can carry, for clients that speak JSON. */
export function jsonSafe(value: unknown): unknown {
  if (value instanceof Uint8Array) return { $bytes: Buffer.from(value).toString('base64') };
  if (typeof value === 'bigint') return value.toString();
  if (ArrayBuffer.isView(value)) return Array.from(value as unknown as ArrayLike<number>, jsonSafe);
  if (Array.isArray(value)) return value.map(jsonSafe);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = jsonSafe(v);
    return out;
  }
  return value;
}
