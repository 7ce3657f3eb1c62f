import { BadRequest } from '../errors.js';
import type { JobEndpoint } from '../types.js';

type Schema = Record<string, unknown>;

const jsonType = (value: unknown): string => {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
};

/** Why `value` does not fit `schema` (the subset the interpreter writes), or '' when it does. */
export function schemaMismatch(value: unknown, schema: Schema): string {
  if (Array.isArray(schema.anyOf)) {
    const options = schema.anyOf as Schema[];
    if (options.some((option) => !schemaMismatch(value, option))) return '';
    // The option of the value's own JSON type says best what is wrong inside it.
    const sameType = options.find((option) => option.type === jsonType(value) || (option.type === 'number' && jsonType(value) === 'integer'));
    return sameType ? schemaMismatch(value, sameType) : `is ${jsonType(value)}, not ${options.map(describeSchema).join(' or ')}`;
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((allowed) => allowed === value)) {
    return `is ${JSON.stringify(value)}, not one of ${JSON.stringify(schema.enum)}`;
  }
  const type = schema.type as string | undefined;
  if (type) {
    const actual = jsonType(value);
    const fits = actual === type || (type === 'number' && actual === 'integer');
    if (!fits) return `is ${actual}, not ${type}`;
  }
  if (type === 'array' && schema.items) {
    for (const [k, item] of (value as unknown[]).entries()) {
      const why = schemaMismatch(item, schema.items as Schema);
      if (why) return `[${k}] ${why}`;
    }
  }
  if (type === 'object' && schema.additionalProperties && typeof schema.additionalProperties === 'object') {
    for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
      const why = schemaMismatch(item, schema.additionalProperties as Schema);
      if (why) return `[${JSON.stringify(key)}] ${why}`;
    }
  }
  return '';
}

function describeSchema(schema: Schema): string {
  if (schema.type === 'array' && schema.items) return `array of ${describeSchema(schema.items as Schema)}`;
  return (schema.type as string | undefined) ?? (schema.enum ? `one of ${JSON.stringify(schema.enum)}` : 'anything');
}

/**
 * Checks a request's keyword arguments against an endpoint's signature before the call runs:
 * an object, no parameter missing, none unknown (unless it takes `**kwargs`), each of its type.
 * @throws BadRequest naming the parameter
 */
export function checkArguments(endpoint: JobEndpoint, kwargs: unknown, job: string): Record<string, unknown> {
  const where = `${job} ${endpoint.path}`;
  if (typeof kwargs !== 'object' || kwargs === null || Array.isArray(kwargs) || kwargs instanceof Uint8Array) {
    throw new BadRequest(`${where} takes a JSON object of keyword arguments, not ${jsonType(kwargs)}`);
  }
  const given = kwargs as Record<string, unknown>;
  const missing = endpoint.parameters.filter((p) => p.required && !(p.name in given)).map((p) => p.name);
  if (missing.length) throw new BadRequest(`${where}: missing parameter${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`);
  if (!endpoint.extraParameters) {
    const known = new Set(endpoint.parameters.map((p) => p.name));
    const unknown = Object.keys(given).filter((name) => !known.has(name));
    if (unknown.length) throw new BadRequest(`${where}: unknown parameter${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (it takes ${[...known].join(', ') || 'none'})`);
  }
  for (const parameter of endpoint.parameters) {
    if (!(parameter.name in given)) continue;
    const why = schemaMismatch(given[parameter.name], parameter.schema);
    if (why) throw new BadRequest(`${where}: parameter ${parameter.name} ${why}${parameter.type ? ` (${parameter.type})` : ''}`);
  }
  return given;
}
