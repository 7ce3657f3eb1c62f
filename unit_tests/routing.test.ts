import assert from 'node:assert/strict';
import { copyTiming, liveRoute, rankHosts, routeCalls, type RoutingCosts } from '../src/routing.js';
import { parseRange } from '../src/data/service.js';
import { validateDataUrl } from '../src/data/catalog.js';

describe('routing by bytes to copy', function () {
  const hosts = ['a', 'b', 'c'];
  const data = {
    big: { size: 1_000_000, holders: ['a'] },
    small: { size: 100_000, holders: ['b'] },
  };

  it('orders hosts by the bytes each lacks, then by name', function () {
    assert.deepEqual(rankHosts(['big', 'small'], data, hosts, 200_000_000), ['a', 'b', 'c']);
    assert.deepEqual(rankHosts(['small'], data, hosts, 200_000_000), ['b', 'a', 'c']);
    assert.deepEqual(rankHosts([], data, ['c', 'a', 'b'], 200_000_000), ['a', 'b', 'c']);
  });

  it('leaves out hosts at or over the threshold', function () {
    assert.deepEqual(rankHosts(['big', 'small'], data, hosts, 1_000_000), ['a']);
    assert.deepEqual(rankHosts(['big'], data, hosts, 1_000_001), ['a', 'b', 'c']);
  });

  it('never returns an empty list while there are hosts', function () {
    assert.deepEqual(rankHosts(['big', 'small'], data, ['b', 'c'], 10), ['b']);
    assert.deepEqual(rankHosts(['big'], data, [], 10), []);
  });

  it('counts a url once however often a call passes it, and ignores unknown urls', function () {
    assert.deepEqual(rankHosts(['small', 'small', 'gone'], data, hosts, 150_000), ['b', 'a', 'c']);
  });
});

describe('data urls and ranges', function () {
  it('accepts plain relative paths and refuses the rest', function () {
    assert.equal(validateDataUrl('a/b-c_d.e/f g'), 'a/b-c_d.e/f g');
    for (const bad of ['', '/abs', 'a/../b', '..', 'a//b', 'a/./b', 'nul\0', 'back\\slash', 'co:lon', 'star*', 'x'.repeat(1025), 42]) {
      assert.throws(() => validateDataUrl(bad), /data url/, String(bad));
    }
  });

  it('parses single byte ranges and refuses others with 416', function () {
    assert.deepEqual(parseRange('bytes=2-5', 10), { start: 2, end: 5 });
    assert.deepEqual(parseRange('bytes=7-', 10), { start: 7, end: 9 });
    assert.deepEqual(parseRange('bytes=-3', 10), { start: 7, end: 9 });
    assert.deepEqual(parseRange('bytes=5-100', 10), { start: 5, end: 9 });
    for (const bad of ['bytes=10-12', 'bytes=5-2', 'bytes=-', 'items=1-2', 'bytes=1-2,4-5']) {
      assert.throws(() => parseRange(bad, 10), (e: { status?: number }) => e.status === 416, bad);
    }
  });

  it("counts the copies a batch's earlier calls make: later calls go where the data gathers", function () {
    const data = { p: { size: 10_000_000, holders: ['a'] }, q: { size: 1_000_000, holders: ['c'] } };
    const everywhere = ['a', 'b', 'c'];
    // Call 0 reads p and q: a copies 1 MB. Call 1 reads q: a holds it by then, as c does (tie by name).
    // Each host comes with the bytes it would copy.
    assert.deepEqual(routeCalls([['p', 'q'], ['q'], []], data, [everywhere, everywhere, everywhere], 200_000_000), [
      [
        { name: 'a', bytesToCopy: 1_000_000, copies: 1 },
        { name: 'c', bytesToCopy: 10_000_000, copies: 1 },
        { name: 'b', bytesToCopy: 11_000_000, copies: 2 },
      ],
      [
        { name: 'a', bytesToCopy: 0, copies: 0 },
        { name: 'c', bytesToCopy: 0, copies: 0 },
        { name: 'b', bytesToCopy: 1_000_000, copies: 1 },
      ],
      [],
    ]);
    // Alone, call 1 goes to c, the only holder; the input is not changed.
    assert.deepEqual(
      routeCalls([['q']], data, [everywhere], 200_000_000).map((route) => route.map((h) => h.name)),
      [['c', 'a', 'b']],
    );
    assert.deepEqual(data.q.holders, ['c']);
  });

  it('spreads a batch by when each host could start a call: a busy holder loses calls to an idle host that copies', function () {
    const data = { p: { size: 10_000_000, holders: ['a'] } };
    const both = ['a', 'b'];
    const firstHosts = (options?: RoutingCosts) =>
      routeCalls([['p'], ['p'], ['p'], ['p']], data, [both, both, both, both], 200_000_000, options).map((route) => route[0].name);
    // Bytes alone: every call to a, the holder.
    assert.deepEqual(firstHosts(), ['a', 'a', 'a', 'a']);
    // Copying 10 MB at 100 MB/s takes 100 ms: once a has 100 ms of calls, b copies p and takes its share.
    assert.deepEqual(firstHosts({ bytesPerMs: 100_000, copyMs: 0, callMs: 60 }), ['a', 'a', 'b', 'a']);
    // Each copy's own cost counts too: with 50 ms for the request, b could start at 150 ms and takes only the fourth.
    assert.deepEqual(firstHosts({ bytesPerMs: 100_000, copyMs: 50, callMs: 60 }), ['a', 'a', 'a', 'b']);
  });

  it('gathers the calls that copy the threshold or more anywhere on one host per group of data read together', function () {
    const data = {
      p: { size: 20_000_000, holders: ['a'] },
      q: { size: 15_000_000, holders: ['b'] },
      r: { size: 10_000_000, holders: ['c'] },
      s: { size: 30_000_000, holders: ['d'] },
      t: { size: 25_000_000, holders: ['e'] },
    };
    const all = ['a', 'b', 'c', 'd', 'e'];
    // Copies at 100 MB/s; a call runs for a second.
    const costs = { bytesPerMs: 100_000, copyMs: 0, callMs: 1000 };
    const firstHosts = (calls: string[][], threshold: number) =>
      routeCalls(calls, data, calls.map(() => all), threshold, costs).map((route) => route.map((h) => `${h.name}:${h.bytesToCopy / 1e6}`));
    // p, q and r are read together: each call on its own cheapest host would copy 15 + 10 + 10 MB
    // to a, b and a; gathered on a (the least to bring there: q and r), 25 MB, once.
    // s and t are another group: gathered on d, which holds the bigger. Calls under the threshold somewhere (p alone) are not gathered.
    assert.deepEqual(firstHosts([['p', 'q'], ['q', 'r'], ['s', 't'], ['r', 'p'], ['p']], 5_000_000), [['a:15'], ['a:10'], ['d:25'], ['a:0'], ['a:0']]);
    // Under a threshold no call reaches, the same calls spread by when each host could start
    // them, copying 70 MB instead of 50.
    assert.deepEqual(firstHosts([['p', 'q'], ['q', 'r'], ['s', 't'], ['r', 'p']], 200_000_000).map((route) => route[0]), ['a:15', 'b:10', 'd:25', 'c:20']);
  });

  it('queues a routed call on a few hosts however many there are: the client routes it to at most hostsPerRoute, a node queues it on as many', function () {
    const many = Array.from({ length: 300 }, (_, k) => `h${String(k).padStart(3, '0')}`);
    const data = { p: { size: 1_000_000, holders: ['h042'] } };
    const [route] = routeCalls([['p']], data, [many], 200_000_000, undefined, 8);
    assert.deepEqual(
      route.map((h) => h.name),
      ['h042', 'h000', 'h001', 'h002', 'h003', 'h004', 'h005', 'h006'],
    );
    // A route from any caller: dead hosts and repeats left out, then at most maxHosts, each with the bytes it copies beyond the first's.
    const live = new Set(['a', 'b', 'c', 'd']);
    assert.deepEqual(liveRoute(['b', 'gone', 'b', 'a', 'c', 'd'], [5, 0, 5, 9, 2, 0], live, 3), [
      { name: 'b', extraBytes: 0 },
      { name: 'a', extraBytes: 4 },
      { name: 'c', extraBytes: 0 },
    ]);
    assert.deepEqual(liveRoute(['a', 'b'], undefined, live, 8), [
      { name: 'a', extraBytes: 0 },
      { name: 'b', extraBytes: 0 },
    ]);
    assert.deepEqual(liveRoute(['gone'], [0], live, 8), []);
  });

  it("delays a host's copy of a call by its rank and by the time its extra bytes take to copy", function () {
    const opts = { stealDelayMs: 200, copyBytesPerMs: 100_000 };
    assert.deepEqual(copyTiming(0, 0, opts), {});
    assert.deepEqual(copyTiming(1, 0, opts), { priority: 1, delay: 200 });
    // 50 MB more than the first host copies: 500 ms later, and behind its cheaper copies.
    assert.deepEqual(copyTiming(2, 50_000_000, opts), { priority: 52, delay: 900 });
    assert.equal(copyTiming(1, 1e15, opts).priority, 2_097_152);
  });
});
