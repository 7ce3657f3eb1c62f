// Redis and `ks start` processes on this machine's loopback, for the benchmarks.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** A loopback port nothing listens on at this moment. */
export function freePort() {
  return new Promise((resolvePort) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/** A redis-server on a free loopback port, persisting nothing, in `dir`, in its own process group. */
export async function startLocalRedis(dir) {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore', detached: true });
  return { port, url: `redis://127.0.0.1:${port}`, child };
}

/**
 * `ks start ...args`, run as the bin runs (its #! line carries the node's memory settings), in
 * its own process group; resolves to its url and process once it says it is ready.
 */
export function startLocalNode(args, stderr = 'inherit') {
  const child = spawn(join(root, 'dist/node/cli.js'), ['start', ...args], { stdio: ['ignore', 'pipe', stderr], detached: true });
  const ready = new Promise((resolveNode, reject) => {
    let text = '';
    child.stdout.on('data', (c) => {
      text += c;
      const m = /ready at (\S+)/.exec(text);
      if (m) resolveNode({ url: m[1], child });
    });
    child.once('exit', (code) => reject(new Error(`ks start ${args.join(' ')} exited ${code}`)));
  });
  return { child, ready };
}

/**
 * A node of one interpreter for each of `names` on the Redis at `redisUrl`, its datadir
 * `dir/<name>`, started one after the other (`extraArgs(name)` adds to its flags); each
 * process goes into `children` as soon as it is spawned. Resolves to their urls.
 */
export async function startLocalNodes(names, redisUrl, dir, children, { extraArgs = () => [], stderr = 'inherit' } = {}) {
  const urls = [];
  for (const name of names) {
    const node = startLocalNode(['--no-redis', '--redis-connection', redisUrl, '--datadir', join(dir, name), '--num-workers', '1', '--node-port', '0', '--node-name', name, ...extraArgs(name)], stderr);
    children.push(node.child);
    urls.push((await node.ready).url);
  }
  return urls;
}

/**
 * Stops each process's group, last started first, one after the other (so the nodes stop while
 * their Redis still answers): SIGTERM, then SIGKILL if it has not exited after `graceMs`.
 */
export async function stopGroups(children, graceMs) {
  for (const child of [...children].reverse()) {
    const signal = (name) => {
      try {
        process.kill(-child.pid, name);
      } catch {
        // gone
      }
    };
    const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', r));
    signal('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, graceMs))]);
    signal('SIGKILL');
  }
}
