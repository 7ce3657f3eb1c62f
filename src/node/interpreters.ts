import { InvalidArgumentError } from 'commander';
import { isAbsolute, resolve } from 'node:path';
import { config } from '../config.js';
import { namePattern } from '../keys.js';
import type { PersistedCalls } from './persisted.js';
import { replayPersisted } from './replay.js';
import type { NodeMetrics } from './metrics.js';
import { Autoscaler } from '../worker/autoscaler.js';
import { ExecutorPool, type RunObserver } from '../worker/pool.js';
import type { JobDescription } from '../types.js';

/** `--env NAME=PYTHON`: interpreters of another Python, serving the queue `env.NAME`. */
export interface PythonEnvironment {
  name: string;
  python: string;
}

/** `--env` flags as environments; a relative interpreter path is made absolute. */
export function parseEnvironments(flags: string[]): PythonEnvironment[] {
  const seen = new Set<string>();
  return flags.map((flag) => {
    const [, name, python] = /^([^=]*)=(.+)$/.exec(flag) ?? [];
    if (!name || !python) throw new InvalidArgumentError(`--env ${flag}: give NAME=/path/to/python (e.g. ml=/opt/venvs/ml/bin/python)`);
    if (!namePattern.test(name)) throw new InvalidArgumentError(`--env ${flag}: an environment name is letters, digits, '.', '_' or '-'`);
    if (seen.has(name)) throw new InvalidArgumentError(`--env ${name} is given twice`);
    seen.add(name);
    return { name, python: python.includes('/') && !isAbsolute(python) ? resolve(python) : python };
  });
}

/** One Python of a node: its interpreters and what grows and shrinks them. */
export interface Interpreters {
  /** The `--env` name; '' for the node's own `--python`. */
  env: string;
  pool: ExecutorPool;
  autoscaler: Autoscaler;
}

export interface InterpretersOptions {
  env: string;
  python: string;
  pythonPath: string[];
  vars: Record<string, string>;
  modules: string[];
  entrypoints: Record<string, string>;
  numWorkers: number;
  minWorkers: number;
  maxWorkers: number;
  scaleUpAfterMs: number;
  retireIdleS: number;
  maxRequests: number;
  maxMemoryMb?: number;
  /** The queues whose persisted ALL calls a fresh interpreter replays, given the jobs it loaded. */
  replayQueues: (jobs: Record<string, JobDescription>) => string[];
  persisted: PersistedCalls;
  metrics: NodeMetrics;
  /** Sees every call on these interpreters (the dashboard). */
  observer?: RunObserver;
  log(message: string): void;
}

/** Starts a Python's interpreters and their autoscaler; rejects in the interpreter's own words if one cannot start. */
export async function startInterpreters(o: InterpretersOptions): Promise<Interpreters> {
  const label = (slot: number) => (o.env ? `env ${o.env} worker ${slot}` : `worker ${slot}`);
  const pool = new ExecutorPool({
    python: o.python,
    pythonPath: o.pythonPath,
    env: o.vars,
    modules: o.modules,
    entrypoints: o.entrypoints,
    size: o.numWorkers,
    maxRequests: o.maxRequests,
    maxMemoryMb: o.maxMemoryMb,
    onReplace: (slot, reason, kind) => {
      o.metrics.restarted(kind);
      o.log(`${label(slot)}: ${reason}; starting a fresh interpreter`);
    },
    prepare: (run, jobs) => replayPersisted(o.persisted, o.replayQueues(jobs), run, o.log),
    observer: o.observer,
  });
  try {
    await pool.start();
  } catch (error) {
    throw new Error(o.env ? `--env ${o.env}=${o.python}: ${(error as Error).message}` : (error as Error).message);
  }
  const autoscaler = new Autoscaler(pool, {
    min: o.minWorkers,
    max: o.maxWorkers,
    scaleUpAfterMs: o.scaleUpAfterMs,
    retireIdleMs: o.retireIdleS * 1000,
    checkMs: config.autoscaleCheckMs,
    onChange: (slot, change, reason, size) => {
      o.metrics.scaled(change);
      o.log(`${label(slot)}: ${change} (${reason}); ${size} interpreters now, between ${o.minWorkers} and ${o.maxWorkers}`);
    },
  });
  autoscaler.start();
  return { env: o.env, pool, autoscaler };
}
