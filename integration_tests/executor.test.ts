import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { decode, encode, joined, Spliced } from '../src/codec.js';
import { PythonExecutor, type OutputStream } from '../src/worker/executor.js';
import { repoRoot } from './harness.js';

// One real interpreter driven directly, for what the node's HTTP routes cannot pin down:
// the order of a call's output and its reply when the output's sink makes the pipes wait.
describe('a warm interpreter', function () {
  let executor: PythonExecutor;

  before(async function () {
    executor = new PythonExecutor({ python: 'python3', pythonPath: [join(repoRoot, 'python')], env: {}, modules: [] });
    await executor.ready();
  });

  after(async function () {
    await executor?.close();
  });

  it('hands a call all its output before its result, even what was read while its sink made the pipes wait', async function () {
    // The first chunk's sink takes 300 ms: the pipes pause. The next two chunks are read into
    // the paused stream meanwhile, so the pipe is empty when the call ends and its reply
    // comes without an end marker: the reply must still wait for them.
    const src = `
import os, time
def f():
    os.write(1, b"one;")
    time.sleep(0.05)
    os.write(1, b"two;")
    os.write(1, b"three;")
    time.sleep(0.05)
    return 3
`;
    const received: string[] = [];
    let first = true;
    const outcome = await executor.run({
      fn: { src, name: 'f' },
      payload: encode([[], {}]),
      onOutput: (_stream: OutputStream, chunk: Buffer) => {
        received.push(chunk.toString());
        if (!first) return;
        first = false;
        return new Promise<void>((resolve) => setTimeout(resolve, 300));
      },
    });
    assert.deepEqual(outcome.ok && [...joined(outcome.value)], [...encode(3)]);
    assert.equal(received.join(''), 'one;two;three;');
  });

  it('reads frames of every size whole, around the 64 kB of one pipe read and far past it', async function () {
    const src = `
import hashlib
def f(b):
    return [len(b), hashlib.md5(b).hexdigest()]
`;
    // Around the 64 kB a single read takes, and far past it.
    for (const size of [0, 10, 65_000, 65_536, 70_000, 5_000_000, 3]) {
      const bytes = randomBytes(size);
      const outcome = await executor.run({ fn: { src, name: 'f' }, payload: encode([[bytes], {}]), onOutput: () => undefined });
      assert.ok(outcome.ok, `size ${size}`);
      assert.deepEqual(decode(joined(outcome.value)), [size, createHash('md5').update(bytes).digest('hex')]);
    }
  });

  it('hands a big result on as the pipe chunks it came in, not joined', async function () {
    const bytes = randomBytes(5_000_000);
    const outcome = await executor.run({ fn: { src: 'def f(b):\n    return b', name: 'f' }, payload: encode([[bytes], {}]), onOutput: () => undefined });
    assert.ok(outcome.ok);
    assert.ok(outcome.value instanceof Spliced && outcome.value.pieces.length > 1, 'the value is the chunks it came in');
    assert.ok(Buffer.from(decode<Uint8Array>(joined(outcome.value))).equals(bytes));
  });
});
