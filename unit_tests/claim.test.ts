import assert from 'node:assert/strict';
import { encode } from '../src/codec.js';
import { Keys } from '../src/keys.js';
import { withClaimScripts, type ClaimRedis } from '../src/worker/claim.js';
import { startRedis, type TestRedis } from '../integration_tests/harness.js';

// The claim scripts against a real Redis: exactly-once, cancellation, refresh.
describe('claim lock', function () {
  let redis: TestRedis;
  let r: ClaimRedis;
  const keys = new Keys('kt');
  const claim = keys.claim('b0123456789abcdef-0');
  const tries = keys.claimTries('b0123456789abcdef-0');
  const stream = keys.batchEvents('b0123456789abcdef');
  const lost = encode({ kind: 'lost', message: 'gone' });
  /** Claims `key` for `owner` (a `host/token` string); one re-run allowed after a lost host. */
  const claimAs = (key: string, owner: string, index = 0) =>
    r.ksClaim(key, stream, `${key}:tries`, owner, 10_000, index, owner.split('/')[0], 60, keys.alive(''), 1, lost);

  before(async function () {
    redis = await startRedis();
    r = withClaimScripts(redis.client());
  });
  after(async function () {
    await redis?.stop();
  });
  beforeEach(async function () {
    await r.flushall();
  });

  async function eventTypes(): Promise<string[]> {
    const entries = await r.xrange(stream, '-', '+');
    return entries.map(([, fields]) => fields[fields.indexOf('t') + 1]);
  }

  it('lets one owner win and records started once', async function () {
    for (const host of ['a', 'b', 'c']) await r.set(keys.alive(host), '1');
    const answers = await Promise.all(['a/1', 'b/1', 'c/1'].map((owner) => claimAs(claim, owner)));
    assert.deepEqual(answers.sort(), [1, 2, 2], 'one runs it, the others keep their copies to look again');
    assert.deepEqual(await eventTypes(), ['started']);
  });

  it('finishes only for the owner, then blocks every later claim', async function () {
    await claimAs(claim, 'a/1');
    assert.equal(await r.ksFinish(claim, stream, 'b/1', 60_000, 60, 'result', 0, 'h', Buffer.from('x')), 0);
    assert.equal(await r.ksFinish(claim, stream, 'a/1', 60_000, 60, 'result', 0, 'h', Buffer.from('x')), 1);
    assert.equal(await r.get(claim), 'done');
    assert.equal(await claimAs(claim, 'c/1'), 0);
    assert.deepEqual(await eventTypes(), ['started', 'result']);
    assert.ok((await r.ttl(stream)) > 0, 'the stream expires');
  });

  it('cancels waiting calls for good and announces running ones', async function () {
    const sub = redis.client();
    const announced: string[] = [];
    await sub.subscribe(keys.cancelChannel);
    sub.on('message', (_c: string, taskId: string) => announced.push(taskId));
    const running = keys.claim('b0123456789abcdef-1');
    await claimAs(running, 'a/1', 1);
    const ended = await r.ksCancel(4, stream, keys.cancelChannel, claim, running, 60_000, 60, encode({ kind: 'cancelled' }), 0, 'b0123456789abcdef-0', 1, 'b0123456789abcdef-1');
    assert.equal(ended, 2);
    assert.equal(await claimAs(claim, 'b/1'), 0, 'a cancelled call never runs');
    assert.equal(await r.ksFinish(running, stream, 'a/1', 60_000, 60, 'result', 1, 'h', Buffer.from('x')), 0, 'no result after a cancel');
    for (let k = 0; k < 100 && !announced.length; k++) await new Promise((res) => setTimeout(res, 10));
    assert.deepEqual(announced, ['b0123456789abcdef-1']);
    assert.deepEqual((await eventTypes()).sort(), ['cancelled', 'cancelled', 'started']);
  });

  it('takes a call over from a dead host once, then ends it lost', async function () {
    await r.set(keys.alive('b'), '1');
    assert.equal(await claimAs(claim, 'a/1'), 1);
    // 'a' has no heartbeat: 'b' takes the call over and runs it again.
    assert.equal(await claimAs(claim, 'b/1'), 1);
    assert.equal(await r.get(claim), 'b/1');
    // 'b' dies too: one re-run was allowed, so the call ends lost.
    await r.del(keys.alive('b'));
    assert.equal(await claimAs(claim, 'c/1'), 0);
    assert.equal(await r.get(claim), 'done');
    assert.deepEqual(await eventTypes(), ['started', 'started', 'lost']);
  });

  it('ends lost every unfinished call the sweeper names, and no other', async function () {
    const done = keys.claim('b0123456789abcdef-1');
    await r.set(done, 'done');
    const ended = await r.ksLost(3, stream, claim, done, 60_000, 60, lost, 0, 1);
    assert.equal(ended, 1);
    assert.deepEqual(await eventTypes(), ['lost']);
    assert.equal(await claimAs(claim, 'a/1'), 0, 'a lost call never runs');
  });

  it('refreshes only the claims its owner holds', async function () {
    const other = keys.claim('b0123456789abcdef-2');
    await r.ksClaim(claim, stream, tries, 'a/1', 1_000, 0, 'a', 60, keys.alive(''), 1, lost);
    await r.ksClaim(other, stream, `${other}:tries`, 'b/1', 1_000, 2, 'b', 60, keys.alive(''), 1, lost);
    await r.ksRefresh(2, claim, other, 'a/1', 50_000);
    assert.ok((await r.pttl(claim)) > 10_000);
    assert.ok((await r.pttl(other)) <= 1_000);
  });
});
