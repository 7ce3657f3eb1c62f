import assert from 'node:assert/strict';
import { join } from 'node:path';
import parsePrometheus from 'parse-prometheus-text-format';
import { Client, RemoteError } from '../src/index.js';
import { Capture, exactPathRequest, launchChromium, rawRequest, repoRoot, runCli, startNode, startRedis, stopCluster, waitFor, type TestNode, type TestRedis } from './harness.js';

const modelJob = `model=${join(repoRoot, 'integration_tests', 'jobs', 'model', 'model.py')}`;

/** POSTs JSON to a job route; answers status, parsed body and headers. */
async function post(url: string, path: string, body: unknown, contentType = 'application/json') {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': contentType }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json: json as Record<string, unknown>, text, headers: res.headers };
}

describe('jobs: Python entrypoints served over HTTP', function () {
  let redis: TestRedis;
  let withJob: TestNode;
  let withoutJob: TestNode;
  let functionJob: TestNode;
  let client: Client;

  before(async function () {
    redis = await startRedis();
    [withJob, withoutJob, functionJob] = await Promise.all([
      startNode(redis.url, 'jobhost', ['--entrypoint', modelJob, '--num-workers', '2', '--timeout', '2', '--max-request-size', '10000']),
      startNode(redis.url, 'plain'),
      startNode(redis.url, 'fnhost', ['--entrypoint', 'mul=kstest_jobs:multiply', '--entrypoint', 'badmetrics=kstest_jobs:BadMetrics']),
    ]);
    client = new Client(withoutJob.url, { output: new Capture() });
  });

  after(async function () {
    await stopCluster(redis, [withJob, withoutJob, functionJob], client);
  });

  it('lists every job of the cluster with its endpoints, parameters, docs, example and hosts', async function () {
    const { status, json } = await rawRequest(withoutJob.url, 'GET', '/api/v1/jobs');
    assert.equal(status, 200);
    const jobs = (json as unknown as { jobs: Record<string, any>[] }).jobs;
    assert.deepEqual(jobs.map((j) => j.name), ['badmetrics', 'model', 'mul']);
    const [, model, mul] = jobs;
    assert.deepEqual(model.hosts, ['jobhost']);
    assert.equal(model.summary, 'Scales products by a weight it loads at start.');
    assert.deepEqual(model.endpoints.map((e: { path: string }) => e.path), ['/perform', '/explain', '/fail', '/odd', '/sleep', '/whoami']);
    const perform = model.endpoints[0];
    assert.equal(perform.summary, 'Multiplies x and y, then scales.');
    assert.deepEqual(perform.parameters[0], { name: 'x', type: 'float', schema: { type: 'number' }, required: true, doc: 'the first factor' });
    assert.deepEqual(perform.parameters[1], { name: 'y', type: 'float', schema: { type: 'number' }, required: false, default: 2, doc: 'the second factor' });
    assert.deepEqual(perform.parameters[2].schema, { anyOf: [{ type: 'array', items: { type: 'string' } }, { type: 'null' }] });
    assert.deepEqual(perform.example, { x: 3, y: 4 });
    assert.equal(perform.returns.doc, 'the product, and where it ran');
    // Where the job's files are on the node's disk is not the callers' business.
    assert.deepEqual(model.statics, [
      { path: '/manifest', mimetype: 'application/json' },
      { path: '/site', mimetype: 'application/octet-stream' },
    ]);
    assert.equal(model.folder, undefined);
    assert.equal(((await rawRequest(withoutJob.url, 'GET', '/api/v1/jobs/model')).json as Record<string, unknown>).folder, undefined);
    assert.deepEqual(mul.hosts, ['fnhost']);
    assert.equal(mul.endpoints[0].summary, 'Multiplies two integers.');
  });

  it("answers Racetrack's /parameters", async function () {
    const { json } = await rawRequest(withoutJob.url, 'GET', '/api/v1/jobs/model/parameters');
    assert.deepEqual(json, [
      { name: 'x', type: 'float', required: true },
      { name: 'y', type: 'float', default: 2, required: false },
      { name: 'tags', type: 'Optional[List[str]]', default: null, required: false },
    ]);
  });

  it('performs on the node that loaded the job, whose __init__ ran once per interpreter, and logs its output', async function () {
    for (let k = 0; k < 4; k++) {
      const { status, json } = await post(withJob.url, '/api/v1/jobs/model/perform', { x: 3, y: 4 });
      assert.equal(status, 200);
      assert.deepEqual(json, { product: 120, host: 'jobhost', instances: 1, tags: null });
    }
    await waitFor(() => withJob.logs().includes('job model: performing 3 * 4'), 'the job output in the node log');
  });

  it('returns what the job printed when asked to', async function () {
    const { json } = await post(withJob.url, '/api/v1/jobs/model/perform?output=1', { x: 1 });
    assert.deepEqual(json, { result: { product: 20, host: 'jobhost', instances: 1, tags: null }, output: [['stdout', 'performing 1 * 2.0\n']] });
  });

  it("forwards a perform from a node without the job to the job's queue", async function () {
    const { status, json } = await post(withoutJob.url, '/api/v1/jobs/model/perform', { x: 2, tags: ['a'] });
    assert.equal(status, 200);
    assert.deepEqual(json, { product: 40, host: 'jobhost', instances: 1, tags: ['a'] });
    assert.deepEqual((await post(withJob.url, '/api/v1/jobs/mul/perform', { x: 6, y: 7 })).json, 42);
  });

  it('serves auxiliary endpoints', async function () {
    assert.deepEqual((await post(withoutJob.url, '/api/v1/jobs/model/explain', { x: 3 })).json, { x_importance: 0.75 });
  });

  it("serves the job's static files with their mimetypes, never a file outside its folder", async function () {
    const manifest = await fetch(`${withJob.url}/api/v1/jobs/model/manifest`);
    assert.equal(manifest.status, 200);
    assert.equal(manifest.headers.get('content-type'), 'application/json');
    assert.deepEqual(await manifest.json(), { scale: 10 });
    const page = await fetch(`${withJob.url}/api/v1/jobs/model/site/index.html`);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.equal((await page.text()).trim(), '<h1>model</h1>');
    for (const path of ['/api/v1/jobs/model/site/../model.py', '/api/v1/jobs/model/site/%2e%2e/model.py', '/api/v1/jobs/model/site/../../../../../etc/passwd']) {
      const res = await exactPathRequest(withJob.url, 'GET', path);
      assert.ok(res.status === 400 || res.status === 404, `${path}: ${res.status} ${res.body}`);
      assert.doesNotMatch(res.body, /import json|root:/);
    }
    assert.equal((await fetch(`${withJob.url}/api/v1/jobs/model/site`)).status, 404);
    // A node that did not load the job passes the file on from one that did.
    const forwarded = await fetch(`${withoutJob.url}/api/v1/jobs/model/site/index.html`);
    assert.equal(forwarded.status, 200);
    assert.match(forwarded.headers.get('content-type') ?? '', /^text\/html/);
    assert.equal((await forwarded.text()).trim(), '<h1>model</h1>');
    assert.equal((await fetch(`${withoutJob.url}/api/v1/jobs/model/site/nope.html`)).status, 404);
  });

  it('refuses bad input before the job runs, naming what is wrong', async function () {
    const cases: [string, unknown, number, RegExp][] = [
      ['/api/v1/jobs/nope/perform', {}, 404, /no live node loaded a job named "nope"/],
      ['/api/v1/jobs/model/nope', {}, 404, /has no endpoint \/nope/],
      ['/api/v1/jobs/model/perform', { y: 1 }, 400, /missing parameter x/],
      ['/api/v1/jobs/model/perform', { x: 1, z: 2 }, 400, /unknown parameter z/],
      ['/api/v1/jobs/model/perform', { x: 'one' }, 400, /parameter x is string, not number/],
      ['/api/v1/jobs/model/perform', { x: 1, tags: ['a', 2] }, 400, /parameter tags \[1\] is integer, not string/],
      ['/api/v1/jobs/mul/perform', { x: 1.5, y: 2 }, 400, /parameter x is number, not integer/],
      ['/api/v1/jobs/model/perform', [1, 2], 400, /takes a JSON object of keyword arguments, not array/],
      ['/api/v1/jobs/model/perform', '{"x": ', 400, /not valid JSON/],
      ['/api/v1/jobs/model/perform', { x: 'y'.repeat(20_000) }, 413, /max-request-size/],
    ];
    for (const [path, body, status, detail] of cases) {
      const res = await post(withJob.url, path, body);
      assert.equal(res.status, status, `${path} ${JSON.stringify(body).slice(0, 50)}: ${res.text}`);
      assert.match(String(res.json.detail), detail);
    }
    assert.equal((await post(withJob.url, '/api/v1/jobs/model/perform', 'x=1', 'application/x-www-form-urlencoded')).status, 415);
  });

  it("answers a job's exception with 422, its Python type and traceback", async function () {
    const { status, json } = await post(withJob.url, '/api/v1/jobs/model/fail', { message: 'no such customer' });
    assert.equal(status, 422);
    assert.equal(json.error, 'exception');
    assert.equal(json.pythonType, 'ValueError');
    assert.equal(json.detail, 'no such customer');
    assert.match(String(json.traceback), /raise ValueError\(message\)/);
  });

  it('converts what JSON cannot carry as documented, or refuses it naming the type', async function () {
    const odd = (kind: string) => post(withJob.url, '/api/v1/jobs/model/odd', { kind });
    assert.deepEqual((await odd('bytes')).json, { $bytes: 'AAE=' });
    assert.equal((await odd('bigint')).text, '13835058055282163712');
    assert.deepEqual((await odd('matrix')).json, [
      [0, 1, 2],
      [3, 4, 5],
    ]);
    assert.deepEqual((await odd('bools')).json, [true, false]);
    const nan = await odd('nan');
    assert.equal(nan.status, 422);
    assert.match(String(nan.json.detail), /the result is the float NaN, which JSON cannot carry/);
    // Arrays of strings leave Python as lists; complex numbers have no JSON form.
    assert.deepEqual((await odd('strings')).json, ['a', 'bc']);
    const complex = await odd('complex');
    assert.equal(complex.status, 422);
    assert.match(String(complex.json.detail), /numpy array of dtype <c16/);
  });

  it('kills a job stuck past --timeout and answers 504', async function () {
    const { status, json } = await post(withJob.url, '/api/v1/jobs/model/sleep', { seconds: 30 });
    assert.equal(status, 504);
    assert.equal(json.error, 'timeout');
    assert.equal((await post(withJob.url, '/api/v1/jobs/model/sleep', { seconds: 0.01 })).json, 0.01);
  });

  it('is a function like any other from TypeScript: perform, and {job, endpoint} in call and map', async function () {
    const result = await client.perform<{ product: number; host: string }>('model', { x: 5 });
    assert.equal(result.product, 100);
    assert.equal(result.host, 'jobhost');
    assert.deepEqual(await client.perform('model', { x: 1 }, { endpoint: '/explain' }), { x_importance: 0.5 });
    assert.deepEqual(await client.call({ job: 'model', endpoint: '/explain' }, [], { x: 3 }), { x_importance: 0.75 });
    assert.deepEqual(await client.map({ job: 'mul' }, [[2, 3], [4, 5]]), [6, 20]);
    client.bc({ job: 'mul' }, [], { x: 2, y: 2 });
    await client.execute();
    assert.deepEqual(await client.br(), [4]);
    await assert.rejects(client.perform('model', { x: 1 }, { endpoint: '/fail' }), (error: RemoteError) => error.kind === 'exception');
    await assert.rejects(client.perform('nope', {}), /no live node loaded job "nope"/);
  });

  it("answers StandPy's /info fields, with the node's jobs and queues", async function () {
    const { json } = await rawRequest(withJob.url, 'GET', '/info');
    const info = json as unknown as Record<string, unknown>;
    assert.equal(info.environment, 'system');
    assert.match(String(info.prefix), /^\//);
    assert.match(String(info.pythonVersion), /^3\.\d+\.\d+$/);
    assert.equal(info.workers, 2);
    assert.equal(info.timeout, 2);
    assert.equal(info.max_requests, 0);
    assert.equal((info.worker_uptime as number[]).length, 2);
    assert.deepEqual(info.jobs, ['model']);
    assert.deepEqual(info.queues, ['default', 'job.model']);
  });

  it('counts calls, errors, durations, restarts and queues in /metrics, with the job\'s own metrics()', async function () {
    const families = parsePrometheus(await (await fetch(`${withJob.url}/metrics`)).text());
    const family = (name: string) => families.find((f) => f.name === name)!;
    const value = (name: string, labels: Record<string, string>) =>
      Number(family(name).metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))?.value ?? NaN);
    assert.ok(value('ks_calls_total', { function: 'job:model/perform', outcome: 'ok', node: 'jobhost' }) >= 5);
    // One over HTTP, one from the TypeScript client through the job's queue.
    assert.equal(value('ks_call_errors_total', { function: 'job:model/fail', kind: 'exception' }), 2);
    assert.equal(value('ks_call_errors_total', { function: 'job:model/sleep', kind: 'timeout' }), 1);
    assert.ok(value('ks_executor_restarts_total', { reason: 'timeout' }) >= 1);
    assert.equal(family('ks_call_duration_seconds').type, 'HISTOGRAM');
    assert.ok(family('ks_queue_depth').metrics.some((m) => m.labels?.queue === 'job.model'));
    assert.equal(value('model_scale', { job: 'model', node: 'jobhost' }), 10);
    assert.equal(family('model_scale').help, 'the loaded scale');
    assert.ok(value('process_resident_memory_bytes', { node: 'jobhost' }) > 0);
  });

  it("leaves a job's failing metrics() out of the scrape and logs why, never a 5xx", async function () {
    const res = await fetch(`${functionJob.url}/metrics`);
    assert.equal(res.status, 200);
    assert.ok(parsePrometheus(await res.text()).some((f) => f.name === 'ks_calls_total'));
    await waitFor(() => functionJob.logs().includes('job badmetrics: metrics() failed: RuntimeError: metrics are broken'), 'the log line');
  });
});

describe('admission limits', function () {
  let redis: TestRedis;
  let node: TestNode;

  before(async function () {
    redis = await startRedis();
    node = await startNode(redis.url, 'limited', ['--entrypoint', modelJob, '--num-workers', '2', '--max-concurrency', '1', '--max-concurrency-queue', '1']);
  });
  after(async function () {
    await stopCluster(redis, [node]);
  });

  it('runs one at a time, queues one, and answers 429 with Retry-After to the rest', async function () {
    const burst = await Promise.all(Array.from({ length: 5 }, () => post(node.url, '/api/v1/jobs/model/sleep', { seconds: 0.5 })));
    const statuses = burst.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 200, 429, 429, 429]);
    const refused = burst.find((r) => r.status === 429)!;
    assert.equal(refused.headers.get('retry-after'), '1');
    assert.match(String(refused.json.detail), /--max-concurrency/);
    assert.equal((await post(node.url, '/api/v1/jobs/model/sleep', { seconds: 0 })).status, 200);
  });

  it('instantiates the job again in an interpreter recycled by --max-requests', async function () {
    const recycled = await startNode(redis.url, 'recycled', ['--entrypoint', modelJob, '--num-workers', '1', '--max-requests', '2']);
    try {
      const seen: { pid: number; instances: number }[] = [];
      for (let k = 0; k < 3; k++) {
        const { status, json } = await post(recycled.url, '/api/v1/jobs/model/whoami', {});
        assert.equal(status, 200);
        seen.push(json as unknown as { pid: number; instances: number });
      }
      assert.equal(seen[0].pid, seen[1].pid);
      assert.notEqual(seen[2].pid, seen[1].pid);
      assert.deepEqual(seen.map((s) => s.instances), [1, 1, 1]);
    } finally {
      await recycled.stop();
    }
  });

  it('refuses a batch that would leave more than --max-queued calls waiting in a queue, whole, as rejected', async function () {
    const capped = await startNode(redis.url, 'capped', ['--queue', 'capq', '--max-queued', '3']);
    const client = new Client(capped.url, { output: new Capture() });
    try {
      // One call runs on the node's one interpreter, one waits.
      for (let k = 0; k < 2; k++) client.bc('kstest_funcs:slow', [0.5], {}, { queue: 'capq' });
      await client.execute();
      for (let k = 0; k < 3; k++) client.bc('kstest_funcs:add', [k], {}, { queue: 'capq' });
      await assert.rejects(client.execute(), (error: RemoteError) => error.kind === 'rejected' && /queue capq holds 1 waiting calls: this batch's 3 more would pass --max-queued 3/.test(error.message));
      for (let k = 0; k < 2; k++) client.bc('kstest_funcs:add', [k], { y: 10 }, { queue: 'capq' });
      await client.execute();
      const done = await client.br();
      assert.equal(done.length, 4);
      assert.deepEqual(done.slice(2), [10, 11]);
      const refused = await post(capped.url, '/api/v1/calls', { calls: Array.from({ length: 4 }, () => ({ fn: 'operator:add', args: [1, 2], opts: { queue: 'capq' } })) });
      assert.equal(refused.status, 429);
      assert.equal(refused.json.error, 'too_many_requests');
    } finally {
      client.close();
      await capped.stop();
    }
  });
});

describe('jobs: an entrypoint that cannot load stops ks start', function () {
  let redis: TestRedis;

  before(async function () {
    redis = await startRedis();
  });
  after(async function () {
    await redis?.stop();
  });

  for (const [entrypoint, why] of [
    ['broken=kstest_jobs:Broken', /^kitchensink: cannot start: job broken \(kstest_jobs:Broken\): RuntimeError: the model file is missing$/],
    ['args=kstest_jobs:TakesArgs', /job args .*endpoint \/perform takes \*values, which a JSON object of keyword arguments cannot fill/],
    ['gone=/nonexistent/job.py', /job gone .*no file \/nonexistent\/job\.py/],
    ['bad name=x.py', /a job name is letters/],
  ] as const) {
    it(`names the job and the error: ${entrypoint}`, async function () {
      const { code, stderr } = await runCli(['start', '--datadir', redis.dir, '--no-redis', '--redis-connection', redis.url, '--node-port', '0', '--num-workers', '1', '--entrypoint', entrypoint]);
      assert.notEqual(code, 0);
      const lines = stderr.trim().split('\n');
      assert.equal(lines.length, 1, stderr);
      assert.match(lines[0], why);
    });
  }
});

describe('jobs: named tokens, a public path, OpenAPI and Swagger UI', function () {
  let redis: TestRedis;
  let node: TestNode;

  before(async function () {
    redis = await startRedis();
    node = await startNode(redis.url, 'guardedjobs', [
      '--entrypoint',
      modelJob,
      '--token',
      'alice=alice-secret',
      '--token',
      'bob=bob-secret',
      '--public',
      '/api/v1/jobs/model/explain',
    ]);
  });
  after(async function () {
    await stopCluster(redis, [node]);
  });

  const call = (path: string, token?: string) =>
    fetch(`${node.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify({ x: 1 }) });

  it("takes every named token and logs the caller's name with the job's output", async function () {
    assert.equal((await call('/api/v1/jobs/model/perform')).status, 401);
    assert.equal((await call('/api/v1/jobs/model/perform', 'mallory')).status, 401);
    assert.equal((await call('/api/v1/jobs/model/perform', 'alice-secret')).status, 200);
    assert.equal((await call('/api/v1/jobs/model/perform', 'bob-secret')).status, 200);
    await waitFor(() => node.logs().includes('job model (caller bob): performing 1 * 2.0'), "bob's call in the node log");
    assert.match(node.logs(), /job model \(caller alice\): performing 1 \* 2\.0/);
    const client = new Client(node.url, { token: 'bob-secret', output: new Capture() });
    assert.equal((await client.perform<{ product: number }>('model', { x: 2 })).product, 40);
    client.close();
    // The caller labels the call metrics, for performs over HTTP and for calls through the queues.
    const text = await (await fetch(`${node.url}/metrics`, { headers: { authorization: 'Bearer alice-secret' } })).text();
    const calls = parsePrometheus(text).find((f) => f.name === 'ks_calls_total')!.metrics;
    const byCaller = (caller: string) => calls.filter((m) => m.labels?.caller === caller && m.labels?.function === 'job:model/perform').reduce((n, m) => n + Number(m.value), 0);
    assert.equal(byCaller('alice'), 1);
    assert.equal(byCaller('bob'), 2);
  });

  it('opens exactly the --public path and those below it', async function () {
    assert.equal((await call('/api/v1/jobs/model/explain')).status, 200);
    assert.equal((await call('/api/v1/jobs/model/explainer')).status, 401);
    assert.equal((await call('/api/v1/jobs/model/perform')).status, 401);
    assert.equal((await fetch(`${node.url}/api/v1/jobs`)).status, 401);
  });

  it('describes every job in a valid OpenAPI 3.1 document with request schemas and examples', async function () {
    const { Validator } = await import('@seriousme/openapi-schema-validator');
    const res = await fetch(`${node.url}/api/v1/openapi.json`, { headers: { authorization: 'Bearer alice-secret' } });
    const doc = await res.json();
    const validator = new Validator();
    assert.deepEqual(await validator.validate(doc), { valid: true });
    assert.equal(validator.version, '3.1');
    const perform = doc.paths['/api/v1/jobs/model/perform'].post;
    assert.deepEqual(perform.requestBody.content['application/json'].example, { x: 3, y: 4 });
    assert.deepEqual(perform.requestBody.content['application/json'].schema.required, ['x']);
    assert.equal(perform.requestBody.content['application/json'].schema.properties.y.default, 2);
    assert.ok(doc.paths['/api/v1/jobs/model/explain'].post);
    assert.ok(doc.paths['/api/v1/jobs/model/manifest'].get);
    assert.deepEqual(doc.security, [{ bearer: [] }]);
  });

  it('serves Swagger UI from the package, and performs a call through "Try it out" in Chromium', async function () {
    this.timeout(60_000);
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const outside: string[] = [];
      page.on('request', (request) => {
        if (!request.url().startsWith(node.url)) outside.push(request.url());
      });
      page.once('dialog', (dialog) => void dialog.accept('alice-secret'));
      await page.goto(`${node.url}/docs`);
      await page.locator('#operations-model-model_perform').click();
      await page.getByRole('button', { name: 'Try it out' }).click();
      await page.getByRole('button', { name: 'Execute' }).click();
      const body = page.locator('#operations-model-model_perform .responses-wrapper .live-responses-table .response-col_description pre').first();
      await body.waitFor();
      assert.match(await body.innerText(), /"product": 120/);
      assert.deepEqual(outside, []);
    } finally {
      await browser.close();
    }
  });
});
