import assert from 'node:assert/strict';
import { compareStreamIds } from '../src/node/event-reader.js';
import { SentinelSplitter, sentinel } from '../src/worker/executor.js';
import { parseTaskId, queueName, taskIdOf } from '../src/keys.js';
import { py } from '../src/client/py.js';

describe('sentinel splitter', function () {
  function split(chunks: Buffer[]): { text: string; seen: number } {
    let text = '';
    const splitter = new SentinelSplitter((chunk) => (text += chunk.toString('latin1')));
    for (const chunk of chunks) splitter.push(chunk);
    return { text, seen: splitter.seen };
  }

  it('passes output through and counts sentinels', function () {
    const r = split([Buffer.concat([Buffer.from('hello\n'), sentinel, Buffer.from('next')])]);
    assert.equal(r.text, 'hello\nnext');
    assert.equal(r.seen, 1);
  });

  it('finds a sentinel split across chunks, byte by byte', function () {
    const all = Buffer.concat([Buffer.from('ab'), sentinel, Buffer.from('cd'), sentinel]);
    const r = split([...all].map((b) => Buffer.from([b])));
    assert.equal(r.text, 'abcd');
    assert.equal(r.seen, 2);
  });

  it('keeps a NUL that is not a sentinel', function () {
    const r = split([Buffer.from('a\x00b', 'latin1'), Buffer.from('\x00', 'latin1'), Buffer.from('c')]);
    assert.equal(r.text, 'a\x00b\x00c');
    assert.equal(r.seen, 0);
  });
});

describe('stream ids, task ids, queue names', function () {
  it('orders stream ids numerically', function () {
    assert.ok(compareStreamIds('999-5', '1000-0') < 0);
    assert.ok(compareStreamIds('1000-10', '1000-9') > 0);
    assert.equal(compareStreamIds('0-0', '0-0'), 0);
  });

  it('round-trips task ids and rejects malformed ones', function () {
    const id = taskIdOf('b0123456789abcdef', 42);
    assert.deepEqual(parseTaskId(id), { batchId: 'b0123456789abcdef', index: 42 });
    for (const bad of ['x', 'b0123-1', '../etc', 'b0123456789abcdef-', 'b0123456789abcdef-1-2']) assert.equal(parseTaskId(bad), undefined);
  });

  it('names host queues without colons', function () {
    assert.equal(queueName('default'), 'default');
    assert.equal(queueName('default', 'n1'), 'host.n1');
    assert.equal(queueName('gpu', 'n1'), 'gpu.host.n1');
  });
});

describe('py source', function () {
  it('dedents and keeps backslashes raw', function () {
    const fn = py`
      def f():
          return "a\nb"`;
    assert.equal(fn.src, 'def f():\n    return "a\\nb"');
    assert.deepEqual(py.fn('def g(): pass', 'g'), { src: 'def g(): pass', name: 'g' });
  });
});
