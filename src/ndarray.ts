/**
 * numpy arrays on the TypeScript side. An `NDArray` is a dtype, a shape and a TypedArray over
 * the elements in C order. A Python `ndarray` arrives as one, its `data` a view of the received
 * bytes; one made with `ndarray()` arrives in Python as an `ndarray` over the received buffer.
 * On the wire (msgpack ext 2) it is `[dtype, shape, bytes]`, dtype in numpy's `.str` form.
 */

export type TypedArray =
  | Int8Array
  | Uint8Array
  | Uint8ClampedArray
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

type TypedArrayClass = { new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): TypedArray; BYTES_PER_ELEMENT: number };

/**
 * The TypedArray that holds each numpy dtype (kind + item size, little-endian). bool is one
 * byte per element (0 or 1), float16 its raw bits, complex numbers (re, im) pairs, datetime64
 * and timedelta64 int64 counts of the unit the dtype names.
 */
const classByKind: Record<string, TypedArrayClass> = {
  b1: Uint8Array,
  u1: Uint8Array,
  i1: Int8Array,
  u2: Uint16Array,
  i2: Int16Array,
  f2: Uint16Array,
  u4: Uint32Array,
  i4: Int32Array,
  f4: Float32Array,
  u8: BigUint64Array,
  i8: BigInt64Array,
  f8: Float64Array,
  c8: Float32Array,
  c16: Float64Array,
  M8: BigInt64Array,
  m8: BigInt64Array,
};

/** The numpy dtype a TypedArray means when `ndarray()` is given none. */
const dtypeByClass = new Map<unknown, string>([
  [Int8Array, '|i1'],
  [Uint8Array, '|u1'],
  [Uint8ClampedArray, '|u1'],
  [Int16Array, '<i2'],
  [Uint16Array, '<u2'],
  [Int32Array, '<i4'],
  [Uint32Array, '<u4'],
  [Float32Array, '<f4'],
  [Float64Array, '<f8'],
  [BigInt64Array, '<i8'],
  [BigUint64Array, '<u8'],
]);

/** `<f8` → `f8`, `<M8[ns]` → `M8`; a big-endian dtype has no TypedArray here. */
function kindOf(dtype: string): string | undefined {
  const match = /^([<|])([a-zA-Z])(\d+)/.exec(dtype);
  return match ? `${match[2]}${match[3]}` : undefined;
}

/** TypedArray elements per array element: 2 for complex, else 1. */
function lanes(dtype: string): number {
  return kindOf(dtype)?.startsWith('c') ? 2 : 1;
}

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((product, n) => product * n, 1);
}

/** An n-dimensional numpy array: `data` holds the elements in C (row-major) order. */
export class NDArray<T extends TypedArray = TypedArray> {
  constructor(
    readonly dtype: string,
    readonly shape: number[],
    readonly data: T,
  ) {}

  /** The number of elements (the product of the shape). */
  get size(): number {
    return sizeOf(this.shape);
  }
}

/**
 * An array to send to Python, where it arrives as `numpy.ndarray` of this shape (default: 1-D)
 * over the received bytes (read-only, no copy). `dtype` says what the TypedArray holds when its
 * class alone does not: `'|b1'` (bool) over a Uint8Array, `'<f2'` (float16) over a Uint16Array,
 * `'<c16'` (complex128) over a Float64Array of (re, im) pairs.
 * @throws TypeError when the shape does not fit the data or the dtype does not fit the class
 */
export function ndarray<T extends TypedArray>(data: T, shape?: number[], dtype?: string): NDArray<T> {
  if (!ArrayBuffer.isView(data) || data instanceof DataView) throw new TypeError('ndarray() takes a TypedArray (Float64Array, Int32Array, ...)');
  const type = dtype ?? dtypeByClass.get(data.constructor);
  const Class = type === undefined ? undefined : classByKind[kindOf(type) ?? ''];
  if (!type || Class !== data.constructor && !(Class === Uint8Array && data instanceof Uint8ClampedArray)) {
    throw new TypeError(`dtype ${JSON.stringify(dtype)} is not held by a ${data.constructor.name}`);
  }
  const dims = shape ?? [data.length / lanes(type)];
  if (!dims.every((n) => Number.isInteger(n) && n >= 0) || sizeOf(dims) * lanes(type) !== data.length) {
    throw new TypeError(`shape [${dims.join(', ')}] does not fit ${data.length} elements of ${type}`);
  }
  return new NDArray(type, dims, data);
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** The wire form of an NDArray or of a bare TypedArray (1-D, dtype from its class). */
export function ndarrayWire(array: NDArray | TypedArray): [string, number[], Uint8Array] {
  if (array instanceof NDArray) return [array.dtype, array.shape, bytesOf(array.data)];
  return [dtypeByClass.get(array.constructor) ?? '|u1', [array.length], bytesOf(array)];
}

/**
 * The NDArray that `[dtype, shape, bytes]` describes. `data` views `bytes` when they sit at an
 * offset the element size divides (TypedArrays require it); otherwise they are copied once.
 * A dtype with no TypedArray (big-endian, float128) keeps its raw bytes as a Uint8Array.
 */
export function ndarrayFromWire(dtype: string, shape: number[], bytes: Uint8Array): NDArray {
  const Class = classByKind[kindOf(dtype) ?? ''] ?? Uint8Array;
  let source = bytes;
  if (bytes.byteOffset % Class.BYTES_PER_ELEMENT !== 0) {
    source = new Uint8Array(bytes.byteLength);
    source.set(bytes);
  }
  const length = Math.floor(source.byteLength / Class.BYTES_PER_ELEMENT);
  return new NDArray(dtype, shape, new Class(source.buffer, source.byteOffset, length));
}

/**
 * The header of numpy's `.npy` format (version 1.0) for a C-ordered array: magic, version,
 * header length, then the header dict padded so the data starts at a multiple of 64 bytes.
 * `fmt: 'ndarray'` data is this header and the elements, so Python maps it with `np.load(...,
 * mmap_mode='r')` and reads it without a copy.
 */
export function npyHeader(dtype: string, shape: number[]): Buffer {
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  const dict = `{'descr': '${dtype}', 'fortran_order': False, 'shape': (${dims}), }`;
  const unpadded = 10 + dict.length + 1;
  const text = dict + ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const header = Buffer.alloc(10 + text.length);
  header.write('\x93NUMPY', 0, 'latin1');
  header[6] = 1;
  header[7] = 0;
  header.writeUInt16LE(text.length, 8);
  header.write(text, 10, 'latin1');
  return header;
}

/**
 * The NDArray that `.npy` bytes hold (version 1 or 2, C order, little-endian), its data a view
 * of `bytes` when aligned.
 * @throws TypeError when the bytes are not such an array
 */
export function fromNpy(bytes: Uint8Array): NDArray {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.toString('latin1', 0, 6) !== '\x93NUMPY') throw new TypeError('not .npy data (no \\x93NUMPY magic)');
  const major = buffer[6];
  const headerLength = major === 1 ? buffer.readUInt16LE(8) : buffer.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const dict = buffer.toString('latin1', start, start + headerLength);
  const descr = /'descr':\s*'([^']+)'/.exec(dict)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(dict)?.[1];
  const dims = /'shape':\s*\(([^)]*)\)/.exec(dict)?.[1];
  if (!descr || !fortran || dims === undefined) throw new TypeError(`a .npy header this reader does not understand: ${dict.trim()}`);
  if (fortran === 'True') throw new TypeError('a Fortran-ordered .npy array: save it C-ordered (np.ascontiguousarray)');
  const shape = dims.split(',').map((d) => d.trim()).filter(Boolean).map(Number);
  return ndarrayFromWire(descr, shape, bytes.subarray(start + headerLength));
}
