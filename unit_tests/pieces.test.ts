import assert from 'node:assert/strict';
import { compareStreamIds } from '../src/node/event-reader.js';
import { SentinelSplitter, sentinel, withHugePages } from '../src/worker/executor.js';
import { batchIdPattern, newBatchId, parseTaskId, queueName, taskIdOf } from '../src/keys.js';
import { IdleCollector } from '../src/node/idle-gc.js';
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

  it('hands over bytes held as a possible sentinel start when told none is coming', function () {
    let text = '';
    const splitter = new SentinelSplitter((chunk) => (text += chunk.toString('latin1')));
    splitter.push(Buffer.from('end\x00\x1e', 'latin1'));
    assert.equal(text, 'end');
    splitter.flush();
    assert.equal(text, 'end\x00\x1e');
    splitter.flush();
    assert.equal(text, 'end\x00\x1e');
  });

  it('keeps a NUL that is not a sentinel', function () {
    const r = split([Buffer.from('a\x00b', 'latin1'), Buffer.from('\x00', 'latin1'), Buffer.from('c')]);
    assert.equal(r.text, 'a\x00b\x00c');
    assert.equal(r.seen, 0);
  });
});

describe('interpreter glibc tunables', function () {
  it('adds huge pages for large allocations to what the user set, unless the user chose', function () {
    assert.equal(withHugePages(undefined), 'glibc.malloc.hugetlb=1');
    assert.equal(withHugePages(''), 'glibc.malloc.hugetlb=1');
    assert.equal(withHugePages('glibc.malloc.arena_max=2'), 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1');
    assert.equal(withHugePages('glibc.malloc.hugetlb=0'), 'glibc.malloc.hugetlb=0');
    assert.equal(withHugePages('glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2'), 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2');
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

describe('batch ids', function () {
  it('are b and 16 hex digits, and do not repeat across refills of the random pool', function () {
    const ids = Array.from({ length: 3000 }, () => newBatchId());
    for (const id of ids) assert.match(id, batchIdPattern);
    assert.equal(new Set(ids).size, ids.length);
    assert.deepEqual(parseTaskId(taskIdOf(ids[0], 7)), { batchId: ids[0], index: 7 });
  });
});

describe('idle collector', function () {
  function collector(busy: { now: boolean }, heap: { used: number }) {
    let collections = 0;
    const idle = new IdleCollector(() => busy.now, {
      quietMs: 500,
      minGrowthBytes: 100,
      collect: () => {
        collections += 1;
        heap.used = 10;
      },
      heap: () => ({ held: heap.used + 20, used: heap.used }),
    });
    return { idle, collections: () => collections };
  }

  it('collects once after work, when quiet long enough and the heap grew', function () {
    const busy = { now: false };
    const heap = { used: 10 };
    const { idle, collections } = collector(busy, heap);
    try {
      idle.touch(1_000);
      heap.used = 500;
      idle.look(1_200);
      assert.equal(collections(), 0, 'not quiet long enough yet');
      busy.now = true;
      idle.look(1_600);
      busy.now = false;
      idle.look(2_000);
      assert.equal(collections(), 0, 'a running call counts as activity');
      idle.look(2_100);
      assert.equal(collections(), 1);
      heap.used = 500;
      idle.look(5_000);
      assert.equal(collections(), 1, 'nothing happened since: no second collection');
    } finally {
      idle.close();
    }
  });

  it('leaves a heap that did not grow alone, and makes room before a large upload only if it grew', function () {
    const heap = { used: 10 };
    const { idle, collections } = collector({ now: false }, heap);
    try {
      idle.touch(1_000);
      heap.used = 50;
      idle.look(2_000);
      idle.makeRoom();
      assert.equal(collections(), 0);
      heap.used = 200;
      idle.makeRoom();
      assert.equal(collections(), 1);
    } finally {
      idle.close();
    }
  });
});
