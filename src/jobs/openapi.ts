import type { JobEndpoint } from '../types.js';
import type { CatalogEntry } from './catalog.js';

type Schema = Record<string, unknown>;

const errorSchema: Schema = {
  type: 'object',
  properties: {
    error: { type: 'string', description: 'what went wrong, as a word: bad_request, exception, timeout...' },
    detail: { type: 'string' },
    pythonType: { type: 'string', description: "the job's exception type (error: exception)" },
    traceback: { type: 'string', description: 'the Python traceback (error: exception)' },
  },
  required: ['error', 'detail'],
};

/** Failures every endpoint may answer, as the job routes answer them. */
const failures: Record<string, string> = {
  '400': 'the arguments do not fit the signature (named in detail), or the body is not a JSON object',
  '404': 'no live node loaded the job, or it has no such endpoint',
  '413': 'the body is over --max-request-size',
  '422': 'the job raised (error: exception, with pythonType and traceback), or returned what JSON cannot carry',
  '429': 'the node is at --max-concurrency and its queue is full: retry after Retry-After seconds',
  '504': 'the job ran past --timeout and was killed',
};

function requestSchema(endpoint: JobEndpoint): Schema {
  const properties: Record<string, Schema> = {};
  for (const p of endpoint.parameters) {
    properties[p.name] = {
      ...p.schema,
      ...(p.doc ? { description: p.doc } : {}),
      ...('default' in p ? { default: p.default } : {}),
    };
  }
  const required = endpoint.parameters.filter((p) => p.required).map((p) => p.name);
  return { type: 'object', properties, ...(required.length ? { required } : {}), additionalProperties: endpoint.extraParameters };
}

function operation(job: CatalogEntry, endpoint: JobEndpoint): Schema {
  const responses: Record<string, Schema> = {
    '200': {
      description: endpoint.returns.doc || 'the result',
      content: { 'application/json': { schema: endpoint.returns.schema } },
    },
  };
  for (const [status, description] of Object.entries(failures)) {
    responses[status] = { description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
  }
  const body: Schema = { schema: requestSchema(endpoint) };
  if (endpoint.example !== undefined) body.example = endpoint.example;
  return {
    tags: [job.name],
    operationId: `${job.name}${endpoint.path}`.replace(/[^A-Za-z0-9_]+/g, '_'),
    summary: endpoint.summary || `${job.name} ${endpoint.path}`,
    ...(endpoint.description ? { description: endpoint.description } : {}),
    parameters: [{ name: 'output', in: 'query', required: false, description: "1: answer {result, output} with what the job printed", schema: { type: 'string', enum: ['1'] } }],
    requestBody: { required: true, content: { 'application/json': body } },
    responses,
  };
}

/**
 * OpenAPI 3.1 of every job in the cluster: each endpoint's request schema (from its
 * signature), example and answers; each static file. Servers are relative, so the document
 * works behind a proxy that adds a path prefix.
 */
export function openApiDocument(jobs: CatalogEntry[], opts: { version: string; bearer: boolean }): Schema {
  const paths: Record<string, Schema> = {};
  for (const job of jobs) {
    for (const endpoint of job.endpoints) paths[`/api/v1/jobs/${job.name}${endpoint.path}`] = { post: operation(job, endpoint) };
    for (const file of job.statics) {
      paths[`/api/v1/jobs/${job.name}${file.path}`] = {
        get: { tags: [job.name], operationId: `${job.name}${file.path}_file`.replace(/[^A-Za-z0-9_]+/g, '_'), summary: `static: ${file.path}`, responses: { '200': { description: `the file (${file.mimetype})` } } },
      };
    }
  }
  return {
    openapi: '3.1.0',
    info: { title: 'kitchensink jobs', version: opts.version, description: 'Python jobs served by this kitchensink cluster (ks start --entrypoint NAME=TARGET).' },
    servers: [{ url: '../..' }],
    tags: jobs.map((job) => ({ name: job.name, description: [job.summary, job.description].filter(Boolean).join('\n\n') || job.target })),
    paths,
    components: {
      schemas: { Error: errorSchema },
      ...(opts.bearer ? { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } } : {}),
    },
    ...(opts.bearer ? { security: [{ bearer: [] }] } : {}),
  };
}
