import { spawn, type ChildProcess } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { decode } from '../src/codec.js';
import { redisAnswers } from '../src/node/redis.js';
import { Keys } from '../src/keys.js';
import { startRedisCluster, type TestRedisCluster } from './redis-cluster.js';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(repoRoot, 'dist', 'node', 'cli.js');
export const testPythonPath = join(repoRoot, 'integration_tests', 'python');

/** How many `WAIT`s the redis-server `redis` is connected to has answered (its INFO commandstats); a number or a port: 127.0.0.1's. */
export async function waitsAnswered(redis: Redis | number): Promise<number> {
  const connection = typeof redis === 'number' ? new Redis({ port: redis }) : redis;
  try {
    return Number(/^cmdstat_wait:calls=(\d+)/m.exec(await connection.info('commandstats'))?.[1] ?? 0);
  } finally {
    if (connection !== redis) connection.disconnect();
  }
}

/** Resolves when `check` returns truthy; rejects after `timeoutMs` with `what`. */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 20_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function stopGroup(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', killAfterMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolvePromise) => {
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, killAfterMs);
    child.once('exit', () => {
      clearTimeout(timer);
      // Anything the process group left (interpreters, subprocesses) goes too.
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
      resolvePromise();
    });
    try {
      process.kill(-child.pid!, signal);
    } catch {
      resolvePromise();
    }
  });
}

export interface TestRedis {
  url: string;
  dir: string;
  client(): Redis;
  /** Stops redis-server (SIGTERM: it writes its AOF) and starts it again on the same socket and dir. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** A `redis-server` (or Sentinel) with exactly `args`, in its own process group; `stop()` kills the group. */
export function spawnRedisServer(args: string[]): { child: ChildProcess; stop(): Promise<void> } {
  const child = spawn('redis-server', args, { stdio: 'ignore', detached: true });
  return { child, stop: () => stopGroup(child, 'SIGKILL') };
}

/** Debian's Chromium, headless, driven by playwright-core (which downloads no browser), with the flags this closed network needs. */
export async function launchChromium(): Promise<import('playwright-core').Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** A port nothing listens on at this moment. */
export function freePort(): Promise<number> {
  return new Promise((resolvePromise) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolvePromise(port));
    });
  });
}

/**
 * True when the suites run against a Redis Cluster (`KS_TEST_REDIS=cluster`, as `npm test` runs
 * the core, data and fault suites a second time): `startRedis()` then starts one.
 */
export const onRedisCluster = process.env.KS_TEST_REDIS === 'cluster';

/** The key names the nodes under test use, for tests that look into Redis. */
export const testKeys = new Keys('ks', onRedisCluster);

/**
 * A private redis-server in a fresh temp dir, on a unix socket, or on 127.0.0.1:`tcpPort`
 * (then `url` is `redis://127.0.0.1:<port>`). Under `onRedisCluster`, a call with no
 * arguments starts a Redis Cluster instead (three masters, a replica each); `single` asks for
 * one redis-server all the same (a test of what one Redis does, a restart say).
 */
export async function startRedis(extraArgs: string[] = [], opts: { tcpPort?: number; single?: boolean } = {}): Promise<TestRedis> {
  if (onRedisCluster && !extraArgs.length && !opts.tcpPort && !opts.single) return clusterAsTestRedis(await startRedisCluster());
  const dir = mkdtempSync(join(tmpdir(), 'ks-redis-'));
  const socket = join(dir, 'redis.sock');
  const listen = opts.tcpPort ? ['--port', String(opts.tcpPort), '--bind', '127.0.0.1'] : ['--port', '0', '--unixsocket', socket];
  const url = opts.tcpPort ? `redis://127.0.0.1:${opts.tcpPort}` : `unix://${socket}`;
  const launch = () => spawnRedisServer([...listen, '--save', '', '--dir', dir, ...extraArgs]).child;
  const answers = () => redisAnswers(url);
  let child = launch();
  await waitFor(answers, 'redis-server to answer');
  const clients: Redis[] = [];
  return {
    url,
    dir,
    client() {
      const c = new Redis(opts.tcpPort ? { host: '127.0.0.1', port: opts.tcpPort } : { path: socket });
      c.on('error', () => {});
      clients.push(c);
      return c;
    },
    async restart() {
      await stopGroup(child, 'SIGTERM');
      child = launch();
      await waitFor(answers, 'redis-server to answer again');
    },
    async stop() {
      for (const c of clients) c.disconnect();
      await stopGroup(child, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface TestNode {
  name: string;
  datadir: string;
  url: string;
  process: ChildProcess;
  logs(): string;
  /** SIGTERM and wait for the node to exit (graceful stop). */
  stop(): Promise<void>;
  kill(): Promise<void>;
}

/** A real `ks start` process against `redisUrl`, on a free port. */
export function startNode(redisUrl: string, name: string, args: string[] = [], env: Record<string, string> = {}): Promise<TestNode> {
  return startNodeWith(name, ['--no-redis', '--redis-connection', redisUrl, '--node-port', '0', '--node-name', name, '--num-workers', '1', ...args], env);
}

/**
 * A real `ks start --datadir <fresh dir>` process with exactly `args` besides; `name` names its
 * datadir. `wrapper` runs it under another command (`['faketime', '+10 minutes']`).
 */
export async function startNodeWith(name: string, args: string[], env: Record<string, string> = {}, wrapper: string[] = []): Promise<TestNode> {
  const datadir = mkdtempSync(join(tmpdir(), `ks-${name}-`));
  // The bin itself, as `ks start` runs: its #! line carries the node's memory settings.
  const command = [...wrapper, cli, 'start', '--datadir', datadir, ...args];
  const child = spawn(command[0], command.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    env: { ...process.env, PYTHONPATH: testPythonPath, ...env },
  });
  let logs = '';
  child.stdout!.on('data', (c: Buffer) => (logs += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (logs += c.toString()));
  const url = await waitFor(() => {
    if (child.exitCode !== null) throw new Error(`node ${name} exited at start:\n${logs}`);
    return /ready at (\S+)/.exec(logs)?.[1];
  }, `node ${name} to start`);
  const cleanup = () => rmSync(datadir, { recursive: true, force: true });
  return {
    name,
    datadir,
    url,
    process: child,
    logs: () => logs,
    stop: () => stopGroup(child).then(cleanup),
    kill: () => stopGroup(child, 'SIGKILL').then(cleanup),
  };
}

/** What a suite's after hook does: closes its client, stops its nodes (those that started), then its Redis. */
export async function stopCluster(redis: TestRedis | undefined, nodes: (TestNode | undefined)[], client?: { close(): void }): Promise<void> {
  client?.close();
  await Promise.all(nodes.filter((n): n is TestNode => n !== undefined).map((n) => n.stop()));
  await redis?.stop();
}

/** A writable that keeps what it receives, for a client's `output`. */
export class Capture extends Writable {
  text = '';
  _write(chunk: Buffer, _encoding: string, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

/** Runs `ks` with arguments and resolves to its stdout. */
export function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PYTHONPATH: testPythonPath } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('exit', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

/** An HTTP request whose path goes out exactly as written (fetch would resolve dots and collapse slashes). */
export function exactPathRequest(base: string, method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolvePromise, reject) => {
    const headers = { accept: 'application/json', 'content-type': 'application/octet-stream' };
    const req = httpRequest(new URL(base), { method, path, headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c));
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Raw HTTP to a node, for bad-input tests. */
export async function rawRequest(url: string, method: string, path: string, body?: Buffer | string, contentType = 'application/json', headers: Record<string, string> = {}) {
  const res = await fetch(`${url}${path}`, { method, body: typeof body === "string" ? body : body && new Uint8Array(body), headers: body === undefined ? headers : { 'content-type': contentType, ...headers } });
  const raw = Buffer.from(await res.arrayBuffer());
  const text = raw.toString();
  let json: unknown;
  try {
    json = res.headers.get('content-type')?.includes('msgpack') ? decode(raw) : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json: json as { error?: string; detail?: string } | undefined, text };
}

/** A Redis Cluster seen as a TestRedis; it is not restarted (a restart is a test of one Redis). */
function clusterAsTestRedis(cluster: TestRedisCluster): TestRedis {
  return {
    url: cluster.url,
    dir: '',
    client: () => cluster.client(),
    restart: () => Promise.reject(new Error('the tests restart one Redis, not a cluster: startRedis([], { single: true })')),
    stop: () => cluster.stop(),
  };
}
