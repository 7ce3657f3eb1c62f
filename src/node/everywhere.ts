import { decode, encode } from '../codec.js';
import { HttpError, NotFound } from '../errors.js';
import { bearerHeader, callQueue } from '../keys.js';
import { unservedError } from './unserved.js';
import { nodeRoute } from '../node-url.js';
import { type HostInfo, type WireAllOutcome, type WireCall } from '../types.js';
import type { StopSwitch } from '../worker/executor.js';

export interface EverywhereContext {
  nodeName: string;
  /** The token this node shows other nodes. */
  token?: string;
  liveHosts(): Promise<HostInfo[]>;
  /** Runs the call on every interpreter of this node. */
  runOnAllHere(call: WireCall, stop: StopSwitch): Promise<WireAllOutcome[]>;
  /** Records a call to replay on interpreters that start later (`persist`). */
  record(queue: string, call: WireCall): Promise<string>;
}

/**
 * Runs a call once on every interpreter of every live node serving its queue (`on: 'all'`):
 * this node's own, the others' through their `POST /api/v1/all/here`, all at once. A node that
 * cannot be reached answers one `lost` outcome, so the caller sees which host is missing.
 */
export async function runEverywhere(ctx: EverywhereContext, call: WireCall, stop: StopSwitch): Promise<WireAllOutcome[]> {
  const queue = callQueue(call);
  const live = await ctx.liveHosts();
  const hosts = live.filter((h) => h.queues.includes(queue) && (!call.opts?.host || h.name === call.opts.host));
  if (!hosts.length) throw unservedError(call, live, '', (message) => new NotFound(message));
  const here: WireCall = { ...call, opts: { ...call.opts, on: undefined, persist: undefined } };
  // Recorded first: an interpreter that starts while the call runs replays it (it may then run twice there).
  if (call.opts?.persist) await ctx.record(queue, here);
  const answers = await Promise.all(
    hosts.map(async (host): Promise<WireAllOutcome[]> => {
      if (host.name === ctx.nodeName) return ctx.runOnAllHere(here, stop);
      try {
        const res = await fetch(nodeRoute(host.url, '/api/v1/all/here'), {
          method: 'POST',
          headers: { ...bearerHeader(ctx.token), 'content-type': 'application/msgpack', accept: 'application/msgpack' },
          body: new Uint8Array(encode(here)),
        });
        const body = decode<{ outcomes?: WireAllOutcome[]; error?: string; detail?: string }>(new Uint8Array(await res.arrayBuffer()));
        if (!res.ok) throw new HttpError(res.status, body.error ?? 'http_error', body.detail ?? `answered ${res.status}`);
        return body.outcomes ?? [];
      } catch (error) {
        return [{ host: host.name, worker: -1, ok: false, failure: { kind: 'lost', message: `host ${host.name} did not run the call: ${(error as Error).message}` }, output: [] }];
      }
    }),
  );
  return answers.flat();
}
