import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, NodeRequestError, RemoteError, ndarray, type AllOutcome } from '../src/index.js';
import { Capture, repoRoot, startNode, startRedis, stopCluster, waitFor, type TestNode, type TestRedis } from './harness.js';

describe('interpreter state: eval, exec and scripts in a persistent namespace', function () {
  let redis: TestRedis;
  let node: TestNode;
  let noCode: TestNode;
  let client: Client;
  let out: Capture;
  let scripts: string;

  before(async function () {
    scripts = mkdtempSync(join(tmpdir(), 'ks-scripts-'));
    writeFileSync(join(scripts, 'setup.py'), 'import math\nscale = factor * 2\nprint("set up", scale)\n');
    writeFileSync(join(scripts, 'broken.py'), 'ok = 1\nnope = undefined_name + 1\n');
    redis = await startRedis();
    [node, noCode] = await Promise.all([
      startNode(redis.url, 'stateful', ['--script-dir', scripts, '--queue', 'stateq']),
      startNode(redis.url, 'nocode', ['--no-code', '--script-dir', scripts, '--queue', 'nocodeq']),
    ]);
    out = new Capture();
    client = new Client(node.url, { output: out });
  });

  after(async function () {
    await stopCluster(redis, [node, noCode], client);
    rmSync(scripts, { recursive: true, force: true });
  });

  // One interpreter per node: every call below meets the same namespace.
  const here = { async: false } as const;

  it('keeps what code defines between calls, and takes the vars away after each', async function () {
    assert.equal(await client.exec('model = {"w": w}', { w: 3 }, here), null);
    assert.equal(await client.eval('model["w"] * x', { x: 2 }, here), 6);
    await assert.rejects(client.eval('w', {}, here), (error: RemoteError) => error.kind === 'exception' && error.pythonType === 'NameError');
    assert.equal(await client.eval('x', {}, here).catch((e: RemoteError) => e.pythonType), 'NameError');
  });

  it('keeps the vars with keep, and brings back a value a var shadowed', async function () {
    await client.exec('', { kept: 41 }, { ...here, keep: true });
    assert.equal(await client.eval('kept + 1', {}, here), 42);
    assert.equal(await client.eval('kept', { kept: 'shadow' }, here), 'shadow');
    assert.equal(await client.eval('kept', {}, here), 41);
  });

  it("reads a big payload into the last one's buffer, but never into one a kept array still views", async function () {
    // Where `a` lives (the buffer its payload was read into), and what it holds.
    const where = 'import numpy as np\nview = a\nwhile isinstance(view, np.ndarray):\n    view = view.base\nspot, total = id(view.obj), float(a.sum())\ndel view';
    const big = (fill: number) => ndarray(new Float64Array(262_144).fill(fill)); // 2 MB
    const read = (fill: number) => client.exec<{ spot: number; total: number }>(where, { a: big(fill) }, { ...here, returns: ['spot', 'total'] });
    const first = await read(1);
    const second = await read(2);
    assert.deepEqual([second.spot, second.total], [first.spot, 2 * 262_144], 'the vars went away after the call: the buffer is free again');
    await client.exec('', { kept: big(3) }, { ...here, keep: true });
    const fourth = await read(4);
    assert.notEqual(fourth.spot, first.spot);
    assert.equal(fourth.total, 4 * 262_144);
    assert.equal(await client.eval('float(kept.sum())', {}, here), 3 * 262_144, 'the kept array was not overwritten');
    await client.exec('del kept', {}, here);
  });

  it('refuses vars and arguments msgpack cannot carry before sending anything, naming where', async function () {
    await assert.rejects(client.eval('f()', { f: () => 1 }, here), /vars\.f is a function, which cannot be sent to Python/);
    await assert.rejects(client.exec('x', { deep: { list: [1, new Error('e')] } }, here), /vars\.deep\.list\[1\] is an Error/);
    await assert.rejects(client.call('operator:add', [10n ** 30n, 1]), /args\[0\] is an integer beyond 64 bits \(send it as a string\)/);
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    assert.throws(() => client.bc('operator:add', [loop, 1]), /nested deeper than 100 levels/);
    assert.throws(() => client.bc('operator:add', [Symbol('s'), 1]), /args\[0\] is a symbol/);
  });

  it('answers the variables exec is asked to return, and names those it did not set', async function () {
    assert.deepEqual(await client.exec('a = x + 1\nb = [a] * 2', { x: 1 }, { ...here, returns: ['a', 'b'] }), { a: 2, b: [2, 2] });
    await assert.rejects(client.exec('c = 1', {}, { ...here, returns: ['c', 'd'] }), /returns names d, which the code did not set/);
  });

  it('runs a script of --script-dir in the same namespace, and source scripts too', async function () {
    assert.deepEqual(await client.runScript({ path: 'setup.py' }, { factor: 5 }, { ...here, returns: ['scale'] }), { scale: 10 });
    assert.equal(await client.eval('math.sqrt(scale * 10)', {}, here), 10);
    assert.deepEqual(await client.runScript({ src: 'total = scale + 1' }, {}, { ...here, returns: ['total'] }), { total: 11 });
  });

  it('refuses script paths outside --script-dir with 403, and names a missing one', async function () {
    for (const path of ['../etc/passwd', '/etc/passwd', 'sub/../../x.py']) {
      const refused = await client.runScript({ path }, {}, here).catch((e: unknown) => e);
      assert.ok(refused instanceof NodeRequestError && (refused.status === 403 || refused.status === 400), `${path}: ${String(refused)}`);
    }
    await assert.rejects(client.runScript({ path: 'missing.py' }, {}, here), (error: RemoteError) => error.pythonType === 'FileNotFoundError' && /no script 'missing.py'/.test(error.message));
  });

  it("points tracebacks at the user's lines, syntax errors included", async function () {
    const failed = (await client.exec('first = 1\nsecond = 1 / 0', {}, here).catch((e: unknown) => e)) as RemoteError;
    assert.equal(failed.pythonType, 'ZeroDivisionError');
    assert.match(failed.traceback!, /line 2[\s\S]*second = 1 \/ 0/);
    assert.doesNotMatch(failed.traceback!, /kitchensink[/\\](state|executor)\.py/);
    const script = (await client.runScript({ path: 'broken.py' }, {}, here).catch((e: unknown) => e)) as RemoteError;
    assert.match(script.traceback!, /broken\.py", line 2[\s\S]*nope = undefined_name \+ 1/);
    const syntax = (await client.eval('1 +', {}, here).catch((e: unknown) => e)) as RemoteError;
    assert.equal(syntax.pythonType, 'SyntaxError');
  });

  it('runs each pattern in a bc/execute/br batch, with its output streamed', async function () {
    client.bc({ exec: 'print("hello from", who)\nseen = who', returns: ['seen'] }, [], { who: 'exec' }, { queue: 'stateq' });
    client.bc({ eval: 'x * 2' }, [], { x: 21 }, { queue: 'stateq' });
    client.bc({ script: { path: 'setup.py' }, returns: ['scale'] }, [], { factor: 1 }, { queue: 'stateq' });
    await client.execute();
    assert.deepEqual(await client.br(), [{ seen: 'exec' }, 42, { scale: 2 }]);
    assert.match(out.text, /hello from exec/);
    assert.match(out.text, /set up 2/);
  });

  it('refuses source on a --no-code node, but runs its --script-dir scripts', async function () {
    const guarded = new Client(noCode.url, { output: new Capture() });
    try {
      for (const attempt of [guarded.eval('1 + 1', {}, here), guarded.exec('x = 1', {}, here), guarded.runScript({ src: 'x = 1' }, {}, here)]) {
        const refused = await attempt.catch((e: unknown) => e);
        assert.ok(refused instanceof NodeRequestError && refused.status === 403, String(refused));
        assert.match(refused.detail, /--no-code/);
      }
      assert.deepEqual(await guarded.runScript({ path: 'setup.py' }, { factor: 2 }, { ...here, returns: ['scale'] }), { scale: 4 });
    } finally {
      guarded.close();
    }
  });

  it('starts a replaced interpreter with an empty namespace', async function () {
    await client.exec('doomed = True', {}, here);
    await assert.rejects(client.exec('import time\ntime.sleep(30)', {}, { ...here, timeout: 0.5 }), (error: RemoteError) => error.kind === 'timeout');
    assert.equal(await client.eval('doomed', {}, here).catch((e: RemoteError) => e.pythonType), 'NameError');
  });
});

describe("calls on ALL interpreters (on: 'all')", function () {
  let redis: TestRedis;
  let nodes: TestNode[] = [];
  let client: Client;
  let out: Capture;

  before(async function () {
    redis = await startRedis();
    nodes = await Promise.all(['all1', 'all2', 'all3'].map((name) => startNode(redis.url, name, ['--num-workers', '2'])));
    out = new Capture();
    client = new Client(nodes[0].url, { output: out });
  });

  after(async function () {
    await stopCluster(redis, nodes, client);
  });

  it('runs once on every interpreter of every node and answers one outcome each, so state is set everywhere', async function () {
    const setUp = await client.call<AllOutcome<{ me: number }>[]>({ exec: 'import os\nme = os.getpid()\nprint("ready", me)', returns: ['me'] }, [], {}, { on: 'all' });
    assert.equal(setUp.length, 6);
    assert.deepEqual([...new Set(setUp.map((o) => o.host))].sort(), ['all1', 'all2', 'all3']);
    assert.ok(setUp.every((o) => o.ok));
    const pids = setUp.map((o) => (o.ok ? o.value.me : 0));
    assert.equal(new Set(pids).size, 6);
    assert.equal(out.text.match(/ready \d+/g)?.length, 6);
    // Every interpreter now holds its own `me`: any call, wherever it lands, sees it.
    const asked = await client.call<AllOutcome<number>[]>({ eval: 'me' }, [], {}, { on: 'all' });
    assert.deepEqual(asked.map((o) => (o.ok ? o.value : 0)).sort(), [...pids].sort());
    for (let k = 0; k < 6; k++) assert.ok(pids.includes(await client.eval<number>('me')));
  });

  it('answers each interpreter\'s failure as its outcome', async function () {
    const failed = await client.call<AllOutcome[]>({ eval: '1 / 0' }, [], {}, { on: 'all' });
    assert.equal(failed.length, 6);
    for (const o of failed) assert.ok(!o.ok && o.error instanceof RemoteError && o.error.pythonType === 'ZeroDivisionError');
  });

  it("refuses on: 'all' in a batch, and an unknown on", async function () {
    assert.throws(() => client.bc({ eval: '1' }, [], {}, { on: 'all' }), /works with call\(\)/);
    await assert.rejects(client.call('operator:add', [1, 2], {}, { on: 'every' as 'all' }), /opts.on must be 'any' or 'all'/);
  });
});

describe('persisted ALL calls, replayed on every interpreter that starts later', function () {
  let redis: TestRedis;
  let nodes: TestNode[] = [];
  let client: Client;

  before(async function () {
    redis = await startRedis();
    nodes = [await startNode(redis.url, 'keeper', ['--num-workers', '2', '--max-requests', '4'])];
    client = new Client(nodes[0].url, { output: new Capture() });
  });

  after(async function () {
    await stopCluster(redis, nodes, client);
  });

  const everywhere = <T>(expression: string, opts = {}) => client.call<AllOutcome<T>[]>({ eval: expression }, [], {}, { on: 'all', ...opts });
  const values = <T>(outcomes: AllOutcome<T>[]) => outcomes.map((o) => (o.ok ? o.value : o.error.message));
  const info = async (node: TestNode) => (await (await fetch(`${node.url}/info`)).json()) as { unhealthy: { worker: number; reason: string }[] };

  it('records the call, and replays it after a crash, after --max-requests and on a node that joins', async function () {
    const setUp = await client.call<AllOutcome[]>({ exec: 'setup = 7' }, [], {}, { on: 'all', persist: true });
    assert.equal(setUp.length, 2);
    const recorded = await client.persisted();
    assert.equal(recorded.length, 1);
    assert.deepEqual(recorded[0].fn, { exec: 'setup = 7' });
    const pidsBefore = values(await everywhere<number>('__import__("os").getpid()'));
    // A killed interpreter comes back with the setup...
    await assert.rejects(client.exec('import time\ntime.sleep(30)', {}, { async: false, timeout: 0.3 }), (error: RemoteError) => error.kind === 'timeout');
    // ...and so do those --max-requests recycles.
    for (let k = 0; k < 10; k++) await client.call('operator:add', [k, 1], {}, { async: false });
    assert.notDeepEqual(values(await everywhere<number>('__import__("os").getpid()')), pidsBefore);
    assert.deepEqual(values(await everywhere<number>('setup')), [7, 7]);
    nodes.push(await startNode(redis.url, 'joiner', ['--num-workers', '2']));
    assert.deepEqual(values(await everywhere<number>('setup')), [7, 7, 7, 7]);
  });

  it('keeps an interpreter whose replay fails out of service, says why, and lets it serve once the call is forgotten', async function () {
    await client.call({ exec: 'import os\nif os.environ["KS_NODE_NAME"] == "fragile":\n    raise RuntimeError("no model here")' }, [], {}, { on: 'all', persist: true });
    const fragile = await startNode(redis.url, 'fragile', ['--num-workers', '1']);
    nodes.push(fragile);
    const broken = await waitFor(async () => (await info(fragile)).unhealthy[0], 'the failed replay in /info');
    assert.match(broken.reason, /persisted call p[0-9a-f]+ \(exec\) failed: RuntimeError: no model here/);
    await waitFor(() => /worker 0: replaying persisted calls failed/.test(fragile.logs()), 'the failure in the log');
    // No call runs there meanwhile: an ALL call over that host waits, and answers once it serves.
    const pending = everywhere<number>('setup', { host: 'fragile' });
    const [, guard] = (await client.persisted()).map((c) => c.id);
    await client.forget(guard);
    assert.deepEqual(values(await pending), [7]);
    assert.deepEqual((await info(fragile)).unhealthy, []);
  });

  it('forgets recorded calls: an interpreter that starts later starts empty', async function () {
    for (const { id } of await client.persisted()) await client.forget(id);
    assert.deepEqual(await client.persisted(), []);
    await assert.rejects(client.forget('p0000000000000000'), (error: NodeRequestError) => error.status === 404);
    nodes.push(await startNode(redis.url, 'late', ['--num-workers', '1']));
    const [outcome] = await everywhere('setup', { host: 'late' });
    assert.ok(!outcome.ok && outcome.error.pythonType === 'NameError');
  });

  it("replays a job queue's persisted calls on a node that loads the job, from its first interpreters", async function () {
    const modelJob = `model=${join(repoRoot, 'integration_tests', 'jobs', 'model', 'model.py')}`;
    nodes.push(await startNode(redis.url, 'jobkeeper', ['--entrypoint', modelJob, '--num-workers', '1']));
    await client.call({ exec: 'tuned = 5' }, [], {}, { on: 'all', persist: true, queue: 'job.model' });
    nodes.push(await startNode(redis.url, 'jobjoiner', ['--entrypoint', modelJob, '--num-workers', '1']));
    const seen = await client.call<AllOutcome<number>[]>({ eval: 'tuned' }, [], {}, { on: 'all', queue: 'job.model' });
    assert.deepEqual(seen.map((o) => [o.host, o.ok && o.value]).sort(), [
      ['jobjoiner', 5],
      ['jobkeeper', 5],
    ]);
    for (const { id, queue } of await client.persisted()) if (queue === 'job.model') await client.forget(id);
  });

  it('refuses persist without on: all', async function () {
    assert.throws(() => client.bc('operator:add', [1, 2], {}, { persist: true }), /persist works with on: 'all' only/);
    const res = await fetch(`${nodes[0].url}/api/v1/calls`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ calls: [{ fn: 'operator:add', args: [1, 2], opts: { persist: true } }] }) });
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as { detail: string }).detail, /persist works with on: 'all' only/);
  });
});

describe('soft SLAs: the caller moves on, the straggler is still delivered', function () {
  let redis: TestRedis;
  let node: TestNode;
  let client: Client;
  let out: Capture;

  before(async function () {
    redis = await startRedis();
    node = await startNode(redis.url, 'sla', ['--num-workers', '2']);
    out = new Capture();
    client = new Client(node.url, { output: out });
  });

  after(async function () {
    await stopCluster(redis, [node], client);
  });

  const slow = { exec: 'import time\ntime.sleep(delay)\nprint("late but here")\nanswer = 42', returns: ['answer'] };

  it('settles at the SLA with a RemoteError of kind sla, and the late value comes out of stragglers() with its output', async function () {
    const started = Date.now();
    const error = (await client.call(slow, [], { delay: 1.5 }, { sla: 0.3 }).catch((e: unknown) => e)) as RemoteError;
    const waited = Date.now() - started;
    assert.ok(error instanceof RemoteError && error.kind === 'sla', String(error));
    assert.ok(waited < 1_400, `settled after ${waited} ms`);
    const stragglers = client.stragglers<{ answer: number }>();
    const { value: late } = await stragglers.next();
    assert.equal(late!.taskId, error.taskId);
    assert.deepEqual(late!.outcome, { ok: true, value: { answer: 42 } });
    assert.deepEqual(await client.result(error.taskId!), { ok: true, value: { answer: 42 } });
    assert.match(out.text, /late but here/);
  });

  it('shows an SLA as an outcome in br({collect}), and delivers a straggler that then fails', async function () {
    client.bc({ eval: '1 + 1' }, [], {}, { sla: 5 });
    client.bc(slow, [], { delay: 1 }, { sla: 0.2 });
    client.bc({ exec: 'import time\ntime.sleep(1)\nraise ValueError("too late and wrong")' }, [], {}, { sla: 0.2 });
    const [taskId] = await client.execute();
    const outcomes = await client.br({ collect: true });
    assert.deepEqual(outcomes[0], { ok: true, value: 2 });
    assert.ok(!outcomes[1].ok && outcomes[1].error.kind === 'sla');
    assert.ok(!outcomes[2].ok && outcomes[2].error.kind === 'sla');
    const batch = taskId.split('-')[0];
    const second = await client.result(`${batch}-1`);
    const third = await client.result(`${batch}-2`);
    assert.deepEqual(second, { ok: true, value: { answer: 42 } });
    assert.ok(!third.ok && third.error.pythonType === 'ValueError');
  });

  it('still kills at timeout when both are set: the straggler ends as a timeout', async function () {
    const error = (await client.call(slow, [], { delay: 30 }, { sla: 0.2, timeout: 0.8 }).catch((e: unknown) => e)) as RemoteError;
    assert.equal(error.kind, 'sla');
    const outcome = await client.result(error.taskId!);
    assert.ok(!outcome.ok && outcome.error.kind === 'timeout');
  });

  it('refuses an SLA or timeout that is not a positive number', async function () {
    for (const sla of [0, -1, Number.NaN]) await assert.rejects(client.call('operator:add', [1, 2], {}, { sla }), /opts.sla must be a positive number/);
    const res = await fetch(`${node.url}/api/v1/calls`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ calls: [{ fn: 'operator:add', args: [1, 2], opts: { sla: -1 } }] }) });
    assert.equal(res.status, 400);
    await assert.rejects(client.result('b0000000000000000-0'), /passed its SLA/);
  });
});
