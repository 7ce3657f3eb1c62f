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
  const stream = keys.batchEvents('b0123456789abcdef');

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
    const wins = await Promise.all(['a', 'b', 'c'].map((owner) => r.ksClaim(claim, stream, owner, 10_000, 0, owner, 60)));
    assert.deepEqual(wins.sort(), [0, 0, 1]);
    assert.deepEqual(await eventTypes(), ['started']);
  });

  it('finishes only for the owner, then blocks every later claim', async function () {
    await r.ksClaim(claim, stream, 'a', 10_000, 0, 'h', 60);
    assert.equal(await r.ksFinish(claim, stream, 'b', 60_000, 60, 'result', 0, 'h', Buffer.from('x')), 0);
    assert.equal(await r.ksFinish(claim, stream, 'a', 60_000, 60, 'result', 0, 'h', Buffer.from('x')), 1);
    assert.equal(await r.get(claim), 'done');
    assert.equal(await r.ksClaim(claim, stream, 'c', 10_000, 0, 'h', 60), 0);
    assert.deepEqual(await eventTypes(), ['started', 'result']);
    assert.ok((await r.ttl(stream)) > 0, 'the stream expires');
  });

  it('cancels waiting calls for good and announces running ones', async function () {
    const sub = redis.client();
    const announced: string[] = [];
    await sub.subscribe(keys.cancelChannel);
    sub.on('message', (_c: string, taskId: string) => announced.push(taskId));
    const running = keys.claim('b0123456789abcdef-1');
    await r.ksClaim(running, stream, 'a', 10_000, 1, 'h', 60);
    const ended = await r.ksCancel(4, stream, keys.cancelChannel, claim, running, 60_000, 60, encode({ kind: 'cancelled' }), 0, 'b0123456789abcdef-0', 1, 'b0123456789abcdef-1');
    assert.equal(ended, 2);
    assert.equal(await r.ksClaim(claim, stream, 'b', 10_000, 0, 'h', 60), 0, 'a cancelled call never runs');
    assert.equal(await r.ksFinish(running, stream, 'a', 60_000, 60, 'result', 1, 'h', Buffer.from('x')), 0, 'no result after a cancel');
    for (let k = 0; k < 100 && !announced.length; k++) await new Promise((res) => setTimeout(res, 10));
    assert.deepEqual(announced, ['b0123456789abcdef-1']);
    assert.deepEqual((await eventTypes()).sort(), ['cancelled', 'cancelled', 'started']);
  });

  it('refreshes only the claims its owner holds', async function () {
    const other = keys.claim('b0123456789abcdef-2');
    await r.ksClaim(claim, stream, 'a', 1_000, 0, 'h', 60);
    await r.ksClaim(other, stream, 'b', 1_000, 2, 'h', 60);
    await r.ksRefresh(2, claim, other, 'a', 50_000);
    assert.ok((await r.pttl(claim)) > 10_000);
    assert.ok((await r.pttl(other)) <= 1_000);
  });
});
