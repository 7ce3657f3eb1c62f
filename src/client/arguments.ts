import { NDArray } from '../ndarray.js';
import { RemoteData } from './remote-data.js';

/** Deeper than this, arguments are refused: most likely a cycle, which msgpack cannot carry. */
const maxDepth = 100;
const int64Min = -(2n ** 63n);
const uint64Max = 2n ** 64n - 1n;

/** What msgpack would drop silently (a function becomes nil) or Python could not read. */
function refusal(value: unknown): string | undefined {
  switch (typeof value) {
    case 'function':
      return 'a function';
    case 'symbol':
      return 'a symbol';
    case 'bigint':
      return value < int64Min || value > uint64Max ? 'an integer beyond 64 bits (send it as a string)' : undefined;
  }
  if (value instanceof Error) return 'an Error';
  if (value instanceof RegExp) return 'a RegExp';
  if (value instanceof Promise) return 'a Promise (await it first)';
  if (value instanceof WeakMap || value instanceof WeakSet) return `a ${value.constructor.name}`;
  return undefined;
}

/**
 * Checks a call's arguments before anything is sent, and finds the `RemoteData` among them
 * (in arrays, plain objects and Maps). Typed arrays, NDArrays and bytes are not looked into.
 * @throws TypeError naming where in the arguments a value cannot be sent, and what it is
 */
export function inspectArguments(value: unknown, where: string, found: RemoteData[] = [], depth = 0): RemoteData[] {
  const refused = refusal(value);
  if (refused) throw new TypeError(`${where} is ${refused}, which cannot be sent to Python`);
  if (value instanceof RemoteData) found.push(value);
  if (!value || typeof value !== 'object' || ArrayBuffer.isView(value) || value instanceof NDArray || value instanceof RemoteData) return found;
  if (depth >= maxDepth) throw new TypeError(`${where} is nested deeper than ${maxDepth} levels (does it hold itself?), which cannot be sent to Python`);
  if (Array.isArray(value) || value instanceof Set) {
    let k = 0;
    for (const item of value) inspectArguments(item, `${where}[${k++}]`, found, depth + 1);
  } else if (value instanceof Map) {
    for (const [key, item] of value) inspectArguments(item, `${where}[${JSON.stringify(String(key))}]`, found, depth + 1);
  } else {
    for (const [key, item] of Object.entries(value)) inspectArguments(item, `${where}.${key}`, found, depth + 1);
  }
  return found;
}
