import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { decode } from '../src/codec.js';
import { redisAnswers } from '../src/node/redis.js';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(repoRoot, 'dist', 'node', 'cli.js');
export const testPythonPath = join(repoRoot, 'integration_tests', 'python');

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

/** A private redis-server on a unix socket in a fresh temp dir. */
export async function startRedis(extraArgs: string[] = []): Promise<TestRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'ks-redis-'));
  const socket = join(dir, 'redis.sock');
  const launch = () =>
    spawn('redis-server', ['--port', '0', '--unixsocket', socket, '--save', '', '--dir', dir, ...extraArgs], { stdio: 'ignore', detached: true });
  const answers = () => redisAnswers(socket);
  let child = launch();
  await waitFor(answers, 'redis-server to answer');
  const clients: Redis[] = [];
  return {
    url: `unix://${socket}`,
    dir,
    client() {
      const c = new Redis({ path: socket });
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
export async function startNode(redisUrl: string, name: string, args: string[] = [], env: Record<string, string> = {}): Promise<TestNode> {
  const datadir = mkdtempSync(join(tmpdir(), `ks-${name}-`));
  // The bin itself, as `ks start` runs: its #! line carries the node's memory settings.
  const child = spawn(
    cli,
    ['start', '--no-redis', '--redis-connection', redisUrl, '--node-port', '0', '--node-name', name, '--datadir', datadir, '--num-workers', '1', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, PYTHONPATH: testPythonPath, ...env } },
  );
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
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('exit', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

/** Raw HTTP to a node, for bad-input tests. */
export async function rawRequest(url: string, method: string, path: string, body?: Buffer | string, contentType = 'application/json') {
  const res = await fetch(`${url}${path}`, { method, body: typeof body === "string" ? body : body && new Uint8Array(body), headers: body === undefined ? {} : { 'content-type': contentType } });
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
