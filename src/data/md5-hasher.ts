import { Worker } from 'node:worker_threads';
import { config } from '../config.js';

/**
 * The thread's code. Each session hashes, in order, slots of a ring of shared memory the
 * writer fills: the thread reads them where they are, while the writer writes the same
 * bytes to disk. A ring is sent once and kept: the next session that takes it reuses it.
 */
const threadSource = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const rings = new Map();
const sessions = new Map();
parentPort.on('message', ({ id, ring, memory, slot, bytes, end }) => {
  if (memory) rings.set(ring, new Uint8Array(memory));
  let s = sessions.get(id);
  if (!s) sessions.set(id, (s = { hash: createHash('md5'), hashed: 0, ring: rings.get(ring) }));
  if (bytes !== undefined) {
    s.hash.update(s.ring.subarray(slot, slot + bytes));
    s.hashed += bytes;
    parentPort.postMessage({ id, slot });
  }
  if (end !== undefined) {
    sessions.delete(id);
    if (end < 0) return;
    const md5 = s.hashed === end ? s.hash.digest('hex') : undefined;
    parentPort.postMessage({ id, md5, error: md5 ? undefined : 'hashed ' + s.hashed + ' bytes of ' + end });
  }
});`;

interface HasherMessage {
  id: number;
  /** The byte offset of a slot now hashed. */
  slot?: number;
  md5?: string;
  error?: string;
}

/** Shared memory cut into slots; a session at a time fills and hashes them. */
interface Ring {
  id: number;
  memory: SharedArrayBuffer;
  slots: Buffer[];
  /** The thread has it (it is sent with a session's first slot only once). */
  sent: boolean;
}

export interface Md5Session {
  /**
   * The memory to receive the file into. Fill a slot with the file's next bytes, then `hash`
   * it and write it; fill it again only once both are done.
   */
  readonly slots: readonly Buffer[];
  /** Hashes the first `bytes` of slot `k`, the file's next bytes; resolves once they are hashed. */
  hash(k: number, bytes: number): Promise<void>;
  /** The file holds `bytes` in all: resolves to its md5 once hashed. */
  digest(bytes: number): Promise<string>;
  /** Forgets the session (the write failed). */
  abandon(): void;
}

/**
 * md5 on a thread of its own, reading the slots the writer fills where they are: hashing
 * (about 600 MB/s on one core here) overlaps with reading the socket and writing the disk,
 * and no memory is allocated, moved or collected per chunk.
 */
export class Md5Hasher {
  private worker?: Worker;
  private nextId = 0;
  private readonly listeners = new Map<number, (message: HasherMessage) => void>();
  /** Rings no session is using: kept, so their memory stays warm and the thread keeps its view. */
  private readonly idleRings: Ring[] = [];
  private ringCount = 0;

  session(): Md5Session {
    const worker = this.thread();
    const id = ++this.nextId;
    const ring = this.idleRings.pop() ?? this.newRing();
    const hashed = new Map<number, () => void>();
    /** The digest, or why there is none (the thread failed), once the thread answered. */
    let outcome: HasherMessage | undefined;
    let finished: ((message: HasherMessage) => void) | undefined;
    let returned = false;
    const giveBack = () => {
      if (returned) return;
      returned = true;
      // A failed thread may have lost the ring's view; a new thread gets new rings.
      if (this.worker === worker && !outcome?.error) this.idleRings.push(ring);
    };
    this.listeners.set(id, (message) => {
      if (message.slot !== undefined) {
        hashed.get(message.slot)?.();
        hashed.delete(message.slot);
        return;
      }
      this.listeners.delete(id);
      outcome = message;
      for (const done of hashed.values()) done();
      hashed.clear();
      finished?.(message);
    });
    return {
      slots: ring.slots,
      hash: (k, bytes) => {
        if (outcome) return Promise.resolve();
        const slot = k * config.md5SlotBytes;
        const memory = ring.sent ? undefined : ring.memory;
        ring.sent = true;
        return new Promise<void>((resolve) => {
          hashed.set(slot, resolve);
          worker.postMessage({ id, ring: ring.id, memory, slot, bytes });
        });
      },
      digest: (bytes) =>
        new Promise<string>((resolve, reject) => {
          finished = (message) => {
            giveBack();
            if (message.md5) resolve(message.md5);
            else reject(new Error(`cannot hash the upload: ${message.error}`));
          };
          if (outcome) finished(outcome);
          else worker.postMessage({ id, ring: ring.id, end: bytes });
        }),
      abandon: () => {
        this.listeners.delete(id);
        for (const done of hashed.values()) done();
        hashed.clear();
        if (!outcome) worker.postMessage({ id, ring: ring.id, end: -1 });
        giveBack();
      },
    };
  }

  close(): Promise<number> | undefined {
    return this.worker?.terminate();
  }

  private newRing(): Ring {
    const memory = new SharedArrayBuffer(config.md5Slots * config.md5SlotBytes);
    const slots = Array.from({ length: config.md5Slots }, (_, k) => Buffer.from(memory, k * config.md5SlotBytes, config.md5SlotBytes));
    return { id: ++this.ringCount, memory, slots, sent: false };
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(threadSource, { eval: true });
    worker.unref();
    worker.on('message', (message: HasherMessage) => this.listeners.get(message.id)?.(message));
    // A thread that fails fails its uploads (each gets a clear error), not the node; the next
    // upload starts a new one.
    const fail = (why: string) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.idleRings.length = 0;
      for (const [id, listener] of [...this.listeners]) listener({ id, error: `the md5 thread failed: ${why}` });
    };
    worker.on('error', (error) => fail(error.message));
    worker.on('exit', (code) => fail(`it exited with code ${code}`));
    this.worker = worker;
    return worker;
  }
}
