/** Where a viewer's messages go: an HTTP response, in the node. */
export interface Sink {
  /** Writes one whole message (the same bytes go to every viewer). */
  write(message: string | Buffer): void;
  /** Bytes written but not yet taken by the viewer's connection. */
  readonly buffered: number;
  /** Ends the viewer's connection (the node stops). */
  end(): void;
}

/** A Server-Sent Events message. */
export function sseMessage(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * Hands every message to every viewer, each with a bounded buffer: a viewer whose connection
 * holds more than `maxBufferedBytes` unsent misses messages until it has caught up, and then
 * first gets a `gap` message saying how many it missed. A slow viewer so costs the node at
 * most its buffer, never a queue that grows.
 */
export class Fanout {
  private readonly viewers = new Map<Sink, { missed: number }>();

  constructor(private readonly maxBufferedBytes: number) {}

  get size(): number {
    return this.viewers.size;
  }

  add(sink: Sink): void {
    this.viewers.set(sink, { missed: 0 });
  }

  remove(sink: Sink): void {
    this.viewers.delete(sink);
  }

  /** Ends every viewer's connection and forgets them. */
  endAll(): void {
    for (const sink of this.viewers.keys()) sink.end();
    this.viewers.clear();
  }

  /** Sends one whole message to every viewer that keeps up: encoded once, not once per viewer. */
  publish(message: string | Buffer): void {
    const bytes = typeof message === 'string' ? Buffer.from(message) : message;
    for (const [sink, state] of this.viewers) {
      if (sink.buffered > this.maxBufferedBytes) {
        state.missed += 1;
        continue;
      }
      if (state.missed) {
        sink.write(sseMessage('gap', { missed: state.missed }));
        state.missed = 0;
      }
      sink.write(bytes);
    }
  }
}
