import { Packr, addExtension } from 'msgpackr';

/**
 * The one msgpack setup shared by client and node, readable by Python's `msgpack`:
 * no records (Python would see ExtType 114), ints past 2^53 as BigInt instead of losing
 * digits, `undefined` as nil. Typed arrays cross as ext 2 (numpy arrays in Python), because
 * msgpackr packs a Float64Array as bin of the right length but the wrong bytes.
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

type TypedArrayClass =
  | Int8ArrayConstructor
  | Int16ArrayConstructor
  | Int32ArrayConstructor
  | Uint16ArrayConstructor
  | Uint32ArrayConstructor
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | BigInt64ArrayConstructor
  | BigUint64ArrayConstructor;

/** numpy's little-endian dtype strings for the typed arrays that have one. */
const dtypes: [string, TypedArrayClass][] = [
  ['|i1', Int8Array],
  ['<i2', Int16Array],
  ['<i4', Int32Array],
  ['<u2', Uint16Array],
  ['<u4', Uint32Array],
  ['<f4', Float32Array],
  ['<f8', Float64Array],
  ['<i8', BigInt64Array],
  ['<u8', BigUint64Array],
];
const classByDtype = new Map<string, TypedArrayClass>(dtypes);

/** An array that has no TypedArray of its own shape: several dimensions or an exotic dtype. */
export interface NdArray {
  dtype: string;
  shape: number[];
  data: Uint8Array | ArrayBufferView;
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

function unpackNdarray(payload: Uint8Array): unknown {
  const [dtype, shape, bytes] = packr.unpack(payload) as [string, number[], Uint8Array];
  const Class = classByDtype.get(dtype);
  if (!Class) return { dtype, shape, data: bytes };
  // Copy into a fresh buffer: the decoded bytes may be unaligned for the element size.
  const aligned = new Uint8Array(bytes.byteLength);
  aligned.set(bytes);
  const data = new Class(aligned.buffer);
  return shape.length === 1 ? data : { dtype, shape, data };
}

for (const [dtype, Class] of dtypes) {
  addExtension({
    Class,
    type: ndarrayExtType,
    pack: (array: ArrayBufferView & { length: number }) =>
      packr.pack([dtype, [array.length], bytesOf(array)]),
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
  if (ArrayBuffer.isView(value)) return Array.from(value as unknown as ArrayLike<number>);
  if (Array.isArray(value)) return value.map(jsonSafe);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = jsonSafe(v);
    return out;
  }
  return value;
}
