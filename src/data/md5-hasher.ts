import { Worker } from 'node:worker_threads';
import { config } from '../config.js';

/**
 * The thread's code. Per session it hashes the chunks the writer hands over once they are on
 * disk: their memory moves to this thread (transferred, not copied), so the upload is read
 * once, from the socket, and never again.
 */
const threadSource = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { setFlagsFromString } = require('node:v8');
const { runInNewContext } = require('node:vm');
setFlagsFromString('--expose-gc');
const collect = globalThis.gc ?? runInNewContext('gc');
const sessions = new Map();
let sinceScavenge = 0;
parentPort.on('message', ({ id, chunks, end }) => {
  let s = sessions.get(id);
  if (!s) sessions.set(id, (s = { hash: createHash('md5'), hashed: 0 }));
  if (chunks) {
    for (const chunk of chunks) {
      s.hash.update(new Uint8Array(chunk));
      s.hashed += chunk.byteLength;
    }
    parentPort.postMessage({ id, hashed: s.hashed });
    // The chunks are dead now but their memory is outside this thread's tiny heap: free it young.
    sinceScavenge += chunks.reduce((sum, c) => sum + c.byteLength, 0);
    if (sinceScavenge >= workerData.scavengeEveryBytes) {
      sinceScavenge = 0;
      collect({ type: 'minor' });
    }
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
  hashed?: number;
  md5?: string;
  error?: string;
}

export interface Md5Session {
  /**
   * These chunks, the next bytes of the file, are written: hash them. They are the thread's
   * now. Resolves once the thread is less than `md5MaxBehindBytes` behind: the writer waits,
   * so an upload faster than md5 queues at most that much in memory.
   */
  written(chunks: Buffer[]): Promise<void>;
  /** The file holds `bytes` in all: resolves to its md5 once hashed. */
  digest(bytes: number): Promise<string>;
  /** Forgets the session (the write failed). */
  abandon(): void;
}

/** The chunks' memory, each an ArrayBuffer of its own that can move to another thread. */
function movable(chunks: Buffer[]): ArrayBuffer[] {
  return chunks.map((chunk) => {
    const whole = chunk.byteOffset === 0 && chunk.length === chunk.buffer.byteLength && chunk.buffer instanceof ArrayBuffer;
    // A slice of a shared buffer (Node's pool, say) is copied: moving it would take its neighbours.
    return whole ? (chunk.buffer as ArrayBuffer) : (chunk.buffer.slice(chunk.byteOffset, chunk.byteOffset + chunk.length) as ArrayBuffer);
  });
}

/**
 * md5 on a thread of its own, fed the chunks as they are written: hashing (730 MB/s on an idle
 * core here) then overlaps with reading the socket and writing the disk instead of adding to them.
 */
export class Md5Hasher {
  private worker?: Worker;
  private nextId = 0;
  private readonly listeners = new Map<number, (message: HasherMessage) => void>();

  session(): Md5Session {
    const worker = this.thread();
    const id = ++this.nextId;
    let sent = 0;
    let hashed = 0;
    let caughtUp: (() => void) | undefined;
    /** The digest, or why there is none (the thread failed), once the thread answered. */
    let outcome: HasherMessage | undefined;
    let finished: ((message: HasherMessage) => void) | undefined;
    this.listeners.set(id, (message) => {
      if (message.hashed !== undefined) {
        hashed = message.hashed;
        if (sent - hashed < config.md5MaxBehindBytes) caughtUp?.();
        return;
      }
      this.listeners.delete(id);
      outcome = message;
      caughtUp?.();
      finished?.(message);
    });
    return {
      written: (chunks) => {
        if (outcome) return Promise.resolve();
        const buffers = movable(chunks);
        for (const buffer of buffers) sent += buffer.byteLength;
        worker.postMessage({ id, chunks: buffers }, buffers);
        if (sent - hashed < config.md5MaxBehindBytes) return Promise.resolve();
        return new Promise<void>((resolve) => (caughtUp = resolve));
      },
      digest: (bytes) =>
        new Promise<string>((resolve, reject) => {
          finished = (message) => (message.md5 ? resolve(message.md5) : reject(new Error(`cannot hash the upload: ${message.error}`)));
          if (outcome) finished(outcome);
          else worker.postMessage({ id, end: bytes });
        }),
      abandon: () => {
        this.listeners.delete(id);
        caughtUp?.();
        if (!outcome) worker.postMessage({ id, end: -1 });
      },
    };
  }

  /** Starts the thread ahead of the first session. */
  start(): void {
    this.thread();
  }

  close(): Promise<number> | undefined {
    return this.worker?.terminate();
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(threadSource, { eval: true, workerData: { scavengeEveryBytes: config.fileScavengeEveryBytes } });
    worker.unref();
    worker.on('message', (message: HasherMessage) => this.listeners.get(message.id)?.(message));
    // A thread that fails fails its uploads (each gets a clear error), not the node; the next
    // upload starts a new one.
    const fail = (why: string) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      for (const [id, listener] of [...this.listeners]) listener({ id, error: `the md5 thread failed: ${why}` });
    };
    worker.on('error', (error) => fail(error.message));
    worker.on('exit', (code) => fail(`it exited with code ${code}`));
    this.worker = worker;
    return worker;
  }
}
