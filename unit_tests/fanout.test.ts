import assert from 'node:assert/strict';
import { Fanout, sseMessage, type Sink } from '../src/dashboard/fanout.js';

/** A viewer whose connection takes `drain()`-ed bytes only: what it was written stays buffered until then. */
class SlowViewer implements Sink {
  received: string[] = [];
  buffered = 0;
  write(message: string | Buffer): void {
    this.received.push(message.toString());
    this.buffered += message.length;
  }
  drain(): void {
    this.buffered = 0;
  }
  ended = false;
  end(): void {
    this.ended = true;
  }
}

describe('the dashboard feed fan-out', function () {
  it('hands every message to every viewer that keeps up, as Server-Sent Events', function () {
    const fanout = new Fanout(1_000);
    const a = new SlowViewer();
    const b = new SlowViewer();
    fanout.add(a);
    fanout.add(b);
    fanout.publish(sseMessage('tick', { n: 1 }));
    a.drain();
    b.drain();
    fanout.publish(sseMessage('tick', { n: 2 }));
    assert.deepEqual(a.received, ['event: tick\ndata: {"n":1}\n\n', 'event: tick\ndata: {"n":2}\n\n']);
    assert.deepEqual(b.received, a.received);
  });

  it('holds at most its bound for a viewer that falls behind, then tells it how many messages it missed', function () {
    const fanout = new Fanout(100);
    const slow = new SlowViewer();
    const fast = new SlowViewer();
    fanout.add(slow);
    fanout.add(fast);
    const message = sseMessage('tick', { pad: 'x'.repeat(60) });
    for (let k = 0; k < 50; k++) {
      fanout.publish(message);
      fast.drain();
    }
    // The slow one took messages until its buffer passed the bound, then none: its buffer never grew past bound + one message.
    assert.equal(fast.received.length, 50);
    assert.equal(slow.received.length, 2);
    assert.ok(slow.buffered <= 100 + message.length);
    slow.drain();
    fanout.publish(message);
    assert.deepEqual(slow.received.slice(2), [sseMessage('gap', { missed: 48 }), message]);
    // Caught up: no gap again.
    slow.drain();
    fanout.publish(message);
    assert.equal(slow.received[slow.received.length - 1], message);
    assert.equal(slow.received.length, 5);
  });

  it('ends every viewer when the node stops', function () {
    const fanout = new Fanout(100);
    const viewers = [new SlowViewer(), new SlowViewer()];
    viewers.forEach((v) => fanout.add(v));
    fanout.endAll();
    assert.deepEqual(viewers.map((v) => v.ended), [true, true]);
    assert.equal(fanout.size, 0);
  });

  it('forgets a viewer that left', function () {
    const fanout = new Fanout(100);
    const viewer = new SlowViewer();
    fanout.add(viewer);
    fanout.remove(viewer);
    fanout.publish(sseMessage('tick', {}));
    assert.equal(fanout.size, 0);
    assert.deepEqual(viewer.received, []);
  });
});
