import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { encode } from '../src/codec.js';
import { Keys } from '../src/keys.js';
import { ClaimAnswer, ClaimLock } from '../src/worker/claim.js';
import { startRedis, type TestRedis } from '../integration_tests/harness.js';

// The claim scripts against a real Redis: exactly-once, take-over from dead hosts,
// cancellation, refresh, and the batch's expiry once its last call ended.
describe('claim lock', function () {
  let redis: TestRedis;
  let r: Redis;
  let claims: ClaimLock;
  const keys = new Keys('kt');
  const batch = 'b0123456789abcdef';
  const stream = keys.batchEvents(batch);
  const meta = keys.batchMeta(batch);
  const lost = encode({ kind: 'lost', message: 'gone' });
  const claimAs = (owner: string, index = 0) => claims.claim(batch, index, owner, owner.split('/')[0], 1, lost);

  before(async function () {
    redis = await startRedis();
    r = redis.client();
    claims = new ClaimLock(r, keys, { claimTtlMs: 10_000, resultTtlS: 60, minDoneTtlS: 600, batchSafetyTtlS: 86_400 });
  });
  after(async function () {
    await redis?.stop();
  });
  beforeEach(async function () {
    await r.flushall();
    await r.hset(meta, 'n', 3);
    for (const host of ['a', 'b', 'c']) await r.set(keys.alive(host), '1');
  });

  async function eventTypes(): Promise<string[]> {
    const entries = await r.xrange(stream, '-', '+');
    return entries.map(([, fields]) => fields[fields.indexOf('t') + 1]);
  }

  it('lets one owner run a call; the others keep their copies to look again', async function () {
    const answers = await Promise.all(['a/1', 'b/1', 'c/1'].map((owner) => claimAs(owner)));
    assert.deepEqual(answers.sort(), [ClaimAnswer.run, ClaimAnswer.recheck, ClaimAnswer.recheck]);
    assert.deepEqual(await eventTypes(), ['started']);
  });

  it('finishes only for the owner, then drops every later copy', async function () {
    await claimAs('a/1');
    assert.equal(await claims.finish(batch, 0, 'b/1', 'b', 'result', Buffer.from('x'), '0 0 0'), false);
    assert.equal(await claims.finish(batch, 0, 'a/1', 'a', 'result', Buffer.from('x'), '0 0 0'), true);
    assert.equal(await r.get(keys.claim(`${batch}-0`)), 'done');
    assert.ok((await r.ttl(keys.claim(`${batch}-0`))) >= 599, 'a done claim outlives queued copies');
    assert.equal(await claimAs('c/1'), ClaimAnswer.drop);
    assert.deepEqual(await eventTypes(), ['started', 'result']);
  });

  it('keeps a batch until its last call ended, then expires it after --result-ttl', async function () {
    for (const index of [0, 1]) {
      await claimAs('a/1', index);
      await claims.finish(batch, index, 'a/1', 'a', 'result', Buffer.from('x'), '0 0 0');
    }
    assert.ok((await r.ttl(stream)) > 60, 'two of three ended: only the safety expiry');
    await claimAs('a/1', 2);
    await claims.finish(batch, 2, 'a/1', 'a', 'result', Buffer.from('x'), '0 0 0');
    const ttl = await r.ttl(stream);
    assert.ok(ttl > 0 && ttl <= 60, `the last ended: stream expires in ${ttl} s`);
    assert.ok((await r.ttl(meta)) <= 60);
  });

  it('takes a call over from a dead host once, then ends it lost', async function () {
    assert.equal(await claimAs('a/1'), ClaimAnswer.run);
    await r.del(keys.alive('a'));
    assert.equal(await claimAs('b/1'), ClaimAnswer.run, 'b takes over from dead a');
    await r.del(keys.alive('b'));
    assert.equal(await claimAs('c/1'), ClaimAnswer.drop, 'one re-run was allowed: the call is lost');
    assert.equal(await r.get(keys.claim(`${batch}-0`)), 'done');
    assert.deepEqual(await eventTypes(), ['started', 'started', 'lost']);
  });

  it('cancels waiting calls for good and announces running ones', async function () {
    const sub = redis.client();
    const announced: string[] = [];
    await sub.subscribe(keys.cancelChannel);
    sub.on('message', (_c: string, taskId: string) => announced.push(taskId));
    await claimAs('a/1', 1);
    assert.equal(await claims.endCalls(batch, [0, 1], 'cancelled', encode({ kind: 'cancelled' })), 2);
    assert.equal(await claimAs('b/1', 0), ClaimAnswer.drop, 'a cancelled call never runs');
    assert.equal(await claims.finish(batch, 1, 'a/1', 'a', 'result', Buffer.from('x'), '0 0 0'), false, 'no result after a cancel');
    for (let k = 0; k < 100 && !announced.length; k++) await new Promise((res) => setTimeout(res, 10));
    assert.deepEqual(announced, [`${batch}-1`]);
    assert.deepEqual((await eventTypes()).sort(), ['cancelled', 'cancelled', 'started']);
    assert.equal(await claims.endCalls(batch, [0, 1], 'lost', lost), 0, 'ended calls stay ended');
  });

  it('refreshes only the claims its owner holds', async function () {
    const fast = new ClaimLock(r, keys, { claimTtlMs: 1_000, resultTtlS: 60, minDoneTtlS: 600, batchSafetyTtlS: 86_400 });
    await fast.claim(batch, 0, 'a/1', 'a', 1, lost);
    await fast.claim(batch, 2, 'b/1', 'b', 1, lost);
    await claims.refresh([keys.claim(`${batch}-0`), keys.claim(`${batch}-2`)], 'a/1');
    assert.ok((await r.pttl(keys.claim(`${batch}-0`))) > 5_000);
    assert.ok((await r.pttl(keys.claim(`${batch}-2`))) <= 1_000);
  });
});
