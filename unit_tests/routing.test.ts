import assert from 'node:assert/strict';
import { rankHosts, routeCalls } from '../src/routing.js';
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
    assert.deepEqual(routeCalls([['p', 'q'], ['q'], []], data, [everywhere, everywhere, everywhere], 200_000_000), [
      ['a', 'c', 'b'],
      ['a', 'c', 'b'],
      [],
    ]);
    // Alone, call 1 goes to c, the only holder; the input is not changed.
    assert.deepEqual(routeCalls([['q']], data, [everywhere], 200_000_000), [['c', 'a', 'b']]);
    assert.deepEqual(data.q.holders, ['c']);
  });
});
