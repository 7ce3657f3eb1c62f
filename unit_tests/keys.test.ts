import assert from 'node:assert/strict';
import { Keys } from '../src/keys.js';

/** Redis's hashtag: the part between the first `{` and the next `}`, when not empty; else the whole key. */
function hashtag(key: string): string {
  const open = key.indexOf('{');
  const close = open >= 0 ? key.indexOf('}', open + 1) : -1;
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

describe('Keys: the Redis layout, and its hashtags under Redis Cluster', function () {
  const single = new Keys('ks');
  const cluster = new Keys('ks', true);

  it("names a single Redis's keys as DESIGN's table does", function () {
    assert.deepEqual(
      [single.hosts, single.alive('n1'), single.claim('b0123456789abcdef-7'), single.batchEvents('b0123456789abcdef'), single.data('a/b'), single.dataHosts('a/b'), single.bullQueue('default'), single.bullKey('host.n1', 'wait')],
      ['ks:hosts', 'ks:alive:n1', 'ks:claim:b0123456789abcdef-7', 'ks:batch:b0123456789abcdef:events', 'ks:data:a/b', 'ks:data:a/b:hosts', 'default', 'ks:host.n1:wait'],
    );
  });

  it('gives what one script or MULTI touches one hashtag under Redis Cluster, and batches, data and queues their own', function () {
    const batch = 'b0123456789abcdef';
    const batchKeys = [cluster.batchEvents(batch), cluster.batchMeta(batch), cluster.claim(`${batch}-0`), cluster.claim(`${batch}-12`), cluster.claimTries(`${batch}-12`)];
    assert.deepEqual(new Set(batchKeys.map(hashtag)), new Set([batch]));
    const registryKeys = [cluster.hosts, cluster.beats, cluster.alive('n1'), cluster.jobs, cluster.persisted('default'), cluster.persistedQueues, cluster.dashboard, cluster.dashboardWatched];
    assert.deepEqual(new Set(registryKeys.map(hashtag)), new Set(['ks']));
    assert.equal(hashtag(cluster.data('x/y')), hashtag(cluster.dataHosts('x/y')));
    assert.notEqual(hashtag(cluster.data('x/y')), hashtag(cluster.data('x/z')));
    assert.equal(hashtag(cluster.bullKey('work', 'wait')), 'work');
    assert.equal(cluster.claim(`${batch}-3`), `ks:claim:{${batch}}-3`);
  });

  it('reads the url back out of a data key, in either layout', function () {
    for (const keys of [single, cluster]) {
      for (const url of ['plain', 'a/b/c.npy', 'with:colons', 'ends:hosts-not', 'odd{brace}name']) {
        assert.equal(keys.urlOfDataKey(keys.data(url)), url, `${keys.cluster} ${url}`);
        assert.equal(keys.urlOfDataKey(keys.dataHosts(url)), url, `${keys.cluster} ${url} hosts`);
      }
    }
  });
});
