import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Md5Hasher, type Md5Session } from '../src/data/md5-hasher.js';

const md5Of = (data: Buffer) => createHash('md5').update(data).digest('hex');

/** Feeds `data` through the session's slots as the catalog does, a few slots in flight at once. */
async function feed(session: Md5Session, data: Buffer): Promise<void> {
  const { slots } = session;
  const hashing: Promise<void>[] = slots.map(() => Promise.resolve());
  let k = 0;
  for (let at = 0; at < data.length; k = (k + 1) % slots.length) {
    await hashing[k];
    const bytes = data.copy(slots[k], 0, at, Math.min(at + slots[k].length, data.length));
    at += bytes;
    hashing[k] = session.hash(k, bytes);
  }
  await Promise.all(hashing);
}

describe('md5 thread', function () {
  let hasher: Md5Hasher;

  beforeEach(() => {
    hasher = new Md5Hasher();
  });
  afterEach(async () => {
    await hasher.close();
  });

  it('hashes the slots in the order they were filled, round the ring many times', async function () {
    const data = randomBytes(20 * 1024 * 1024 + 12345);
    const session = hasher.session();
    await feed(session, data);
    assert.equal(await session.digest(data.length), md5Of(data));
  });

  it('keeps sessions apart: two at once get rings of their own, and a later one reuses a ring', async function () {
    const [a, b] = [randomBytes(9 * 1024 * 1024), randomBytes(3 * 1024 * 1024 + 1)];
    const [one, two] = [hasher.session(), hasher.session()];
    assert.notEqual(one.slots[0].buffer, two.slots[0].buffer);
    await Promise.all([feed(one, a), feed(two, b)]);
    assert.deepEqual(await Promise.all([one.digest(a.length), two.digest(b.length)]), [md5Of(a), md5Of(b)]);
    const three = hasher.session();
    assert.ok(three.slots[0].buffer === one.slots[0].buffer || three.slots[0].buffer === two.slots[0].buffer, 'a finished ring is reused');
    const c = randomBytes(5 * 1024 * 1024);
    await feed(three, c);
    assert.equal(await three.digest(c.length), md5Of(c));
    // An abandoned session's ring serves the next one just as well.
    const dropped = hasher.session();
    await feed(dropped, randomBytes(2 * 1024 * 1024));
    dropped.abandon();
    const four = hasher.session();
    await feed(four, c);
    assert.equal(await four.digest(c.length), md5Of(c));
  });

  it('refuses a digest of a length other than what it was given', async function () {
    const session = hasher.session();
    await feed(session, randomBytes(1000));
    await assert.rejects(session.digest(2000), /hashed 1000 bytes of 2000/);
  });

  it('fails the uploads of a thread that died, then starts a new one', async function () {
    const broken = hasher.session();
    await feed(broken, randomBytes(1000));
    await hasher.close();
    await assert.rejects(broken.digest(1000), /the md5 thread failed/);
    const data = randomBytes(5000);
    const next = hasher.session();
    await feed(next, data);
    assert.equal(await next.digest(5000), md5Of(data));
  });
});
