import { isJobSpec, isPatternSpec, type FnSpec } from '../types.js';

/** Source-text Python function: `{ src, name? }`; the executor calls `name` or the last def. */
export interface PySource {
  src: string;
  name?: string;
}

/** Removes the indentation common to all non-blank lines, so template literals can be indented. */
function dedent(text: string): string {
  const lines = text.replace(/^\n/, '').split('\n');
  const indents = lines.filter((l) => l.trim()).map((l) => /^[ \t]*/.exec(l)![0].length);
  const common = indents.length ? Math.min(...indents) : 0;
  return lines.map((l) => l.slice(common)).join('\n');
}

/**
 * Python source as a function to call: `` py`def add(x, y): return x + y` ``. The last function
 * the source defines is called, unless `py.fn(source, name)` names one.
 */
export function py(strings: TemplateStringsArray, ...values: unknown[]): PySource {
  // Raw text: a `\n` inside a Python string literal stays a backslash and an n.
  const src = strings.raw.reduce((out, s, k) => out + s + (k < values.length ? String(values[k]) : ''), '');
  return { src: dedent(src) };
}

/** Python source and, optionally, the name of the function in it to call. */
py.fn = (source: string, name?: string): PySource => ({ src: dedent(source), name });

/** Checks a function given by the user: `'module:function'`, py source or `{job, endpoint?}`. */
export function toFnSpec(fn: FnSpec): FnSpec {
  if (typeof fn === 'string') {
    if (!fn.includes(':')) throw new TypeError(`function '${fn}' must be 'package.module:function' or py\`...\` source`);
    return fn;
  }
  if (fn && isJobSpec(fn)) return fn.endpoint ? { job: fn.job, endpoint: fn.endpoint } : { job: fn.job };
  if (fn && isPatternSpec(fn)) return fn;
  if (!fn || typeof fn.src !== 'string') throw new TypeError('function must be a string, py`...` source, {job, endpoint?}, {eval}, {exec} or {script}');
  return fn.name ? { src: fn.src, name: fn.name } : { src: fn.src };
}
