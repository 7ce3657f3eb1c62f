import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { Client, dr, py, type CallProfile, type Outcome, type Profiled } from '../src/index.js';
import { Capture, launchChromium, repoRoot, startNode, startRedis, stopCluster, waitFor, type TestNode, type TestRedis } from './harness.js';

const secret = 'dash-secret';
const artifacts = join(repoRoot, 'artifacts');
const cli = join(repoRoot, 'dist', 'node', 'cli.js');

/** 100 calls end at once, the rest wait for the gate file: the batch stays half done until the test opens it. */
const gated = py`
  import os, time
  def work(i, gate):
      if i >= 100:
          while not os.path.exists(gate):
              time.sleep(0.02)
      if i == 7:
          raise ValueError("seven is bad")
      print("call", i)
      return i`;

describe('dashboard, ks top, profiles and results as they finish (three nodes with a token)', function () {
  this.timeout(120_000);
  let redis: TestRedis;
  const nodes: TestNode[] = [];
  let client: Client;
  let browser: Browser;
  let page: Page;
  let prompts = 0;
  const scratch = mkdtempSync(join(tmpdir(), 'ks-dash-'));
  const tmuxSession = `ks-top-${process.pid}`;

  before(async function () {
    mkdirSync(artifacts, { recursive: true });
    redis = await startRedis();
    for (const name of ['dash-a', 'dash-b', 'dash-c']) nodes.push(await startNode(redis.url, name, ['--num-workers', '2', '--token', `tester=${secret}`]));
    client = new Client(nodes[0].url, { token: secret, output: new Capture() });
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1300, height: 1000 } });
    page.on('dialog', (dialog) => {
      prompts += 1;
      void dialog.accept(secret);
    });
  });

  after(async function () {
    spawnSync('tmux', ['kill-session', '-t', tmuxSession], { stdio: 'ignore' });
    await browser?.close();
    await stopCluster(redis, nodes, client);
    rmSync(scratch, { recursive: true, force: true });
  });

  const shot = (name: string) => page.screenshot({ path: join(artifacts, `dashboard-${name}.png`), fullPage: true });
  const hostState = (name: string) => page.locator(`#hosts tr[data-host="${name}"]`).getAttribute('data-state', { timeout: 1_000 }).catch(() => null);

  it('serves the page without the token, and the live feed only with it', async function () {
    const html = await fetch(`${nodes[1].url}/dashboard`);
    assert.equal(html.status, 200);
    assert.match(html.headers.get('content-type')!, /text\/html/);
    assert.match(await html.text(), /dashboard\/uPlot\.iife\.min\.js/);
    const chartLibrary = await fetch(`${nodes[1].url}/dashboard/uPlot.iife.min.js`);
    assert.equal(chartLibrary.status, 200);
    const refused = await fetch(`${nodes[1].url}/api/v1/events`);
    assert.equal(refused.status, 401);
    assert.equal(((await refused.json()) as { error: string }).error, 'unauthorized');
    const stop = new AbortController();
    const feed = await fetch(`${nodes[1].url}/api/v1/events`, { headers: { authorization: `Bearer ${secret}` }, signal: stop.signal });
    assert.equal(feed.status, 200);
    assert.match(feed.headers.get('content-type')!, /text\/event-stream/);
    const reader = feed.body!.getReader();
    let text = '';
    while (!/event: cluster\ndata: /.test(text)) text += new TextDecoder().decode((await reader.read()).value);
    assert.match(text, /event: hello\ndata: \{/);
    stop.abort();
  });

  it('asks for the token once, then shows the three hosts alive', async function () {
    await page.goto(`${nodes[0].url}/dashboard`);
    await waitFor(async () => (await Promise.all(nodes.map((n) => hostState(n.name)))).every((s) => s === 'alive'), 'the three hosts alive on the page');
    assert.equal(prompts, 1);
    await page.reload();
    await waitFor(async () => (await hostState('dash-c')) === 'alive', 'the hosts after a reload');
    assert.equal(prompts, 1, 'the token is kept: no second prompt');
    await waitFor(() => page.locator('#hosts tr[data-host="dash-a"] td').nth(2).innerText().then((t) => /0 busy, 2 idle/.test(t)), 'the interpreters of a host');
    await shot('hosts');
  });

  it('follows a batch of 200 calls: progress, task stream, a traceback, `ks top`, then the batch page', async function () {
    const gate = join(scratch, 'gate');
    for (let i = 0; i < 200; i++) client.bc(gated, [i, gate]);
    const [first] = await client.execute();
    const batchId = first.split('-')[0];
    const batch = page.locator(`#batches .batch[data-batch="${batchId}"]`);
    // Half done and held there: the bar shows it, the stream has bars, the failure its traceback.
    await waitFor(async () => Number(await batch.getAttribute('data-ended', { timeout: 1_000 }).catch(() => 0)) >= 100, 'the batch half done on the page');
    assert.equal(await batch.getAttribute('data-n'), '200');
    assert.ok(Number(await batch.locator('progress').getAttribute('value')) < 200);
    await waitFor(async () => (await page.locator('#stream rect.bar[data-fn="py:work"]').count()) >= 50, 'bars of the batch in the task stream');
    await waitFor(async () => (await page.locator('#stream rect.running[data-fn="py:work"]').count()) === 6, 'the six held calls drawn running');
    const failure = page.locator(`#failures .failure[data-task="${batchId}-7"]`);
    await failure.waitFor({ timeout: 20_000 });
    const traceback = await failure.locator('pre.traceback').innerText();
    assert.match(traceback, /raise ValueError\("seven is bad"\)/);
    assert.match(traceback, /ValueError: seven is bad/);
    const tip = await page.locator('#stream rect.bar[data-fn="py:work"] title').first().textContent();
    assert.match(tip!, new RegExp(`py:work\\nbatch ${batchId} call \\d+\\n\\d+ ms, ok\\non dash-[abc]`));
    await shot('batch-running');

    // `ks top` in a terminal of 80 columns shows the same: the hosts, the batch, the calls running.
    execFileSync('tmux', ['new-session', '-d', '-s', tmuxSession, '-x', '80', '-y', '40', `${cli} top --node-url ${nodes[2].url}/ --token ${secret}`]);
    // Each node's running calls come with its own tick, a second apart at most: wait for all six.
    const runningLine = new RegExp(`dash-[abc]/\\d\\s+py:work\\s+${batchId}-\\d+\\s+\\d+\\.\\d s`, 'g');
    const screen = await waitFor(() => {
      const text = execFileSync('tmux', ['capture-pane', '-p', '-t', tmuxSession]).toString();
      return nodes.every((n) => text.includes(n.name)) && new RegExp(`^${batchId} `, 'm').test(text) && text.match(runningLine)?.length === 6 ? text : undefined;
    }, '`ks top` to show the hosts, the batch and its six running calls');
    for (const line of screen.split('\n')) assert.ok(line.length <= 80, `a line wider than 80 columns: ${line}`);
    assert.match(screen, new RegExp(`${batchId}\\s+\\[#{9,11}\\.{9,11}\\]\\s+\\d+%\\s+1\\d\\d/200\\s+1`));
    writeFileSync(join(artifacts, 'ks-top.txt'), screen);
    execFileSync('tmux', ['send-keys', '-t', tmuxSession, 'q']);
    await waitFor(() => spawnSync('tmux', ['has-session', '-t', tmuxSession], { stdio: 'ignore' }).status !== 0, '`ks top` to quit on q');
    // And on Ctrl-C.
    execFileSync('tmux', ['new-session', '-d', '-s', tmuxSession, '-x', '80', '-y', '40', `${cli} top --node-url ${nodes[0].url} --token ${secret}`]);
    await waitFor(() => execFileSync('tmux', ['capture-pane', '-p', '-t', tmuxSession]).toString().includes('dash-a'), '`ks top` again');
    execFileSync('tmux', ['send-keys', '-t', tmuxSession, 'C-c']);
    await waitFor(() => spawnSync('tmux', ['has-session', '-t', tmuxSession], { stdio: 'ignore' }).status !== 0, '`ks top` to quit on Ctrl-C');

    writeFileSync(gate, '');
    const outcomes = await client.br({ collect: true });
    assert.equal(outcomes.filter((o) => o.ok).length, 199);
    await waitFor(async () => (await batch.getAttribute('data-ended')) === '200', 'the batch done on the page');
    assert.match(await batch.locator('.counts').innerText(), /200 of 200 ended: 199 ok, 1 failed/);
    await shot('batch-done');

    await page.goto(`${nodes[0].url}/dashboard#batch=${batchId}`);
    await waitFor(async () => (await page.locator('#calls tr[data-outcome]').count()) === 200 && (await page.locator('#calls tr[data-outcome="running"]').count()) === 0, 'the batch page with its 200 calls');
    assert.match(await page.locator('#calls tr[data-index="3"]').innerText(), /result[\s\S]*call 3/);
    assert.match(await page.locator('#calls tr[data-index="7"]').innerText(), /error[\s\S]*ValueError: seven is bad/);
    assert.equal(await page.locator('#waterfall rect.run').count(), 200);
    await shot('batch-page');
  });

  it('finds saved data in the catalogue, with its holder and tier', async function () {
    await dr(Buffer.from('on disk'), { client }).save({ url: 'dash/disk.bin' });
    await dr(Buffer.from('in memory'), { client }).save({ url: 'dash/memory.bin', host: 'dash-b', memory: true });
    await page.goto(`${nodes[0].url}/dashboard#data`);
    await page.locator('#glob').fill('dash/*');
    await page.locator('#data-search button').click();
    const disk = page.locator('#data tr[data-url="dash/disk.bin"]');
    await disk.waitFor({ timeout: 10_000 });
    assert.match(await disk.innerText(), /dash\/disk\.bin\s+7 B\s+raw\s+dash-a\s+disk/);
    assert.match(await page.locator('#data tr[data-url="dash/memory.bin"]').innerText(), /9 B\s+raw\s+dash-b\s+memory on dash-b/);
    assert.equal(await page.locator('#data-count').innerText(), '2 urls');
    await shot('data');
  });

  it('yields results as they finish (asCompleted) and profiles each call (br({profile}))', async function () {
    const nap = py`
      import time
      def nap(s):
          time.sleep(s)
          return s`;
    const naps = [0.6, 0.4, 0.2, 0.0];
    for (const s of naps) client.bc(nap, [s]);
    await client.execute();
    const order: number[] = [];
    for await (const done of client.asCompleted<number>()) {
      assert.ok(done.ok);
      assert.equal(done.value, naps[done.index]);
      assert.match(done.taskId, /^b[0-9a-f]{16}-\d$/);
      assert.ok(done.profile.runMs >= naps[done.index] * 1000);
      order.push(done.index);
    }
    assert.deepEqual([...order].sort(), [0, 1, 2, 3]);
    // The quickest ends before the slowest (they run side by side on six interpreters).
    assert.ok(order.indexOf(3) < order.indexOf(0), `ended in the order ${order}`);

    for (const s of [0.3, 0]) client.bc(nap, [s]);
    await client.execute();
    const { results, profiles } = await client.br<number>({ profile: true });
    assert.deepEqual(results, [0.3, 0]);
    const [slow, quick]: CallProfile[] = profiles;
    assert.ok(slow.runMs >= 300 && quick.runMs < 300, JSON.stringify(profiles));
    for (const p of profiles) {
      assert.match(p.host!, /^dash-[abc]$/);
      assert.equal(p.totalMs, Math.round((p.queueWaitMs + p.dataMs + p.runMs + p.overheadMs) * 10) / 10);
    }
    const collected = await (async () => {
      client.bc(nap, [0]);
      await client.execute();
      return client.br<number>({ collect: true, profile: true });
    })();
    assert.deepEqual(collected.results, [{ ok: true, value: 0 }]);
    assert.equal(collected.profiles.length, 1);
    // The overloads' types, checked when the tests compile (tsc -p tsconfig.test.json).
    const typed = async () => {
      const values: number[] = await client.br<number>();
      const outcomes: Outcome<number>[] = await client.br<number>({ collect: true });
      const profiled: Profiled<number> = await client.br<number>({ profile: true });
      // @ts-expect-error br({collect: true}) resolves to outcomes, not values
      const wrong: number[] = await client.br<number>({ collect: true });
      return [values, outcomes, profiled, wrong];
    };
    assert.equal(typeof typed, 'function');
  });

  it('shows a node that died as dead', async function () {
    await page.goto(`${nodes[0].url}/dashboard`);
    await waitFor(async () => (await hostState('dash-c')) === 'alive', 'dash-c alive');
    await nodes[2].kill();
    await waitFor(async () => (await hostState('dash-c')) === 'dead', 'dash-c shown dead', 30_000);
    assert.equal(await hostState('dash-a'), 'alive');
    await shot('dead-node');
    assert.ok(existsSync(join(artifacts, 'dashboard-dead-node.png')));
  });
});
