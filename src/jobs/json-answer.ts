import { NDArray } from '../ndarray.js';

/** A job's result that JSON cannot carry; the message names the value's type. */
export class UnsendableResult extends Error {}

/** dtypes whose elements are JSON numbers (kind and item size); bool is handled apart. */
const numericKinds = /^[<|]([iu][1248]|f[48])$/;

/** A numpy array's elements as nested JSON arrays, by its shape. */
function ndarrayJson({ dtype, shape, data }: Pick<NDArray, 'dtype' | 'shape' | 'data'>, at: string): string {
  let item: (k: number) => string;
  if (numericKinds.test(dtype) || dtype === 'typed') {
    const flat = data as unknown as ArrayLike<number | bigint>;
    item = (k) => numberJson(flat[k], `${at} (numpy ${dtype})`);
  } else if (dtype === '|b1') {
    item = (k) => (data[k] ? 'true' : 'false');
  } else {
    throw new UnsendableResult(`${at} is a numpy array of dtype ${dtype}, which JSON cannot carry: return .tolist() or a RemoteData`);
  }
  let next = 0;
  const nest = (depth: number): string => {
    const parts: string[] = [];
    for (let k = 0; k < shape[depth]; k++) parts.push(depth === shape.length - 1 ? item(next++) : nest(depth + 1));
    return `[${parts.join(',')}]`;
  };
  return shape.length ? nest(0) : item(0);
}

function numberJson(value: number | bigint, at: string): string {
  if (typeof value === 'bigint') return value.toString();
  if (!Number.isFinite(value)) throw new UnsendableResult(`${at} is the float ${value}, which JSON cannot carry`);
  return JSON.stringify(value);
}

/**
 * A job's result as JSON text: Python ints of any size stay exact, bytes become
 * `{"$bytes": base64}`, numpy arrays nested lists (bool and numeric dtypes), a `RemoteData`
 * `{"dataUrl": url}`. NaN, infinities and other numpy dtypes are refused.
 * @throws UnsendableResult naming where in the result and what type
 */
export function jobJson(value: unknown, at = 'the result'): string {
  if (value === null || value === undefined) return 'null';
  switch (typeof value) {
    case 'boolean':
    case 'string':
      return JSON.stringify(value);
    case 'number':
    case 'bigint':
      return numberJson(value, at);
    case 'object':
      break;
    default:
      throw new UnsendableResult(`${at} is a ${typeof value}, which JSON cannot carry`);
  }
  if (value instanceof Uint8Array) return JSON.stringify({ $bytes: Buffer.from(value).toString('base64') });
  if (ArrayBuffer.isView(value)) {
    const flat = value as unknown as ArrayLike<number | bigint>;
    return ndarrayJson({ dtype: 'typed', shape: [flat.length], data: value as NDArray['data'] }, at);
  }
  if (Array.isArray(value)) return `[${value.map((item, k) => jobJson(item, `${at}[${k}]`)).join(',')}]`;
  if (value instanceof NDArray) return ndarrayJson(value, at);
  const entries = Object.entries(value as Record<string, unknown>).map(([key, item]) => `${JSON.stringify(key)}:${jobJson(item, `${at}[${JSON.stringify(key)}]`)}`);
  return `{${entries.join(',')}}`;
}
