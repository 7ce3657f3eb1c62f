import { Worker } from 'node:worker_threads';

/** The thread's code: one md5 per session id; acknowledges each block so the sender can pace itself. */
const threadSource = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', ({ id, block }) => {
  let hash = hashes.get(id);
  if (!hash) hashes.set(id, (hash = createHash('md5')));
  if (block) {
    hash.update(block);
    parentPort.postMessage({ id, acked: block.byteLength });
  } else {
    hashes.delete(id);
    parentPort.postMessage({ id, md5: hash.digest('hex') });
  }
});`;

/** At most this many bytes wait for the hashing thread per session before the sender waits. */
const maxPendingBytes = 8 * 1024 * 1024;

interface HasherMessage {
  id: number;
  acked?: number;
  md5?: string;
}

export interface Md5Session {
  /** Hashes a copy of `block`; resolves when the sender may go on (bounded lag). */
  update(block: Buffer): Promise<void>;
  digest(): Promise<string>;
}

/**
 * md5 on a thread of its own: hashing (about 600 MB/s here) then overlaps with reading the
 * socket and writing the disk instead of adding to them, on the upload path of large data.
 */
export class Md5Hasher {
  private worker?: Worker;
  private nextId = 0;
  private readonly listeners = new Map<number, (message: HasherMessage) => void>();

  session(): Md5Session {
    const worker = this.thread();
    const id = ++this.nextId;
    let pending = 0;
    let wake: (() => void) | undefined;
    let finish: ((md5: string) => void) | undefined;
    this.listeners.set(id, (message) => {
      if (message.acked !== undefined) {
        pending -= message.acked;
        if (pending <= maxPendingBytes && wake) {
          wake();
          wake = undefined;
        }
      } else if (message.md5) {
        this.listeners.delete(id);
        finish?.(message.md5);
      }
    });
    return {
      update: async (block) => {
        pending += block.byteLength;
        worker.postMessage({ id, block });
        if (pending > maxPendingBytes) await new Promise<void>((resolve) => (wake = resolve));
      },
      digest: () =>
        new Promise<string>((resolve) => {
          finish = resolve;
          worker.postMessage({ id });
        }),
    };
  }

  close(): Promise<number> | undefined {
    return this.worker?.terminate();
  }

  private thread(): Worker {
    if (!this.worker) {
      this.worker = new Worker(threadSource, { eval: true });
      this.worker.unref();
      this.worker.on('message', (message: HasherMessage) => this.listeners.get(message.id)?.(message));
    }
    return this.worker;
  }
}
