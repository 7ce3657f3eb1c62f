#!/usr/bin/env -S MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=8388608 MALLOC_TRIM_THRESHOLD_=67108864 KS_NODE_MALLOC=1 node --max-semi-space-size=2
// The #! line keeps a node's memory small while it moves gigabytes: a 2 MB young generation
// (V8's default grows to 16 MB, kept afterwards) and one malloc arena (glibc otherwise makes
// one per thread that allocates: libuv pool). It costs a few % of calls/s. Buffers under 8 MB
// (the 1 MB transfer chunks, bodies) come from the heap and their memory is reused, up to
// 64 MB kept: mapping fresh pages for each costs as much as moving the bytes on these VMs.
import { Command, InvalidArgumentError, Option } from 'commander';
import { config } from '../config.js';
import { resolve } from 'node:path';
import { namePattern } from '../keys.js';
import { KsNode, version, type NodeOptions } from './node.js';
import { connectRedis, whyRedisIsSilent } from './redis.js';
import { keysFor, redisConnectionForms } from './redis-connection.js';
import { parseTokens } from './tokens.js';
import { parseEnvironments } from './interpreters.js';
import { readHosts } from './registry.js';
import { registerFiles } from '../data/register-files.js';
import { runTop } from '../dashboard/top.js';

// The malloc setting is read at start; the interpreters and redis-server this node starts keep their own.
if (process.env.KS_NODE_MALLOC === '1') {
  delete process.env.MALLOC_ARENA_MAX;
  delete process.env.MALLOC_MMAP_THRESHOLD_;
  delete process.env.MALLOC_TRIM_THRESHOLD_;
  delete process.env.KS_NODE_MALLOC;
}

function integer(min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`must be an integer >= ${min}`);
    return n;
  };
}

function positive(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number');
  return n;
}

const collect = (value: string, previous: string[]) => [...previous, value];

/**
 * `--num-workers`, `--min-workers` and `--max-workers` agreed on: min <= num <= max. A
 * `--num-workers` left at its default moves into the range the other two give.
 */
function workerCounts(flags: { numWorkers: number; minWorkers?: number; maxWorkers?: number }, command: Command): Pick<NodeOptions, 'numWorkers' | 'minWorkers' | 'maxWorkers'> {
  let numWorkers = flags.numWorkers;
  if (command.getOptionValueSource('numWorkers') === 'default') {
    numWorkers = Math.min(Math.max(numWorkers, flags.minWorkers ?? 1), flags.maxWorkers ?? numWorkers);
  }
  const minWorkers = flags.minWorkers ?? Math.min(numWorkers, flags.maxWorkers ?? numWorkers);
  const maxWorkers = flags.maxWorkers ?? Math.max(numWorkers, minWorkers);
  if (!(minWorkers <= numWorkers && numWorkers <= maxWorkers)) {
    throw new InvalidArgumentError(`--num-workers ${numWorkers} must lie between --min-workers ${minWorkers} and --max-workers ${maxWorkers}`);
  }
  return { numWorkers, minWorkers, maxWorkers };
}

/**
 * `--entrypoint NAME=TARGET` flags as name → target; a file's path is made absolute here, so
 * the interpreters find it whatever their working directory.
 */
function entrypoints(flags: string[]): Record<string, string> {
  const jobs: Record<string, string> = {};
  for (const flag of flags) {
    const [, name, target] = /^([^=]*)=(.*)$/.exec(flag) ?? [];
    if (!name || !target) throw new InvalidArgumentError(`--entrypoint ${flag}: give NAME=file.py[:Class] or NAME=pkg.module:Class`);
    if (!namePattern.test(name)) throw new InvalidArgumentError(`--entrypoint ${flag}: a job name is letters, digits, '.', '_' or '-'`);
    if (name in jobs) throw new InvalidArgumentError(`--entrypoint ${name} is given twice`);
    const file = /^(.*\.py)(:.*)?$/.exec(target);
    jobs[name] = file ? `${resolve(file[1])}${file[2] ?? ''}` : target;
  }
  return jobs;
}

const program = new Command('ks').description('kitchensink: warm Python on a Redis-backed cluster').version(version);

program
  .command('start')
  .description('start a node: web server, queue workers and warm Python interpreters')
  .requiredOption('--datadir <dir>', 'where this node keeps data and its own Redis files')
  .option('--num-workers <n>', 'warm Python interpreters at start', integer(1), 2)
  .option('--min-workers <n>', 'fewest interpreters the autoscaler keeps (default: --num-workers)', integer(1))
  .option(
    '--max-workers <n>',
    "most interpreters: above --num-workers the node autoscales by Apex's starvation policy, adding one while a call has waited longer than --scale-up-after for an interpreter and retiring those idle longer than --retire-idle (default: --num-workers, no autoscaling)",
    integer(1),
  )
  .option('--scale-up-after <ms>', 'how long a call may wait for an interpreter before the node adds one', integer(1), config.scaleUpAfterMs)
  .option('--retire-idle <seconds>', 'how long an interpreter may stay idle before the node retires it, down to --min-workers', integer(1), config.retireIdleS)
  .option('--no-redis', 'never start a redis-server, even when none answers')
  .option('--redis-connection <url>', redisConnectionForms, config.redisUrl)
  .option('--node-url <url>', 'the url other nodes and clients reach this node at; its port is the one listened on')
  .option('--node-port <port>', `port to listen on when it differs from --node-url's (0 picks a free one; default ${config.nodePort} without --node-url)`, integer(0))
  .option('--node-name <name>', 'host name in the cluster (default: machine name and port)')
  .option('--host <addr>', 'address to bind', config.bindHost)
  .option('--token <[name=]secret>', 'a bearer token callers must show on every route but /health; NAME= names the caller in logs and metrics (repeatable)', collect, [])
  .option('--public <path>', 'let anyone call this path and the paths below it, although the node has tokens (repeatable)', collect, [])
  .option('--queue <queue>', 'also serve this custom queue (repeatable)', collect, [])
  .option('--module <module>', 'import this module in every interpreter at start (repeatable)', collect, [])
  .option('--python <path>', 'Python interpreter', process.env.KS_PYTHON ?? 'python3')
  .option('--env <name=python>', 'also run interpreters of another Python (e.g. a venv) serving the queue env.NAME; calls pick it with opts.env (repeatable)', collect, [])
  .option('--read-only', 'run calls but store no data', false)
  .option('--timeout <seconds>', 'kill any call running longer than this', positive)
  .option('--max-requests <n>', 'restart an interpreter after this many calls (0: never)', integer(0), 0)
  .option('--result-ttl <seconds>', 'how long results stay readable', integer(1), config.resultTtlS)
  .option('--no-code', 'refuse source-text functions: registered modules only')
  .option('--max-request-size <bytes>', 'largest request body', integer(1), config.maxRequestSizeBytes)
  .option('--max-output <bytes>', 'output kept per call before truncation', integer(1), config.maxOutputBytes)
  .option('--max-memory <mb>', 'restart an interpreter whose RSS passes this after a call', positive)
  .option('--memory-datadir <dir>', 'keep every save of this node in the memory tier there (a tmpfs): not fsynced, and gone when the node stops or restarts')
  .option('--data-cache-mb <mb>', "what each interpreter keeps of the objects RemoteData.obj() decoded, for later calls on the same data (default: a quarter of the machine's memory divided by the most interpreters)", positive)
  .option('--min-free-disk <bytes>', 'refuse new data below this much free disk', integer(0), 1_000_000_000)
  .option('--insecure', 'allow binding a non-loopback address without --token', false)
  .option('--entrypoint <name=target>', 'serve a job: NAME=file.py[:Class], NAME=pkg.module:Class or NAME=pkg.module:function (repeatable)', collect, [])
  .option('--max-concurrency <n>', 'direct calls and performs running at once on this node (default: no limit)', integer(1))
  .option('--script-dir <dir>', 'where runScript({path}) finds its scripts; paths outside it are refused')
  .option('--max-queued <n>', 'refuse (429) a batch that would leave more than this many calls waiting in one queue', integer(1))
  .option('--max-concurrency-queue <n>', 'direct calls and performs that may wait for --max-concurrency; the rest get 429', integer(0), 0)
  .addOption(new Option('--key-prefix <prefix>', 'prefix of Redis keys').default(config.keyPrefix).hideHelp())
  .action(async (flags, command: Command) => {
    const options: NodeOptions = {
      datadir: flags.datadir,
      ...workerCounts(flags, command),
      scaleUpAfterMs: flags.scaleUpAfter,
      retireIdleS: flags.retireIdle,
      noRedis: flags.redis === false,
      redisConnection: flags.redisConnection,
      nodeUrl: flags.nodeUrl,
      nodePort: flags.nodePort,
      nodeName: flags.nodeName,
      host: flags.host,
      tokens: parseTokens(flags.token.length ? flags.token : process.env.KS_TOKEN ? [process.env.KS_TOKEN] : []),
      publicPaths: flags.public.map((path: string) => {
        if (!path.startsWith('/')) throw new InvalidArgumentError(`--public ${path}: give a path such as /api/v1/jobs/NAME/perform`);
        return path;
      }),
      queues: flags.queue,
      modules: flags.module,
      python: flags.python,
      dataCacheMb: flags.dataCacheMb,
      memoryDatadir: flags.memoryDatadir === undefined ? undefined : resolve(flags.memoryDatadir),
      environments: parseEnvironments(flags.env),
      readOnly: flags.readOnly,
      timeoutS: flags.timeout,
      maxRequests: flags.maxRequests,
      resultTtlS: flags.resultTtl,
      noCode: flags.code === false,
      maxRequestSizeBytes: flags.maxRequestSize,
      maxOutputBytes: flags.maxOutput,
      maxMemoryMb: flags.maxMemory,
      minFreeDiskBytes: flags.minFreeDisk,
      insecure: flags.insecure,
      keyPrefix: flags.keyPrefix,
      entrypoints: entrypoints(flags.entrypoint),
      maxConcurrency: flags.maxConcurrency,
      maxConcurrencyQueue: flags.maxConcurrencyQueue,
      maxQueued: flags.maxQueued,
      scriptDir: flags.scriptDir === undefined ? undefined : resolve(flags.scriptDir),
    };
    const node = new KsNode(options);
    let signals = 0;
    const shutdown = (signal: string) => {
      signals += 1;
      if (signals > 1) {
        process.stderr.write(`kitchensink: ${signal} again, exiting now\n`);
        process.exit(1);
      }
      process.stderr.write(`kitchensink: ${signal}: finishing running calls, then stopping\n`);
      void node.stop().then(() => process.exit(0));
    };
    process.on('SIGINT', () => shutdown('SIGINT'));
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    try {
      await node.start();
    } catch (error) {
      process.stderr.write(`kitchensink: cannot start: ${(error as Error).message}\n`);
      await node.stop(0);
      process.exit(1);
    }
    process.stdout.write(`kitchensink node ${node.name} ready at ${node.url}\n`);
  });

program
  .command('status')
  .description('print live hosts, their workers and queues')
  .option('--redis-connection <url>', redisConnectionForms, config.redisUrl)
  .addOption(new Option('--key-prefix <prefix>', 'prefix of Redis keys').default(config.keyPrefix).hideHelp())
  .action(async (flags) => {
    const silent = await whyRedisIsSilent(flags.redisConnection);
    if (silent) return fail(`no Redis answers at ${flags.redisConnection}: ${silent}`);
    const redis = connectRedis(flags.redisConnection, { maxRetriesPerRequest: 1, retryStrategy: () => null });
    redis.on('error', () => {});
    try {
      const hosts = await readHosts(redis, keysFor(flags.redisConnection, flags.keyPrefix));
      const live = hosts.filter((h) => h.alive);
      if (!live.length) console.log('no live hosts');
      for (const h of live) {
        console.log(`${h.name}  ${h.url}  workers=${h.workers}  queues=${h.queues.join(',')}${h.readOnly ? '  read-only' : ''}  v${h.version}`);
      }
      const dead = hosts.length - live.length;
      if (dead) console.log(`(${dead} registered host${dead > 1 ? 's' : ''} without a heartbeat)`);
    } catch (error) {
      fail(`cannot read ${flags.redisConnection}: ${(error as Error).message}`);
      process.exitCode = 1;
    } finally {
      redis.disconnect();
    }
  });

program
  .command('register')
  .description("register files copied into a node's datadir by hand (rsync, cp) as that node's data")
  .requiredOption('--datadir <dir>', 'the --datadir of the node that holds the files (they are under DIR/data/)')
  .requiredOption('--node-name <name>', 'that node, as `ks status` names it')
  .argument('[glob]', 'urls to register (* within a folder, ** across folders)', '**')
  .option('--fmt <fmt>', 'the format of new urls (default: by extension: .npy ndarray, .json, .msgpack, .pkl pickle, else raw)')
  .option('--redis-connection <url>', redisConnectionForms, config.redisUrl)
  .addOption(new Option('--key-prefix <prefix>', 'prefix of Redis keys').default(config.keyPrefix).hideHelp())
  .action(async (glob: string, flags) => {
    const silent = await whyRedisIsSilent(flags.redisConnection);
    if (silent) return fail(`no Redis answers at ${flags.redisConnection}: ${silent}`);
    const redis = connectRedis(flags.redisConnection, { maxRetriesPerRequest: 1, retryStrategy: () => null });
    redis.on('error', () => {});
    try {
      const { registered, already, refused } = await registerFiles(redis, keysFor(flags.redisConnection, flags.keyPrefix), { datadir: resolve(flags.datadir), node: flags.nodeName, glob, fmt: flags.fmt, say: (line) => console.log(line) });
      console.log(`${registered.length} registered, ${already.length} already known (holder added), ${refused.length} refused`);
      if (refused.length) process.exitCode = 1;
    } catch (error) {
      fail((error as Error).message);
    } finally {
      redis.disconnect();
    }
  });

program
  .command('top')
  .description("the cluster live in a terminal: hosts, queues, throughput, batches and running calls (q quits); the same feed as GET /dashboard")
  .option('--node-url <url>', 'any node of the cluster', `http://127.0.0.1:${config.nodePort}`)
  .option('--token <secret>', "the node's --token, if it has one")
  .action(async (flags) => {
    let url: URL;
    try {
      url = new URL(flags.nodeUrl);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http');
    } catch {
      return fail(`--node-url must be an http:// or https:// url, not ${JSON.stringify(flags.nodeUrl)}`);
    }
    await runTop({ url: url.href, token: flags.token, out: process.stdout, input: process.stdin });
  });

/** Ends a command on a user error: one line on stderr, a non-zero exit, no stack trace. */
function fail(message: string): void {
  process.stderr.write(`kitchensink: ${message}\n`);
  process.exitCode = 1;
}

try {
  await program.parseAsync();
} catch (error) {
  fail((error as Error).message);
}
