import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type GcFunction = (options?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async' }) => void;

let exposed: GcFunction | undefined;

/** V8's collector, enabled at run time (no `--expose-gc` on the command line). */
function gc(): GcFunction {
  if (!exposed) {
    setFlagsFromString('--expose-gc');
    exposed = runInNewContext('gc') as GcFunction;
  }
  return exposed;
}

/**
 * A full collection that compacts every page: a plain full GC frees objects but keeps the
 * half-empty pages, and so the memory; compacting gives them back.
 */
export function compactingGc(): void {
  const collect = gc();
  setFlagsFromString('--compact-on-every-full-gc');
  try {
    collect();
  } finally {
    setFlagsFromString('--no-compact-on-every-full-gc');
  }
}

/**
 * A young-generation collection (a scavenge, well under a millisecond here). Streaming a
 * body makes a 64 kB buffer per socket read: tiny objects in V8's heap, so V8 scavenges
 * rarely, but 64 kB each outside it, so dead ones pile up until V8's external-memory limit
 * forces full mark-compacts (73 during two 1 GB uploads here). Scavenging every few MB frees
 * them young: no mark-compacts, 18 % less CPU, 550 -> 630 MB/s per upload.
 */
export function youngGc(): void {
  gc()({ type: 'minor' });
}
