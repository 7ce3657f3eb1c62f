import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { ReplicaWait } from '../src/node/replica-wait.js';

/** A stand-in for one Redis master: what INFO replication says, and how it answers WAIT. */
function master(replication: string, answerWait: () => Promise<number>) {
  const waits: unknown[][] = [];
  const redis = {
    options: { host: '10.0.0.1', port: 6379 },
    info: async () => replication,
    call: (...args: unknown[]) => {
      waits.push(args);
      return answerWait();
    },
  };
  return { redis: redis as unknown as Redis, waits };
}

const online = 'role:master\nconnected_slaves:1\nslave0:ip=10.0.0.2,port=6379,state=online,offset=42,lag=0\n';

describe('waiting for Redis replicas', function () {
  const started: ReplicaWait[] = [];
  const make = (redis: Redis, log: string[]) => {
    const wait = new ReplicaWait(redis, { timeoutMs: 20, refreshMs: 60_000, log: (line) => log.push(line) });
    started.push(wait);
    return wait;
  };

  after(function () {
    for (const wait of started) wait.close();
  });

  it('sends WAIT 1 after each batch to a master with a replica online', async function () {
    const m = master(online, async () => 1);
    const log: string[] = [];
    const wait = make(m.redis, log);
    await wait.start();
    await wait.afterWrites();
    await wait.afterWrites();
    assert.deepEqual(m.waits, [
      ['WAIT', 1, 20],
      ['WAIT', 1, 20],
    ]);
    assert.deepEqual(log, []);
  });

  it('never sends WAIT to a master without a replica online (it would sit out its timeout)', async function () {
    for (const replication of ['role:master\nconnected_slaves:0\n', 'role:master\nconnected_slaves:1\nslave0:ip=10.0.0.2,port=6379,state=wait_bgsave,offset=0,lag=0\n']) {
      const m = master(replication, async () => 1);
      const wait = make(m.redis, []);
      await wait.start();
      await wait.afterWrites();
      assert.deepEqual(m.waits, [], replication);
    }
  });

  it('logs a replica that misses the timeout, and leaves its master out until the next look', async function () {
    const m = master(online, async () => 0);
    const log: string[] = [];
    const wait = make(m.redis, log);
    await wait.start();
    await wait.afterWrites();
    await wait.afterWrites();
    assert.equal(m.waits.length, 1);
    assert.deepEqual(log, ['no replica of 10.0.0.1:6379 confirmed a batch within 20 ms: a failover now could lose it']);
  });

  it('answers the batch when a master does not answer WAIT at all, a second after its timeout', async function () {
    const m = master(online, () => new Promise<number>(() => {}));
    const log: string[] = [];
    const wait = make(m.redis, log);
    await wait.start();
    await wait.afterWrites();
    assert.deepEqual(log, ['no replica of 10.0.0.1:6379 confirmed a batch (WAIT failed: no answer in 1020 ms): a failover now could lose it']);
  });
});
