import { setTimeout as delay } from 'node:timers/promises';
import type { HostInfo } from '../types.js';
import type { Bar, LaneState } from './activity.js';
import type { ClusterView } from './hub.js';

/** A node's latest tick, as far as `ks top` reads it. */
interface TickShown {
  host: string;
  at: number;
  rssMb: number;
  version: string;
  lanes: LaneState[];
  bars: Bar[];
  dropped: number;
}

export interface TopOptions {
  url: string;
  token?: string;
  out: NodeJS.WriteStream;
  input: NodeJS.ReadStream;
}

/**
 * `ks top`: the dashboard's hosts, queues, throughput, batches and running calls in a
 * terminal, redrawn each second from the same feed (`GET /api/v1/events`); `q` or Ctrl-C quits.
 */
export async function runTop(opts: TopOptions): Promise<void> {
  const state = new TopState();
  const stop = new AbortController();
  const restore = listenForQuit(opts.input, () => stop.abort());
  const base = opts.url.replace(/\/+$/, '');
  let problem = 'connecting…';
  const reading = (async () => {
    while (!stop.signal.aborted) {
      try {
        const answer = await fetch(`${base}/api/v1/events`, { headers: { accept: 'text/event-stream', ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}) }, signal: stop.signal });
        if (answer.status === 401) throw new Error('the node needs its token: ks top --token SECRET');
        if (!answer.ok) throw new Error(`the node answered ${answer.status}`);
        problem = '';
        let buffer = '';
        const decoder = new TextDecoder();
        for await (const chunk of answer.body as unknown as AsyncIterable<Uint8Array>) {
          buffer += decoder.decode(chunk, { stream: true });
          for (let at = buffer.indexOf('\n\n'); at >= 0; at = buffer.indexOf('\n\n')) {
            state.message(buffer.slice(0, at));
            buffer = buffer.slice(at + 2);
          }
        }
        problem = 'the node closed the feed; reconnecting…';
      } catch (error) {
        if (stop.signal.aborted) return;
        problem = `${(error as Error).message}; retrying…`;
      }
      await delay(1_000, undefined, { signal: stop.signal }).catch(() => {});
    }
  })();
  try {
    while (!stop.signal.aborted) {
      const width = Math.max(60, opts.out.columns || 80);
      opts.out.write(`\x1b[H\x1b[2J${state.render(base, width, problem).join('\n')}\n`);
      await delay(1_000, undefined, { signal: stop.signal }).catch(() => {});
    }
  } finally {
    stop.abort();
    restore();
    await reading;
  }
}

/** Calls `quit` on q or Ctrl-C; answers how to put the terminal back. */
function listenForQuit(input: NodeJS.ReadStream, quit: () => void): () => void {
  const onKey = (key: Buffer) => {
    const text = key.toString();
    if (text === 'q' || text === 'Q' || text === '\x03') quit();
  };
  process.once('SIGINT', quit);
  if (input.isTTY) input.setRawMode(true);
  input.on('data', onKey);
  input.resume();
  return () => {
    input.off('data', onKey);
    if (input.isTTY) input.setRawMode(false);
    input.pause();
    process.off('SIGINT', quit);
  };
}

/** What the feed said so far, and its drawing. */
export class TopState {
  private readonly ticks = new Map<string, TickShown>();
  private readonly ended = new Map<number, number>();
  private view?: ClusterView;
  private readonly gone = new Set<string>();

  /** One SSE message (`event: …\ndata: …`). */
  message(block: string): void {
    let event = '';
    let data = '';
    for (const line of block.split('\n')) {
      if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('data: ')) data += line.slice(6);
    }
    if (!data) return;
    const value = JSON.parse(data);
    if (event === 'tick') {
      const tick = value as TickShown;
      this.ticks.set(tick.host, tick);
      const second = Math.floor(tick.at / 1000);
      this.ended.set(second, (this.ended.get(second) ?? 0) + tick.bars.length + (tick.dropped ?? 0));
    } else if (event === 'cluster' || (event === 'hello' && value.view)) {
      this.view = (event === 'hello' ? value.view : value) as ClusterView;
      const named = new Set(this.view.hosts.map((h) => h.name));
      for (const host of this.ticks.keys()) if (!named.has(host)) this.gone.add(host);
    }
  }

  /** The screen, each line at most `width` characters. */
  render(url: string, width: number, problem: string): string[] {
    const now = Date.now();
    const second = Math.floor(now / 1000);
    let recent = 0;
    for (let s = second - 10; s < second; s++) recent += this.ended.get(s) ?? 0;
    for (const s of this.ended.keys()) if (s < second - 60) this.ended.delete(s);
    const queues = this.view?.queues ?? [];
    const waiting = queues.reduce((sum, q) => sum + q.depth, 0);
    const lines = [`kitchensink top  ${url}  ${new Date(now).toLocaleTimeString()}`, `calls/s ${(recent / 10).toFixed(1)} (last 10 s)   jobs waiting ${waiting}${problem ? `   ${problem}` : ''}`, ''];
    lines.push(row(['HOST', 24], ['STATE', 6], ['BUSY/ALL', 9, true], ['RSS MB', 7, true], ['VERSION', 10]));
    const hosts: HostInfo[] = [...(this.view?.hosts ?? [])];
    for (const name of this.gone) if (!hosts.some((h) => h.name === name)) hosts.push({ name, alive: false } as HostInfo);
    for (const host of hosts.sort((a, b) => a.name.localeCompare(b.name))) {
      const tick = this.ticks.get(host.name);
      const lanes = tick?.lanes ?? [];
      const busy = lanes.filter((l) => l.busy).length;
      lines.push(row([host.name, 24], [host.alive === false ? 'dead' : 'alive', 6], [lanes.length ? `${busy}/${lanes.length}` : '', 9, true], [tick ? String(tick.rssMb) : '', 7, true], [host.version ?? tick?.version ?? '', 10]));
    }
    lines.push('', row(['QUEUE', 40], ['JOBS', 9, true], ['OLDEST', 9, true]));
    for (const q of queues) lines.push(row([q.name, 40], [String(q.depth), 9, true], [q.oldestWaitMs ? `${(q.oldestWaitMs / 1000).toFixed(1)} s` : '-', 9, true]));
    const batches = (this.view?.batches ?? []).slice().sort((a, b) => b.seenAt - a.seenAt).slice(0, 5);
    if (batches.length) {
      lines.push('', row(['BATCH', 18], ['PROGRESS', 27], ['ENDED/N', 13, true], ['FAILED', 7, true]));
      for (const b of batches) {
        const share = b.n ? b.ended / b.n : 0;
        const bar = `[${'#'.repeat(Math.round(share * 20)).padEnd(20, '.')}] ${String(Math.round(share * 100)).padStart(3)}%`;
        lines.push(row([b.id, 18], [bar, 27], [`${b.ended}/${b.n || '?'}`, 13, true], [String(b.failed), 7, true]));
      }
    }
    const running = [...this.ticks.values()].flatMap((t) => (this.gone.has(t.host) ? [] : t.lanes.filter((l) => l.busy).map((l) => ({ host: t.host, ...l }))));
    lines.push('', row(['RUNNING ON', 16], ['FUNCTION', 28], ['TASK', 22], ['FOR', 8, true]));
    if (!running.length) lines.push('  (nothing)');
    for (const r of running.slice(0, 12)) lines.push(row([`${r.host}/${r.lane}`, 16], [r.fn ?? '', 28], [r.taskId ?? 'direct', 22], [r.since ? `${((now - r.since) / 1000).toFixed(1)} s` : '', 8, true]));
    if (running.length > 12) lines.push(`  … and ${running.length - 12} more`);
    lines.push('', 'q quits');
    return lines.map((line) => line.slice(0, width));
  }
}

/** Columns of fixed widths, text cut to fit; `true` aligns right. */
function row(...cells: [string, number, boolean?][]): string {
  return cells.map(([text, w, right]) => (text.length > w ? text.slice(0, w - 1) + '…' : right ? text.padStart(w) : text.padEnd(w))).join(' ');
}
