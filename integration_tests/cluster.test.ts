import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Client, py, RemoteError, NodeRequestError } from '../src/index.js';
import { encode } from '../src/codec.js';
import { Capture, rawRequest, runCli, startNode, startRedis, stopCluster, testKeys, waitFor, type TestNode, type TestRedis } from './harness.js';

describe('cluster: three nodes, one worker each', function () {
  let redis: TestRedis;
  let nodes: TestNode[] = [];
  let client: Client;
  let out: Capture;
  let scratch: string;

  before(async function () {
    redis = await startRedis();
    nodes = await Promise.all([
      startNode(redis.url, 'node1', ['--max-request-size', '2000000']),
      startNode(redis.url, 'node2', ['--module', 'kstest_funcs']),
      startNode(redis.url, 'node3', ['--queue', 'special']),
    ]);
    out = new Capture();
    client = new Client(nodes[0].url, { output: out });
    scratch = mkdtempSync(join(tmpdir(), 'ks-scratch-'));
  });

  after(async function () {
    await stopCluster(redis, nodes, client);
    rmSync(scratch, { recursive: true, force: true });
  });

  beforeEach(() => {
    out.text = '';
  });

  it('lists the three live hosts and ks status prints them', async function () {
    const hosts = await client.hosts();
    assert.deepEqual(hosts.map((h) => h.name).sort(), ['node1', 'node2', 'node3']);
    assert.deepEqual(hosts.find((h) => h.name === 'node3')!.queues, ['default', 'special']);
    const status = await runCli(['status', '--redis-connection', redis.url]);
    assert.equal(status.code, 0);
    for (const name of ['node1', 'node2', 'node3']) assert.match(status.stdout, new RegExp(`^${name} `, 'm'));
  });

  it('runs a bulk call and returns results in call order', async function () {
    for (let i = 0; i < 20; i++) client.bc('kstest_funcs:add', [i, 100]);
    const taskIds = await client.execute();
    assert.equal(taskIds.length, 20);
    assert.deepEqual(await client.br(), Array.from({ length: 20 }, (_, i) => i + 100));
  });

  it('starts a single call at once on the node it was sent to, and leaves no queued copy behind', async function () {
    const toNode2 = new Client(nodes[1].url, { output: out });
    const hosts: string[] = [];
    try {
      for (let i = 0; i < 8; i++) {
        hosts.push(
          await toNode2.call<string>(py`
            import os
            def where():
                return os.environ["KS_NODE_NAME"]`),
        );
      }
    } finally {
      toNode2.close();
    }
    // Through the queue, any of the three nodes could have taken each of them.
    assert.deepEqual(hosts, Array(8).fill('node2'));
    const r = redis.client();
    await waitFor(async () => (await r.zcard(testKeys.bullKey('default', 'delayed'))) + (await r.llen(testKeys.bullKey('default', 'wait'))) === 0, 'the queued copies to be removed');
  });

  it('runs three 1 s calls at once on three nodes', async function () {
    const results = await client.map<{ host: string; start: number; end: number }>('kstest_funcs:slow', [[1], [1], [1]]);
    assert.deepEqual(results.map((r) => r.host).sort(), ['node1', 'node2', 'node3']);
    const lastStart = Math.max(...results.map((r) => r.start));
    const firstEnd = Math.min(...results.map((r) => r.end));
    assert.ok(lastStart < firstEnd, 'the three calls overlapped in time');
  });

  it('prints output in order, and all of it before the result', async function () {
    let seenAtResult = '';
    const value = await client
      .call(py`
        import sys
        def chatty(n):
            for k in range(n):
                print(f"line {k}")
            sys.stderr.write("to stderr\n")
            return n`, [50])
      .then((v) => {
        seenAtResult = out.text;
        return v;
      });
    assert.equal(value, 50);
    const lines = seenAtResult.split('\n').filter((l) => l.startsWith('line '));
    assert.deepEqual(lines, Array.from({ length: 50 }, (_, k) => `line ${k}`));
    assert.match(seenAtResult, /to stderr/);
  });

  it('streams output while the call still runs', async function () {
    const goOn = join(scratch, 'go-on');
    const call = client.call(py`
      import os, time
      def waits(go_on):
          print("before the wait")
          while not os.path.exists(go_on):
              time.sleep(0.01)
          return "done"`, [goOn]);
    try {
      await waitFor(() => out.text.includes('before the wait'), 'the line printed before the wait, while the call waits');
    } finally {
      writeFileSync(goOn, '');
    }
    assert.equal(await call, 'done');
  });

  it('delivers the line of every call that prints and returns at once, with its call', async function () {
    // The interpreter ends such a call while its line may still be unread by the node: the
    // reply must then wait for it (an end marker), or the line is lost or goes to the next call.
    const shout = py`
      def shout(i):
          print(f"line {i}")
          return i`;
    out.text = '';
    for (let i = 0; i < 1000; i++) client.bc(shout, [i]);
    await client.execute();
    assert.equal((await client.br()).length, 1000);
    assert.deepEqual(out.text.split('\n').filter(Boolean).sort(), Array.from({ length: 1000 }, (_, i) => `line ${i}`).sort());
    for (let i = 0; i < 200; i++) {
      out.text = '';
      assert.equal(await client.call(shout, [i], {}, { async: false }), i);
      assert.equal(out.text, `line ${i}\n`);
    }
  });

  it('gives a call all its output, even output that ends like the start of an end marker', async function () {
    // Read by the node before the call ends, so no end marker follows it; its last bytes
    // look like the start of one and must not be left for the next call.
    const tail = py`
      import os, time
      def f(k):
          os.write(1, f"call {k}\x00\x1e".encode())
          time.sleep(0.2)
          return k`;
    for (const async of [true, false]) {
      for (const k of [1, 2]) {
        out.text = '';
        assert.equal(await client.call(tail, [k], {}, { async }), k);
        assert.equal(out.text, `call ${k}\x00\x1e`, `async ${async}`);
      }
    }
  });

  it('delivers output held back while Redis catches up before the result, and none of it to the next call', async function () {
    // 24 MB written at once outruns the 4 MB the node lets be in flight to Redis: the node
    // stops reading the pipe until Redis catches up. Then the call sleeps, so the node has read
    // everything (and may still hold some back) when the call ends without an end marker.
    const flood = py`
      import os, time
      def f():
          block = b"x" * 65535 + b"\n"
          for _ in range(384):
              os.write(1, block)
          time.sleep(0.3)
          return "flooded"`;
    out.text = '';
    assert.equal(await client.call(flood), 'flooded');
    assert.equal(out.text.length, 384 * 65536);
    out.text = '';
    assert.equal(await client.call(py`def g(): print("second")`), null);
    assert.equal(out.text, 'second\n');
  });

  it('captures fd-level and subprocess output', async function () {
    await client.call(py`
      import os, subprocess, ctypes
      def f():
          os.write(1, b"raw fd one\n")
          os.write(2, b"raw fd two\n")
          libc = ctypes.CDLL(None)
          libc.write(1, b"from C\n", 7)
          subprocess.run(["echo", "from a subprocess"], check=True)
          os.system("echo from a shell 1>&2")
          return True`);
    for (const text of ['raw fd one', 'raw fd two', 'from C', 'from a subprocess', 'from a shell']) assert.match(out.text, new RegExp(text));
  });

  it('returns Python exceptions as RemoteError with the real traceback', async function () {
    const error = await client
      .call(py`
        def inner(x):
            return {}[x]
        def outer(x):
            return inner(x)`, ['missing'])
      .catch((e: unknown) => e);
    assert.ok(error instanceof RemoteError);
    assert.equal(error.kind, 'exception');
    assert.equal(error.pythonType, 'KeyError');
    assert.match(error.traceback!, /in outer/);
    assert.match(error.traceback!, /return \{\}\[x\]/);
    assert.ok(error.taskId);
    assert.ok(['node1', 'node2', 'node3'].includes(error.host!));
  });

  it('passes kwargs', async function () {
    assert.equal(await client.call('kstest_funcs:add', [1], { y: 41 }), 42);
    assert.equal(await client.call(py`def f(a, *, b=1, c=2): return a * 100 + b * 10 + c`, [1], { c: 5 }), 115);
  });

  it('runs module functions, preloaded with --module where asked', async function () {
    const firstLoad = await client.call<number>('kstest_funcs:loaded_at', [], {}, { host: 'node2' });
    const startedAt = (await client.hosts()).find((h) => h.name === 'node2')!.startedAt / 1000;
    assert.ok(firstLoad < startedAt + 30 && firstLoad > startedAt - 30);
    assert.equal(await client.call('math:gcd', [12, 18]), 6);
    assert.equal(await client.call('os.path:join', ['a', 'b']), 'a/b');
  });

  it('names an unknown function in the RemoteError', async function () {
    const missingModule = await client.call('no_such_module:f').catch((e: RemoteError) => e);
    assert.equal((missingModule as RemoteError).pythonType, 'ModuleNotFoundError');
    assert.match((missingModule as RemoteError).message, /no_such_module/);
    const missingFn = await client.call('kstest_funcs:nope').catch((e: RemoteError) => e);
    assert.equal((missingFn as RemoteError).pythonType, 'AttributeError');
    assert.match((missingFn as RemoteError).message, /nope/);
  });

  it('runs sync calls straight on the contacted node, output and errors included', async function () {
    const host = await client.call(py`
      import os
      def f():
          print("sync output")
          return os.environ["KS_NODE_NAME"]`, [], {}, { async: false });
    assert.equal(host, 'node1');
    assert.match(out.text, /sync output/);
    const error = await client.call(py`def f(): raise ValueError("bad sync")`, [], {}, { async: false }).catch((e: unknown) => e);
    assert.ok(error instanceof RemoteError);
    assert.equal(error.pythonType, 'ValueError');
    assert.match(error.message, /bad sync/);
  });

  it('carries bytes, nested values and ints past 2^53 both ways', async function () {
    const echo = py`def echo(x): return x`;
    const value = { bytes: new Uint8Array([0, 1, 255]), nested: [{ a: [1, 2, { b: 'c' }] }], big: 2n ** 60n, neg: -(2n ** 62n), float: 1.5, none: null };
    const back = await client.call<typeof value>(echo, [value]);
    assert.deepEqual(Buffer.from(back.bytes), Buffer.from([0, 1, 255]));
    assert.deepEqual(back.nested, value.nested);
    assert.equal(back.big, 2n ** 60n);
    assert.equal(back.neg, -(2n ** 62n));
    assert.equal(back.float, 1.5);
    assert.equal(back.none, null);
    assert.equal(await client.call(py`def f(): return 2**63 - 1`), 2n ** 63n - 1n);
    assert.equal(await client.call(py`def f(b): return type(b).__name__ + str(len(b))`, [new Uint8Array(10)]), 'bytes10');
    const doubles = await client.call<number[]>(py`
      def f(a):
          if isinstance(a, dict):  # no numpy on the node
              import struct
              return list(struct.unpack("<%dd" % a["shape"][0], a["data"]))
          return a.tolist()`, [new Float64Array([1.5, -2, 3.25])]);
    assert.deepEqual(doubles, [1.5, -2, 3.25]);
  });

  it('names the Python type of a result msgpack cannot carry', async function () {
    const error = await client.call(py`
      class Model: pass
      def f(): return Model()`).catch((e: unknown) => e);
    assert.ok(error instanceof RemoteError);
    assert.match(error.message, /Model/);
    assert.match(error.message, /RemoteData/);
    const huge = await client.call(py`def f(): return 2**80`).catch((e: unknown) => e);
    assert.ok(huge instanceof RemoteError);
    assert.match(huge.message, /64 bits/);
  });

  it('survives a crashing interpreter and serves again', async function () {
    const error = await client.call(py`
      import os, signal, sys
      def f():
          sys.stderr.write("about to crash\n")
          os.kill(os.getpid(), signal.SIGSEGV)`, [], {}, { host: 'node3' }).catch((e: unknown) => e);
    assert.ok(error instanceof RemoteError);
    assert.equal(error.kind, 'crashed');
    assert.equal(error.signal, 'SIGSEGV');
    assert.match(error.traceback!, /about to crash/);
    const exited = await client.call(py`
      import os
      def f(): os._exit(7)`, [], {}, { host: 'node3' }).catch((e: RemoteError) => e);
    assert.equal((exited as RemoteError).kind, 'crashed');
    assert.equal((exited as RemoteError).exitCode, 7);
    assert.equal(await client.call('kstest_funcs:where', [], {}, { host: 'node3' }), 'node3');
  });

  it('re-runs a crashed call when asked with retries', async function () {
    const marker = join(scratch, 'crash-once');
    const value = await client.call(py`
      import os
      def f(marker):
          if not os.path.exists(marker):
              open(marker, "w").close()
              os._exit(1)
          return "second time lucky"`, [marker], {}, { retries: 1 });
    assert.equal(value, 'second time lucky');
  });

  it('runs a call queued on three hosts exactly once', async function () {
    const log = join(scratch, 'side-effects.txt');
    const names = ['node1', 'node2', 'node3'];
    const calls = Array.from({ length: 60 }, (_, k) => ({
      fn: 'kstest_funcs:append_line',
      payload: encode([[log, `call-${k}`], {}]),
      route: [...names.slice(k % 3), ...names.slice(0, k % 3)],
    }));
    const { batchId, taskIds } = await client.http.request<{ batchId: string; taskIds: string[] }>('POST', '/api/v1/calls', { calls });
    assert.equal(taskIds.length, 60);
    const ended = new Set<number>();
    let cursor = '0-0';
    while (ended.size < 60) {
      const page = await client.http.request<{ cursor: string; events: { t: string; i: number }[] }>('POST', '/api/v1/results', { batchId, cursor });
      cursor = page.cursor;
      for (const e of page.events) if (e.t === 'result') ended.add(e.i);
    }
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    assert.equal(lines.length, 60, 'every call ran once, no copy ran twice');
    assert.equal(new Set(lines).size, 60);
  });

  it("takes each host's bytes to copy with its route, and refuses byte counts that do not fit the route", async function () {
    const submit = (call: Record<string, unknown>) =>
      client.http.request<{ batchId: string; taskIds: string[] }>('POST', '/api/v1/calls', { calls: [{ fn: 'kstest_funcs:where', payload: encode([[], {}]), ...call }] }).catch((e: unknown) => e);
    const routed = await submit({ route: ['node2', 'node1'], routeBytes: [0, 5_000_000] });
    assert.ok(!(routed instanceof Error), String(routed));
    for (const [routeBytes, detail] of [
      [[0], /routeBytes must be an array of byte counts, one per host/],
      [[0, -1], /routeBytes\[1\] must be a whole number of bytes, not -1/],
      [[0, 1.5], /routeBytes\[1\] must be a whole number/],
      ['many', /routeBytes must be an array/],
    ] as const) {
      const refused = await submit({ route: ['node2', 'node1'], routeBytes });
      assert.ok(refused instanceof NodeRequestError, String(refused));
      assert.equal(refused.status, 400);
      assert.match(refused.detail, detail);
    }
  });

  it('runs 3,000 calls and returns them in order', async function () {
    for (let i = 0; i < 3000; i++) client.bc('operator:mul', [i, 2]);
    await client.execute();
    const results = await client.br<number>();
    assert.equal(results.length, 3000);
    results.forEach((r, i) => assert.equal(r, i * 2));
  });

  it('pins calls with opts.host and opts.queue', async function () {
    const hosts = await client.map('kstest_funcs:where', [[], [], [], []], { host: 'node2' });
    assert.deepEqual(hosts, ['node2', 'node2', 'node2', 'node2']);
    assert.equal(await client.call('kstest_funcs:where', [], {}, { queue: 'special' }), 'node3');
  });

  it('refuses unknown hosts and queues with a 400 that names them', async function () {
    const badHost = await client.call('kstest_funcs:where', [], {}, { host: 'nowhere' }).catch((e: unknown) => e);
    assert.ok(badHost instanceof NodeRequestError);
    assert.equal(badHost.status, 400);
    assert.match(badHost.detail, /nowhere/);
    const badQueue = await client.call('kstest_funcs:where', [], {}, { queue: 'gpu' }).catch((e: unknown) => e);
    assert.ok(badQueue instanceof NodeRequestError);
    assert.equal(badQueue.status, 400);
    assert.match(badQueue.detail, /gpu/);
  });

  it('br() cancels the rest of its batch on the first failure; collect returns every outcome', async function () {
    client.bc(py`def f(): raise RuntimeError("first fails")`, [], {}, { host: 'node1' });
    for (let k = 0; k < 5; k++) client.bc('kstest_funcs:slow', [0.5], {}, { host: 'node1' });
    const [firstTask] = await client.execute();
    const error = await client.br().catch((e: unknown) => e);
    assert.ok(error instanceof RemoteError);
    assert.match(error.message, /first fails/);
    const batchId = firstTask.split('-')[0];
    const kinds = new Map<number, string>();
    let cursor = '0-0';
    while (kinds.size < 6) {
      const page = await client.http.request<{ cursor: string; events: { t: string; i: number }[] }>('POST', '/api/v1/results', { batchId, cursor });
      cursor = page.cursor;
      for (const e of page.events) if (!['started', 'stdout', 'stderr'].includes(e.t)) kinds.set(e.i, e.t);
    }
    assert.equal(kinds.get(0), 'error');
    assert.ok([...kinds.values()].filter((t) => t === 'cancelled').length >= 3, 'the waiting calls were cancelled');

    client.bc('kstest_funcs:add', [1, 1]);
    client.bc(py`def f(): raise ValueError("second")`);
    client.bc('kstest_funcs:add', [2, 2]);
    await client.execute();
    const outcomes = await client.br({ collect: true });
    assert.deepEqual(outcomes[0], { ok: true, value: 2 });
    assert.equal(outcomes[1].ok, false);
    assert.match((outcomes[1] as { error: RemoteError }).error.message, /second/);
    assert.deepEqual(outcomes[2], { ok: true, value: 4 });
  });

  it('never runs a call cancelled while it waited, claimed, for its interpreter', async function () {
    // 24 calls pinned to node1 (one interpreter) go as jobs of two calls: while the first of a
    // job runs, the second claims itself as the next to get the interpreter.
    const marker = join(scratch, 'second-ran');
    const pidBefore = await client.call<number>('os:getpid', [], {}, { host: 'node1' });
    client.bc(py`
      import time
      def first():
          time.sleep(1.5)
          return 'first'`, [], {}, { host: 'node1' });
    client.bc(py`
      def second(path):
          open(path, 'w').close()
          return 'second'`, [marker], {}, { host: 'node1' });
    for (let k = 2; k < 24; k++) client.bc('kstest_funcs:add', [k, 0], {}, { host: 'node1' });
    const taskIds = await client.execute();
    const r = redis.client();
    await waitFor(async () => (await r.get(testKeys.claim(taskIds[1])))?.startsWith('node1/'), 'the second call to be claimed while the first runs');
    assert.equal(await client.cancel(taskIds[1]), true);
    const outcomes = await client.br({ collect: true });
    assert.deepEqual(outcomes[0], { ok: true, value: 'first' });
    assert.equal(outcomes[1].ok, false);
    assert.equal((outcomes[1] as { error: RemoteError }).error.kind, 'cancelled');
    assert.deepEqual(outcomes.slice(2), Array.from({ length: 22 }, (_, k) => ({ ok: true, value: k + 2 })));
    assert.equal(existsSync(marker), false, 'the cancelled call never ran');
    assert.equal(await client.call<number>('os:getpid', [], {}, { host: 'node1' }), pidBefore, 'and its interpreter was not killed for it');
  });

  it('re-reads a finished batch', async function () {
    client.bc('kstest_funcs:add', [5, 5]);
    const [taskId] = await client.execute();
    assert.deepEqual(await client.br(), [10]);
    const batchId = taskId.split('-')[0];
    const page = await client.http.request<{ events: { t: string }[] }>('POST', '/api/v1/results', { batchId, cursor: '0-0' });
    assert.ok(page.events.some((e) => e.t === 'result'));
  });

  it('keeps serving when a client leaves in the middle of a call request body', async function () {
    const { port, hostname } = new URL(nodes[0].url);
    for (const path of ['/api/v1/call', '/api/v1/calls', '/api/v1/results']) {
      await new Promise<void>((resolve) => {
        const socket = connect(Number(port), hostname, () => {
          socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\ncontent-type: application/msgpack\r\ncontent-length: 1000\r\n\r\n0123456789`);
          setTimeout(() => socket.destroy(), 50);
        });
        socket.on('error', () => {});
        socket.on('close', () => resolve());
      });
    }
    assert.equal(await client.call('kstest_funcs:add', [20, 22], {}, { host: 'node1', async: false }), 42);
    assert.equal(await client.call('kstest_funcs:add', [20, 22], {}, { host: 'node1' }), 42);
  });

  it('speaks JSON to JSON clients: values, output and failures decoded', async function () {
    const url = nodes[0].url;
    const submitted = await rawRequest(url, 'POST', '/api/v1/calls', JSON.stringify({
      calls: [
        { fn: { src: 'def f(x):\n    print("hi", x)\n    return {"x": x}' }, args: [7] },
        { fn: { src: 'def g():\n    raise KeyError("k")' } },
      ],
    }));
    assert.equal(submitted.status, 200, submitted.text);
    const { batchId } = submitted.json as unknown as { batchId: string };
    const seen = new Map<string, unknown>();
    let cursor = '0-0';
    while (!seen.has('result') || !seen.has('error')) {
      const page = await rawRequest(url, 'POST', '/api/v1/results', JSON.stringify({ batchId, cursor }));
      const body = page.json as unknown as { cursor: string; events: { t: string; value?: unknown; text?: string; failure?: unknown }[] };
      cursor = body.cursor;
      for (const e of body.events) seen.set(e.t, e.value ?? e.text ?? e.failure);
    }
    assert.deepEqual(seen.get('result'), { x: 7 });
    assert.equal(seen.get('stdout'), 'hi 7\n');
    assert.equal((seen.get('error') as { pythonType: string }).pythonType, 'KeyError');
  });

  it('answers garbage bodies with a 4xx {error, detail} and keeps serving', async function () {
    const url = nodes[0].url;
    const cases: [string, string, Buffer | string, string, number][] = [
      ['POST', '/api/v1/calls', '{not json', 'application/json', 400],
      ['POST', '/api/v1/calls', Buffer.from([0xc1, 0xff, 0x00]), 'application/msgpack', 400],
      ['POST', '/api/v1/calls', '{"calls": 5}', 'application/json', 400],
      ['POST', '/api/v1/calls', '{"calls": []}', 'application/json', 400],
      ['POST', '/api/v1/calls', '{"calls": [{"fn": 42}]}', 'application/json', 400],
      ['POST', '/api/v1/calls', '{"calls": [{"fn": "no colon"}]}', 'application/json', 400],
      ['POST', '/api/v1/calls', '{"calls": [{"fn": "m:f", "args": {"a": 1}}]}', 'application/json', 400],
      ['POST', '/api/v1/calls', '{"calls": [{"fn": "m:f", "opts": {"timeout": "soon"}}]}', 'application/json', 400],
      ['POST', '/api/v1/calls', '[1,2,3]', 'application/json', 400],
      ['POST', '/api/v1/calls', 'x', 'text/plain', 415],
      ['POST', '/api/v1/call', '{"fn": "m:f", "kwargs": [1]}', 'application/json', 400],
      ['POST', '/api/v1/results', '{"batchId": "nope"}', 'application/json', 400],
      ['POST', '/api/v1/results', '{"batchId": "b0123456789abcdef", "cursor": "x"}', 'application/json', 400],
      ['POST', '/api/v1/results', '{"batchId": "b0123456789abcdef"}', 'application/json', 404],
      ['POST', '/api/v1/cancel', '{"taskIds": ["../../etc"]}', 'application/json', 400],
      ['POST', '/api/v1/cancel', '{"taskIds": "all"}', 'application/json', 400],
      ['POST', '/api/v1/calls', Buffer.alloc(3_000_000, 0x20), 'application/json', 413],
      ['GET', '/api/v1/nothing-here', '', 'application/json', 404],
    ];
    for (const [method, path, body, type, status] of cases) {
      const res = await rawRequest(url, method, path, method === 'GET' ? undefined : body, type);
      assert.equal(res.status, status, `${method} ${path} ${String(body).slice(0, 40)} -> ${res.status} ${res.text.slice(0, 200)}`);
      assert.ok(res.json?.error && res.json.detail, `${path} answers {error, detail}: ${res.text.slice(0, 200)}`);
    }
    // A direct call's payload after its msgpack: taken there, refused anywhere else.
    const payload = encode([[2, 3], {}]);
    const trailing = { 'x-ks-payload-bytes': String(payload.length) };
    const after = await rawRequest(url, 'POST', '/api/v1/call', Buffer.concat([encode({ fn: 'kstest_funcs:add' }), payload]), 'application/msgpack', trailing);
    assert.equal(after.status, 200, after.text.slice(0, 200));
    assert.deepEqual(Buffer.from((after.json as { value: Uint8Array }).value), encode(5));
    const misplaced: [string, Buffer | string, string, Record<string, string>, RegExp][] = [
      ['/api/v1/calls', Buffer.concat([encode({ calls: [{ fn: 'kstest_funcs:add' }] }), payload]), 'application/msgpack', trailing, /x-ks-payload-bytes is taken only on POST \/api\/v1\/call/],
      ['/api/v1/call', encode({ fn: 'kstest_funcs:add' }), 'application/msgpack', { 'x-ks-payload-bytes': '999' }, /x-ks-payload-bytes is taken only/],
      ['/api/v1/call', Buffer.concat([encode({ fn: 'kstest_funcs:add' }), payload]), 'application/msgpack', { 'x-ks-payload-bytes': 'many' }, /x-ks-payload-bytes is taken only/],
      ['/api/v1/call', Buffer.concat([encode({ fn: 'kstest_funcs:add', payload }), payload]), 'application/msgpack', trailing, /the body holds payload, args or kwargs, but x-ks-payload-bytes says the payload follows it/],
      ['/api/v1/call', JSON.stringify({ fn: 'kstest_funcs:add', args: [2, 3] }), 'application/json', { 'x-ks-payload-bytes': '2' }, /x-ks-payload-bytes is taken only/],
    ];
    for (const [path, body, type, headers, detail] of misplaced) {
      const res = await rawRequest(url, 'POST', path, body, type, headers);
      assert.equal(res.status, 400, `${path} ${JSON.stringify(headers)} -> ${res.status} ${res.text.slice(0, 200)}`);
      assert.match(String(res.json?.detail), detail);
    }
    const json = await rawRequest(url, 'POST', '/api/v1/call', JSON.stringify({ fn: 'kstest_funcs:add', args: [2, 3] }));
    assert.equal(json.status, 200);
    assert.equal((json.json as { value?: number }).value, 5);
    assert.equal(await client.call('kstest_funcs:add', [1, 2]), 3);
  });
});
