import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { repoRoot, testPythonPath, waitFor } from './harness.js';

/**
 * Hosts on a private network: each a Linux network namespace with its own address, joined by
 * veth pairs to a bridge in this (the test's) namespace, which has `gateway`. Needs root and
 * `ip`; where namespaces cannot be made, `makeNetwork` throws saying so.
 */
export interface NetHost {
  name: string;
  /** The namespace. */
  ns: string;
  address: string;
  /** The veth end on the bridge: `cut()` downs it, `heal()` ups it. */
  link: string;
  /** Runs a command inside the host, detached in its own process group. */
  spawn(command: string[], env?: Record<string, string>): ChildProcess;
  /** Link down: the host reaches nothing and nothing reaches it. */
  cut(): void;
  heal(): void;
  /** Drops only what this host sends to `address` (a blackhole route): a partition from that one host. */
  blackhole(address: string): void;
  unblackhole(address: string): void;
}

export interface Network {
  gateway: string;
  hosts: NetHost[];
  /** Kills every process started in the hosts, then removes namespaces, links and the bridge. */
  destroy(): Promise<void>;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

/** The processes inside namespace `ns`. */
function pidsIn(ns: string): number[] {
  try {
    return execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export function makeNetwork(count: number): Network {
  const tag = `k${process.pid % 100_000}`;
  const bridge = `${tag}br`;
  const subnet = `10.${100 + (process.pid % 100)}.${(process.pid >> 7) % 250}`;
  const gateway = `${subnet}.1`;
  const children: ChildProcess[] = [];
  const made: { ns: string[]; links: string[] } = { ns: [], links: [] };
  try {
    ip('link', 'add', bridge, 'type', 'bridge');
  } catch (error) {
    throw new Error(`cannot make network namespaces here (needs root and ip): ${(error as { stderr?: Buffer }).stderr?.toString().trim() || (error as Error).message}`);
  }
  ip('addr', 'add', `${gateway}/24`, 'dev', bridge);
  ip('link', 'set', bridge, 'up');
  const hosts = Array.from({ length: count }, (_, k): NetHost => {
    const ns = `${tag}h${k}`;
    const link = `${tag}v${k}`;
    const address = `${subnet}.${10 + k}`;
    ip('netns', 'add', ns);
    made.ns.push(ns);
    ip('link', 'add', link, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    made.links.push(link);
    ip('link', 'set', link, 'master', bridge);
    ip('link', 'set', link, 'up');
    ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    return {
      name: `host${k}`,
      ns,
      address,
      link,
      spawn(command, env = {}) {
        const child = spawn('ip', ['netns', 'exec', ns, ...command], { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, ...env } });
        children.push(child);
        return child;
      },
      cut: () => ip('link', 'set', link, 'down'),
      heal: () => ip('link', 'set', link, 'up'),
      blackhole: (to) => ip('-n', ns, 'route', 'add', 'blackhole', `${to}/32`),
      unblackhole: (to) => ip('-n', ns, 'route', 'del', 'blackhole', `${to}/32`),
    };
  });
  return {
    gateway,
    hosts,
    async destroy() {
      for (const child of children) {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // gone
        }
      }
      await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
      // Processes of other groups (a node's interpreters) may still be inside: a namespace lives
      // on while one is, and its veth pair with it, whose names the next network would reuse.
      for (const pid of made.ns.flatMap(pidsIn)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      // Deleting a veth end deletes the pair, whether or not its namespace still lives.
      for (const command of [...made.links.map((link) => ['link', 'del', link]), ...made.ns.map((ns) => ['netns', 'del', ns]), ['link', 'del', bridge]]) {
        try {
          ip(...command);
        } catch {
          // gone
        }
      }
    },
  };
}

/** A redis-server inside `host` on its address, port 6379, persisting nothing; resolves to its url once it answers PING. */
export async function startRedisOn(host: NetHost): Promise<string> {
  host.spawn(['redis-server', '--port', '6379', '--bind', host.address, '--protected-mode', 'no', '--save', '', '--appendonly', 'no']);
  await waitFor(async () => {
    const probe = new Redis({ host: host.address, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    probe.on('error', () => {});
    const pong = await probe.connect().then(() => probe.ping(), () => undefined);
    probe.disconnect();
    return pong === 'PONG';
  }, `Redis on ${host.name}`);
  return `redis://${host.address}:6379`;
}

/** A `ks start` inside `host`, listening on its address; resolves once it says it is ready. */
export async function startNodeOn(host: NetHost, redisUrl: string, args: string[] = []): Promise<{ url: string; logs(): string; process: ChildProcess; datadir: string }> {
  const datadir = mkdtempSync(join(tmpdir(), `ks-${host.name}-`));
  const child = host.spawn([join(repoRoot, 'dist', 'node', 'cli.js'), 'start', '--datadir', datadir, '--no-redis', '--redis-connection', redisUrl, '--host', host.address, '--node-url', `http://${host.address}:6323/`, '--node-name', host.name, '--num-workers', '1', ...args], { PYTHONPATH: testPythonPath });
  let logs = '';
  child.stdout!.on('data', (c: Buffer) => (logs += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (logs += c.toString()));
  child.once('exit', () => rmSync(datadir, { recursive: true, force: true }));
  const url = await waitFor(() => {
    if (child.exitCode !== null) throw new Error(`${host.name} exited at start:\n${logs}`);
    return /ready at (\S+)/.exec(logs)?.[1];
  }, `${host.name} to start`);
  return { url, logs: () => logs, process: child, datadir };
}
