import assert from 'node:assert/strict';
import { request } from 'node:http';
import { Client } from '../src/index.js';
import { decode, encode } from '../src/codec.js';
import { join } from 'node:path';
import { Capture, repoRoot, startNode, startRedis, stopCluster, type TestNode, type TestRedis } from './harness.js';

const modelJob = `model=${join(repoRoot, 'integration_tests', 'jobs', 'model', 'model.py')}`;

/** A small seeded generator, so a failure can be replayed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const vocabulary = ['x', 'y', 'seconds', 'kind', 'tags', 'eval', 'exec', 'script', 'returns', 'keep', 'on', 'calls', 'fn', 'args', 'kwargs', 'opts', 'payload', 'route', 'data', 'timeout', 'host', 'queue', 'retries', 'batchId', 'cursor', 'waitMs', 'remaining', 'taskIds', 'urls', 'src', 'name', 'glob', 'intermediateResults', 'noRouteData'];
const strings = ['', 'operator:add', 'b0123456789abcdef', 'b0123456789abcdef-0', '../../etc/passwd', '\u0000', '💥', 'x'.repeat(5000), '0-0', 'default', '-1', 'NaN', '{}', 'def f(): pass'];

function randomValue(rand: () => number, depth = 0): unknown {
  const pick = Math.floor(rand() * (depth > 3 ? 6 : 9));
  switch (pick) {
    case 0: return null;
    case 1: return rand() < 0.5;
    case 2: return [0, -1, 1.5, 2 ** 53 + 1, -(2 ** 63), 1e308, 42][Math.floor(rand() * 7)];
    case 3: return strings[Math.floor(rand() * strings.length)];
    case 4: return String.fromCharCode(...Array.from({ length: Math.floor(rand() * 40) }, () => Math.floor(rand() * 0xd7ff)));
    case 5: return new Uint8Array(Array.from({ length: Math.floor(rand() * 20) }, () => Math.floor(rand() * 256)));
    case 6: return Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(rand, depth + 1));
    default: {
      const out: Record<string, unknown> = {};
      for (let k = Math.floor(rand() * 5); k > 0; k--) out[vocabulary[Math.floor(rand() * vocabulary.length)]] = randomValue(rand, depth + 1);
      return out;
    }
  }
}

interface Answer {
  status: number;
  body: Buffer;
  type: string;
}

function send(base: string, method: string, path: string, body: Buffer | undefined, type: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(base), { method, path, headers: body ? { 'content-type': type, 'content-length': body.length } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), type: String(res.headers['content-type'] ?? '') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('fuzzing every route', function () {
  this.timeout(300_000);
  let redis: TestRedis;
  let node: TestNode;

  before(async function () {
    redis = await startRedis();
    // --timeout: a job the fuzz makes sleep is killed and answers 504, the one 5xx allowed.
    node = await startNode(redis.url, 'fuzzed', ['--max-request-size', '200000', '--timeout', '1', '--entrypoint', modelJob, '--entrypoint', 'mul=kstest_jobs:multiply']);
  });
  after(async function () {
    await stopCluster(redis, [node]);
  });

  it('answers malformed, oversized and wrongly typed input with 4xx only', async function () {
    const rand = prng(20261123);
    const routes: [string, string][] = [
      ['POST', '/api/v1/calls'],
      ['POST', '/api/v1/call'],
      ['POST', '/api/v1/all'],
      ['POST', '/api/v1/all/here'],
      ['POST', '/api/v1/results'],
      ['POST', '/api/v1/cancel'],
      ['POST', '/api/v1/admin/cancel-all'],
      ['POST', '/api/v1/data/info'],
      ['GET', '/api/v1/data?glob='],
      ['PUT', '/api/v1/data/'],
      ['GET', '/api/v1/data/'],
      ['DELETE', '/api/v1/data/'],
      ['POST', '/api/v1/data/'],
      ['GET', '/api/v1/hosts'],
      ['GET', '/info'],
      ['PATCH', '/api/v1/calls'],
      ['POST', '/api/v1/jobs/model/perform'],
      ['POST', '/api/v1/jobs/model/sleep'],
      ['POST', '/api/v1/jobs/mul/perform'],
      ['POST', '/api/v1/jobs/'],
      ['GET', '/api/v1/jobs/'],
      ['GET', '/api/v1/jobs/model/site/'],
      ['DELETE', '/api/v1/jobs/model/perform'],
      ['GET', '/api/v1/openapi.json'],
      ['GET', '/docs/'],
    ];
    const pathNoise = ['', 'a', 'a/b', '..', '%2e%2e/x', '%00', 'x%zz', '/replicate', 'a/replicate', '*', '%2F', 'é/ü', 'q?fmt=nope', 'q?fmt=json'];
    let requests = 0;
    let previous = '';
    for (const [method, route] of routes) {
      for (let k = 0; k < 40; k++) {
        const value = randomValue(rand);
        const form = Math.floor(rand() * 5);
        let body: Buffer | undefined;
        let type = 'application/json';
        if (form === 0) body = Buffer.from(JSON.stringify(value) ?? 'null');
        else if (form === 1) {
          body = encode(value);
          type = 'application/msgpack';
        } else if (form === 2) {
          body = Buffer.from(Array.from({ length: Math.floor(rand() * 300) }, () => Math.floor(rand() * 256)));
          type = rand() < 0.5 ? 'application/msgpack' : 'application/json';
        } else if (form === 3) {
          body = Buffer.alloc(250_000 + Math.floor(rand() * 10_000), 0x5b);
        } else {
          type = ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data'][Math.floor(rand() * 3)];
          body = Buffer.from(String(value));
        }
        const suffix = route.endsWith('/') || route.endsWith('=') ? encodeURI(pathNoise[Math.floor(rand() * pathNoise.length)]).replace(/%25/g, '%') : '';
        const answer = await send(node.url, method, route + suffix, method === 'GET' ? undefined : body, type).catch((error: Error) => {
          throw new Error(`${method} ${route}${suffix} (${type}, ${body?.length} bytes): ${error.message}; before: ${previous}`);
        });
        requests += 1;
        previous = `${method} ${route}${suffix} ${answer.status} ${type} ${body?.length}`;
        const killedJob = answer.status === 504 && route.startsWith('/api/v1/jobs/');
        assert.ok(answer.status < 500 || killedJob, `${method} ${route}${suffix} (${type}, ${body?.length} bytes) -> ${answer.status} ${answer.body.toString().slice(0, 300)}`);
        if (answer.status >= 400 && answer.body.length) {
          const parsed = (answer.type.includes('msgpack') ? decode(answer.body) : JSON.parse(answer.body.toString())) as { error?: string; detail?: string };
          assert.ok(parsed.error && typeof parsed.detail === 'string', `${method} ${route}${suffix} -> ${answer.status} without {error, detail}`);
        }
      }
    }
    assert.equal(requests, routes.length * 40);
    const client = new Client(node.url, { output: new Capture() });
    assert.equal(await client.call('operator:add', [1, 2]), 3, 'the node still serves');
    client.close();
  });
});
