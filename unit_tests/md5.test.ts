import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Md5Hasher } from '../src/data/md5-hasher.js';

describe('md5 thread', function () {
  let hasher: Md5Hasher;

  beforeEach(() => {
    hasher = new Md5Hasher();
  });
  afterEach(async () => {
    await hasher.close();
  });

  it('hashes chunks handed over in order, whole buffers and slices of a shared one alike', async function () {
    const data = randomBytes(20 * 1024 * 1024);
    const expected = createHash('md5').update(data).digest('hex');
    const session = hasher.session();
    const shared = Buffer.from(data.subarray(0, 3000)); // copied, then sliced: not a whole buffer
    await session.written([shared.subarray(0, 1000), shared.subarray(1000)]);
    for (let at = 3000; at < data.length; at += 65536) {
      await session.written([Buffer.from(data.subarray(at, Math.min(at + 65536, data.length)))]);
    }
    assert.equal(await session.digest(data.length), expected);
  });

  it('refuses a digest of a length other than what it was given', async function () {
    const session = hasher.session();
    await session.written([randomBytes(1000)]);
    await assert.rejects(session.digest(2000), /hashed 1000 bytes of 2000/);
  });

  it('fails the uploads of a thread that died, then starts a new one', async function () {
    const broken = hasher.session();
    await broken.written([randomBytes(1000)]);
    await hasher.close();
    await assert.rejects(broken.digest(1000), /the md5 thread failed/);
    const data = randomBytes(5000);
    const next = hasher.session();
    await next.written([Buffer.from(data)]);
    assert.equal(await next.digest(5000), createHash('md5').update(data).digest('hex'));
  });
});
