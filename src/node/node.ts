import { setTimeout as delay } from 'node:timers/promises';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { hostname, totalmem } from 'node:os';
import { joined, type Spliced } from '../codec.js';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { config, defaultQueue } from '../config.js';
import { envQueue, jobQueue, queueName, namePattern } from '../keys.js';
import { UnknownEnvironment } from '../errors.js';
import { normalizeNodeUrl, parseNodeUrl, portOf } from '../node-url.js';
import type { HostInfo, WireAllOutcome, WireCall } from '../types.js';
import { CallWorker } from '../worker/call-worker.js';
import { ClaimLock } from '../worker/claim.js';
import { runDirectCall, runOnEveryInterpreter } from '../worker/direct-call.js';
import { runEverywhere } from './everywhere.js';
import { PersistedCalls } from './persisted.js';
import type { ExecutorPool, Lease } from '../worker/pool.js';
import { startInterpreters, type Interpreters, type PythonEnvironment } from './interpreters.js';
import type { StopSwitch } from '../worker/executor.js';
import { collectJobMetrics } from '../jobs/job-metrics.js';
import { NodeMetrics } from './metrics.js';
import { Admission } from '../jobs/admission.js';
import { JobCatalog } from '../jobs/catalog.js';
import { JobService } from '../jobs/service.js';
import { Catalog } from '../data/catalog.js';
import { reconcileData, reconciledReport } from '../data/reconcile.js';
import { DataRegistry } from '../data/registry.js';
import { DataService } from '../data/service.js';
import { DataMover } from '../data/transfer.js';
import { answerStarting, clientGone, createApp, errorAnswer, fastCallRoutes, type AppContext } from './app.js';
import { fastPerform } from '../jobs/routes.js';
import { CallService } from './calls.js';
import { EventReader, type EventSource } from './event-reader.js';
import { StreamReader } from './stream-reader.js';
import { connectRedis, startRedisServer, whyRedisIsSilent } from './redis.js';
import { isManagedRedis, keysFor, redisOptions } from './redis-connection.js';
import { HostRegistry, readHosts } from './registry.js';
import { ActivityLog, laneId } from '../dashboard/activity.js';
import { FeedPublisher } from '../dashboard/feed.js';
import { DashboardHub } from '../dashboard/hub.js';
import { Gate, type NamedToken } from './tokens.js';
import { QueueCache } from './queues.js';
import { IdleCollector } from './idle-gc.js';
import { ReplicaWait } from './replica-wait.js';
import { DeadHostSweeper } from './sweeper.js';
import { Connections } from './connections.js';

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const version = (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;

/** Everything `ks start` takes (DESIGN "Public surface"). */
export interface NodeOptions {
  datadir: string;
  /** Interpreters at start. */
  numWorkers: number;
  /** Fewest and most interpreters the autoscaler keeps (both `numWorkers`: no autoscaling). */
  minWorkers: number;
  maxWorkers: number;
  /** Add an interpreter when a call has waited this long for one (ms). */
  scaleUpAfterMs: number;
  /** Retire an interpreter idle this long (s), down to `minWorkers`. */
  retireIdleS: number;
  /** `--data-cache-mb`: what each interpreter keeps of decoded `obj()` values (default: 25% of memory / interpreters). */
  dataCacheMb?: number;
  /** `--memory-datadir`: every save of this node goes to the memory tier there (a tmpfs), not fsynced, lost when the node stops. */
  memoryDatadir?: string;
  /** Other Pythons (`--env NAME=PYTHON`), each with interpreters of its own serving `env.NAME`. */
  environments: PythonEnvironment[];
  /** Do not start a Redis when none answers. */
  noRedis: boolean;
  redisConnection: string;
  /** The url clients and other nodes reach this node at; its port is the one listened on unless `nodePort` is given. */
  nodeUrl?: string;
  /** Port to listen on. 0 picks a free one. Default: the port of `nodeUrl`, else 6323. */
  nodePort?: number;
  nodeName?: string;
  /** Address to bind. */
  host: string;
  /** Callers' tokens (`--token [NAME=]SECRET`); none: the node answers anyone on its address. */
  tokens: NamedToken[];
  /** Paths anyone may call although the node has tokens (`--public`), and everything below them. */
  publicPaths: string[];
  queues: string[];
  modules: string[];
  python: string;
  readOnly: boolean;
  timeoutS?: number;
  maxRequests: number;
  resultTtlS: number;
  noCode: boolean;
  maxRequestSizeBytes: number;
  maxOutputBytes: number;
  maxMemoryMb?: number;
  minFreeDiskBytes: number;
  insecure: boolean;
  keyPrefix: string;
  /** Jobs every interpreter loads at start: name → `file.py[:Attr]` or `pkg.module:Attr`. */
  entrypoints: Record<string, string>;
  /** Direct calls and performs running at once on this node; undefined: no limit. */
  maxConcurrency?: number;
  /** Direct calls and performs that may wait for a place; the rest get 429. */
  maxConcurrencyQueue: number;
  /** The most calls that may wait in one queue; a batch that would pass it gets 429. */
  maxQueued?: number;
  /** Where `runScript({path})` finds scripts (absolute); none: no script files run here. */
  scriptDir?: string;
}

const log = (message: string) => process.stderr.write(`kitchensink: ${message}\n`);

/** A kitchensink node: web server, queue workers, warm interpreters, heartbeat. */
export class KsNode {
  private redisServer?: ChildProcess;
  private connections: Redis[] = [];
  /** The node's own interpreters (`--python`). */
  private pool?: ExecutorPool;
  private catalog?: Catalog;
  /** Every Python's interpreters: the node's own first, then each `--env`. */
  private interpreters: Interpreters[] = [];
  /** The queue workers, one per Python, and which one reserved an interpreter for a call to start here. */
  private workers: CallWorker[] = [];
  private readonly reservedBy = new WeakMap<Lease, CallWorker>();
  private calls?: CallService;
  private events?: EventSource;
  private registry?: HostRegistry;
  private queues?: QueueCache;
  private sweeper?: DeadHostSweeper;
  private replicaWait?: ReplicaWait;
  private idleCollector?: IdleCollector;
  /** What the interpreters run, the feed that publishes it, and this node's dashboard viewers. */
  private readonly activity = new ActivityLog();
  private feed?: FeedPublisher;
  private hub?: DashboardHub;
  private server?: Server;
  /** The web server's connections, for closing those that carry no request at stop. */
  private httpConnections?: Connections;
  private stopping?: Promise<void>;
  private readonly startedAt = Date.now();
  private directCalls = 0;
  /** The queues the node's own interpreters serve (not the --env ones). */
  private queueNames: string[] = [];
  name = '';
  url = '';

  constructor(private readonly opts: NodeOptions) {}

  async start(): Promise<void> {
    const o = this.opts;
    const loopback = ['127.0.0.1', 'localhost', '::1'].includes(o.host);
    const ownToken = this.ownToken;
    if (!loopback && !ownToken && !o.insecure) {
      throw new Error(`binding ${o.host} exposes the node to the network: give --token, or --insecure to accept that`);
    }
    if (o.nodeName && !namePattern.test(o.nodeName)) throw new Error(`--node-name must be letters, digits, '.', '_' or '-'`);
    for (const queue of o.queues) if (!namePattern.test(queue)) throw new Error(`--queue ${queue}: letters, digits, '.', '_' or '-' only`);
    // A malformed --redis-connection or --node-url fails here, before anything starts.
    redisOptions(o.redisConnection);
    const advertised = o.nodeUrl === undefined ? undefined : parseNodeUrl(o.nodeUrl);
    mkdirSync(o.datadir, { recursive: true });
    const silent = await whyRedisIsSilent(o.redisConnection);
    if (silent && o.noRedis) throw new Error(`no Redis answers at ${o.redisConnection} (${silent}), and --no-redis says not to start one`);
    if (silent && isManagedRedis(o.redisConnection)) throw new Error(`no Redis answers at ${o.redisConnection}: ${silent}`);
    if (silent) {
      log(`no Redis answers at ${o.redisConnection}: starting redis-server`);
      this.redisServer = await startRedisServer(o.redisConnection, join(o.datadir, '.redis'));
    }
    const catalog = new Catalog(o.datadir, { minFreeDiskBytes: o.minFreeDiskBytes, memoryDatadir: o.memoryDatadir });
    const warning = await catalog.init();
    if (warning) log(`WARNING: ${warning}`);
    this.catalog = catalog;
    const keys = keysFor(o.redisConnection, o.keyPrefix);
    const redis = this.connect({ connectionName: 'ks-cmd' });
    const claims = new ClaimLock(redis, keys, {
      claimTtlMs: config.claimTtlMs,
      resultTtlS: o.resultTtlS,
      minDoneTtlS: config.minDoneClaimTtlS,
      batchSafetyTtlS: config.batchSafetyTtlS,
    });
    await redis.ping();
    await this.warnOnEviction(redis);

    this.server = await this.listen(o.nodePort ?? (advertised ? portOf(advertised) : config.nodePort));
    this.httpConnections = new Connections(this.server);
    const port = (this.server.address() as { port: number }).port;
    this.name = o.nodeName ?? `${hostname()}-${port}`;
    this.url = advertisedUrl(advertised, o.host, port);

    const admission = new Admission({ maxConcurrency: o.maxConcurrency, maxQueue: o.maxConcurrencyQueue });
    const metrics = this.createMetrics(admission);
    const persisted = new PersistedCalls(redis, keys);
    const env: Record<string, string> = { KS_NODE_NAME: this.name, KS_NODE_URL: this.url, KS_DATADIR: resolve(o.datadir) };
    if (catalog.memoryRoot) env.KS_MEMORY_DATA = catalog.memoryRoot;
    // Each interpreter keeps what obj() decoded within this; by default a quarter of the machine's memory shared by the most interpreters it may run.
    env.KS_DATA_CACHE_MB = String(o.dataCacheMb ?? Math.floor(totalmem() / 4 / 1024 / 1024 / (o.maxWorkers * (1 + o.environments.length))));
    // Python saves RemoteData straight to the port this node listens on, not through a proxy
    // that --node-url may name; the data route needs the token.
    env.KS_NODE_LOCAL_URL = `http://${connectableAddress(o.host)}:${port}`;
    if (o.noCode) env.KS_NO_CODE = '1';
    if (o.scriptDir) env.KS_SCRIPT_DIR = o.scriptDir;
    if (ownToken) env.KS_NODE_TOKEN = ownToken;
    const started = { pythonPath: [join(packageRoot, 'python')], vars: env, modules: o.modules, persisted, metrics, log };
    const limits = { numWorkers: o.numWorkers, minWorkers: o.minWorkers, maxWorkers: o.maxWorkers, scaleUpAfterMs: o.scaleUpAfterMs, retireIdleS: o.retireIdleS, maxRequests: o.maxRequests, maxMemoryMb: o.maxMemoryMb };
    const own = await startInterpreters({ ...started, ...limits, env: '', observer: this.activity.observer(), python: o.python, entrypoints: o.entrypoints, replayQueues: (jobs) => [...new Set([defaultQueue, ...o.queues, ...Object.keys(jobs).map(jobQueue)])] });
    this.interpreters = [own];
    this.pool = own.pool;
    try {
      for (const { name, python } of o.environments) {
        this.interpreters.push(await startInterpreters({ ...started, ...limits, env: name, observer: this.activity.observer(name), python, entrypoints: {}, replayQueues: () => [envQueue(name)] }));
      }
    } catch (error) {
      await Promise.all(this.interpreters.map((i) => i.pool.close()));
      throw error;
    }

    const localJobs = this.pool.jobs;
    const jobNames = Object.keys(localJobs);
    const queues = [defaultQueue, ...o.queues.filter((q) => q !== defaultQueue), ...jobNames.map(jobQueue)];
    this.queueNames = queues;
    const self: HostInfo = {
      name: this.name,
      url: this.url,
      workers: o.numWorkers,
      queues: [...queues, ...o.environments.map((e) => envQueue(e.name))],
      jobs: jobNames,
      readOnly: o.readOnly,
      version,
      startedAt: this.startedAt,
    };
    this.registry = new HostRegistry(redis, keys, self, {
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      heartbeatTtlMs: config.heartbeatTtlMs,
      cacheMs: config.hostCacheMs,
      jobsJson: jobNames.length ? JSON.stringify(Object.values(localJobs)) : undefined,
      onForgotten: () =>
        log('WARNING: Redis no longer knew this host: it restarted without persistence (or was flushed). Calls queued and results kept before then are lost; clients asking for those batches get a 404 that says so.'),
    });
    this.events = keys.cluster
      ? new StreamReader(redis, () => this.connect({ connectionName: 'ks-events' }, false), config.eventsPerPoll)
      : new EventReader(redis, this.connect({ connectionName: 'ks-events' }), config.eventsPerPoll);
    const registry = this.registry;
    this.queues = new QueueCache(redis, keys);
    const liveHosts = () => registry.liveHosts();
    const dataRegistry = new DataRegistry(redis, keys);
    for (const line of reconciledReport(await reconcileData(redis, keys, dataRegistry, catalog, this.name))) log(line);
    const mover = new DataMover({ catalog, registry: dataRegistry, nodeName: this.name, readOnly: o.readOnly, token: ownToken, liveHosts, log, onReceived: (bytes) => metrics.moved('in', bytes) });
    const data = new DataService({ catalog, registry: dataRegistry, mover, nodeName: this.name, readOnly: o.readOnly, liveHosts });
    this.replicaWait = new ReplicaWait(redis, { timeoutMs: config.replicaWaitMs, refreshMs: config.replicaCheckMs, log });
    await this.replicaWait.start();
    this.calls = new CallService(
      {
        redis,
        replicas: this.replicaWait,
        claims,
        keys,
        events: this.events,
        queues: this.queues,
        liveHosts: (fresh) => registry.liveHosts(fresh),
        local: { reserve: (queue) => this.reserveHere(queue), runHere: (job, lease) => this.reservedBy.get(lease)!.runHere(job, lease) },
      },
      {
        longPollMaxMs: config.longPollMaxMs,
        pollLingerMs: config.pollLingerMs,
        jobAttempts: 3,
        maxCallsPerJob: config.maxCallsPerJob,
        chunksPerWorker: config.chunksPerWorker,
        stealDelayMs: config.stealDelayMs,
        routeHostsMax: config.routeHostsMax,
        copyBytesPerMs: config.copyBytesPerMs,
        localCopyDelayMs: config.jobLockMs,
        maxQueued: o.maxQueued,
      },
    );
    // One set of queue workers per Python: the node's own serves its queues, each --env its env.NAME.
    const subscriber = this.connect({ connectionName: 'ks-cancel' });
    const workerConnection = keys.cluster ? this.connect({ connectionName: 'ks-worker' }) : { ...redisOptions(o.redisConnection), connectionName: 'ks-worker' };
    for (const { env: name, pool } of this.interpreters) {
      const served = name ? [envQueue(name)] : queues;
      const worker = new CallWorker(
        { redis, claims, connection: workerConnection, subscriber, keys, nodeName: this.name, pool, data: mover, log, metrics },
        {
          queues: this.bullQueues(served),
          concurrency: o.maxWorkers,
          claimRefreshMs: config.claimRefreshMs,
          timeoutS: o.timeoutS,
          maxOutputBytes: o.maxOutputBytes,
          outputCoalesceMs: config.outputCoalesceMs,
          jobLockMs: config.jobLockMs,
          recheckMs: config.recheckMs,
        },
      );
      await worker.start();
      this.workers.push(worker);
    }
    const jobCatalog = new JobCatalog({ redis, keys, liveHosts: () => registry.liveHosts() }, localJobs, config.hostCacheMs);
    this.hub = new DashboardHub({ redis, keys, connect: () => this.connect({ connectionName: 'ks-dashboard' }), hosts: () => readHosts(redis, keys), log });
    this.feed = new FeedPublisher({ redis, keys, host: this.name, version, activity: this.activity, lanes: () => this.interpreters.flatMap((i) => i.pool.slots().map((slot) => laneId(i.env, slot))), log });
    this.feed.start();
    this.serve(this.server, { calls: this.calls, data, registry: this.registry, mover, catalog: jobCatalog, metrics, admission, persisted });
    await this.registry.register();
    this.sweeper = new DeadHostSweeper(
      { redis, claims, keys, queues: this.queues, nodeName: this.name, log },
      { intervalMs: config.sweepIntervalMs, deadAfterMs: config.heartbeatTtlMs + config.sweepIntervalMs },
    );
    this.sweeper.start();
  }

  /** Stops taking work, lets running calls finish (bounded), deregisters, stops every child. */
  stop(graceMs: number = config.shutdownGraceMs): Promise<void> {
    this.stopping ??= this.doStop(graceMs);
    return this.stopping;
  }

  private async doStop(graceMs: number): Promise<void> {
    // Each step is bounded: with Redis gone, a step that needs it would otherwise wait forever.
    const quietly = async (what: string, step: () => Promise<unknown> | unknown, limitMs: number = config.stopStepMs) => {
      try {
        const outcome = await Promise.race([Promise.resolve(step()).then(() => 'done'), delay(limitMs, 'timeout', { ref: false })]);
        if (outcome === 'timeout') log(`while stopping, ${what}: gave up after ${limitMs} ms`);
      } catch (error) {
        log(`while stopping, ${what}: ${(error as Error).message}`);
      }
    };
    this.sweeper?.close();
    this.replicaWait?.close();
    this.feed?.stop();
    this.hub?.close();
    for (const { autoscaler } of this.interpreters) autoscaler.stop();
    this.idleCollector?.close();
    await quietly('deregistering', () => this.registry?.deregister());
    await quietly('stopping the queue workers', () => Promise.all(this.workers.map((w) => w.close(graceMs))), graceMs + config.stopStepMs);
    this.events?.close();
    await quietly('closing the web server', () => {
      const closed = new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
      // Requests in flight finish (bounded by the step); connections that carry none go now.
      this.httpConnections?.closeUnused();
      return closed;
    });
    this.server?.closeAllConnections();
    await quietly('closing the queues', async () => {
      await this.calls?.close();
      await this.queues?.close();
    });
    await quietly('stopping the interpreters', () => Promise.all(this.interpreters.map((i) => i.pool.close())));
    await quietly('emptying the memory tier', () => this.catalog?.close());
    for (const connection of this.connections) connection.disconnect();
    if (this.redisServer?.pid) {
      const exited = new Promise((r) => this.redisServer!.once('exit', r));
      await quietly('stopping redis-server', () => process.kill(-this.redisServer!.pid!, 'SIGTERM'));
      await Promise.race([exited, delay(5_000, undefined, { ref: false })]);
    }
  }

  /**
   * Answers 503 to the API and `/health` while this node's heartbeats do not reach Redis (a
   * partition between it and Redis only): it would take work it cannot record, and a load
   * balancer should send callers to another node. True when it answered.
   */
  private cutFromRedis(req: IncomingMessage, res: ServerResponse): boolean {
    const silentMs = this.registry?.silentFor ?? 0;
    if (silentMs < config.redisCutAfterMs) return false;
    const path = req.url ?? '';
    if (!path.startsWith('/api/') && !path.startsWith('/health')) return false;
    const body = JSON.stringify({ error: 'redis_unreachable', detail: `this node has not reached Redis for ${Math.round(silentMs / 1000)} s: it takes no work it could not record; call another node` });
    res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return true;
  }

  /** The interpreters a call runs on here: those of its `env`, else the node's own. */
  private poolFor(call: Pick<WireCall, 'fn' | 'opts'>): ExecutorPool {
    const env = call.opts?.env;
    if (!env) return this.pool!;
    const found = this.interpreters.find((i) => i.env === env);
    if (found) return found.pool;
    const known = this.interpreters.slice(1).map((i) => i.env);
    throw new UnknownEnvironment(`this node has no environment ${JSON.stringify(env)}: ${known.length ? `it has ${known.join(', ')}` : 'it was started without --env'}`);
  }

  /** A free interpreter of the Python serving `queue`, for a call to start here at once. */
  private reserveHere(queue: string): Lease | undefined {
    for (const worker of this.workers) {
      const lease = worker.reserve(queue);
      if (lease) {
        this.reservedBy.set(lease, worker);
        return lease;
      }
    }
    return undefined;
  }

  /** Every BullMQ queue this node takes calls from. */
  private servedQueues(): string[] {
    return this.bullQueues([...this.queueNames, ...this.opts.environments.map((e) => envQueue(e.name))]);
  }

  /** The BullMQ queues of served queues: each pinned to this node, and anywhere. */
  private bullQueues(queues: string[]): string[] {
    return queues.flatMap((q) => [queueName(q, this.name), q]);
  }

  /** The token this node shows other nodes and its interpreters use to save: every node of a cluster takes the first. */
  private get ownToken(): string | undefined {
    return this.opts.tokens[0]?.secret;
  }

  /** The node's metrics; what they show of the node is read at scrape time. */
  private createMetrics(admission: Admission): NodeMetrics {
    return new NodeMetrics({
      nodeName: this.name,
      startedAt: this.startedAt,
      workers: () => this.interpreters.reduce((sum, i) => sum + i.pool.size, 0),
      idleWorkers: () => this.interpreters.reduce((sum, i) => sum + i.pool.idle, 0),
      longPolls: () => this.events?.waiting ?? 0,
      directCalls: () => this.directCalls,
      admissionRejected: () => admission.rejected,
      queueDepths: () => this.queues!.waiting(this.servedQueues()),
      jobMetrics: () => collectJobMetrics(this.pool!, log, config.jobMetricsWaitMs),
    });
  }

  /** A connection to Redis, closed when the node stops unless `owned` says its user closes it. */
  private connect(extra: { connectionName: string }, owned = true): Redis {
    const connection = connectRedis(this.opts.redisConnection, extra);
    connection.on('error', (error: Error) => log(`redis (${extra.connectionName}): ${error.message}`));
    if (owned) this.connections.push(connection);
    return connection;
  }

  private async warnOnEviction(redis: Redis): Promise<void> {
    try {
      const [, policy] = (await redis.config('GET', 'maxmemory-policy')) as string[];
      if (policy && policy !== 'noeviction') {
        log(`WARNING: Redis maxmemory-policy is ${policy}; it may evict queued calls and results. Set it to noeviction.`);
      }
    } catch {
      // CONFIG may be disabled on managed Redis; nothing to check then.
    }
  }

  /**
   * Binds first, so the node can name itself after its port; until routes attach in `serve`,
   * every request gets a 503 that says the node is starting.
   */
  private listen(port: number): Promise<Server> {
    const server = createServer(answerStarting);
    server.keepAliveTimeout = 65_000;
    server.headersTimeout = 66_000;
    // Uploads and downloads of large data may take longer than Node's default 300 s per request.
    server.requestTimeout = 0;
    return new Promise((resolvePromise, reject) => {
      server.once('listening', () => resolvePromise(server));
      server.once('error', (error: NodeJS.ErrnoException) =>
        reject(new Error(`cannot listen on ${this.opts.host}:${port}${this.opts.nodePort === undefined && this.opts.nodeUrl ? ' (the port of --node-url; --node-port sets another)' : ''}: ${error.code ?? error.message}`)),
      );
      server.listen(port, this.opts.host);
    });
  }

  private serve(
    server: Server,
    parts: { calls: CallService; data: DataService; registry: HostRegistry; mover: DataMover; catalog: JobCatalog; metrics: NodeMetrics; admission: Admission; persisted: PersistedCalls },
  ): void {
    const { calls, data, registry, mover, catalog, metrics, admission, persisted } = parts;
    const pool = this.pool!;
    // A call run at once on this node's interpreters: its own timeout, else the node's.
    const direct = (call: WireCall<Uint8Array | Spliced>) => ({ ...call, timeoutS: call.opts?.timeout ?? this.opts.timeoutS, maxOutputBytes: this.opts.maxOutputBytes });
    const runHere = async (call: WireCall<Uint8Array | Spliced>, stop: StopSwitch, caller?: string) => {
      this.directCalls += 1;
      const startedAt = performance.now();
      const result = await runDirectCall(this.poolFor(call), mover, direct(call), stop);
      metrics.callEnded(call.fn, result.outcome.ok ? 'ok' : result.outcome.failure.kind, (performance.now() - startedAt) / 1000, caller);
      return result;
    };
    const runOnAllHere = async (call: WireCall, stop: StopSwitch): Promise<WireAllOutcome[]> => {
      const results = await runOnEveryInterpreter(this.poolFor(call), mover, direct(call), stop);
      return results.map(({ worker, outcome, output }) => ({
        host: this.name,
        worker,
        ok: outcome.ok,
        ...(outcome.ok ? { value: joined(outcome.value) } : { failure: outcome.failure }),
        output,
      }));
    };
    const jobService = new JobService({ catalog, admission, runHere, calls, log });
    const routes: AppContext = {
      log,
      calls,
      data,
      jobs: { catalog, service: jobService },
      version,
      runDirect: (call, stop, caller) => admission.run(() => runHere(call, stop, caller)),
      runOnAllHere,
      runEverywhere: (call, stop) =>
        runEverywhere({ nodeName: this.name, token: this.ownToken, liveHosts: () => registry.liveHosts(true), runOnAllHere, record: (queue, c) => persisted.record(queue, c) }, call, stop),
      persisted,
      dashboard: this.hub!,
      liveHosts: () => registry.liveHosts(true),
      hostUrl: async (name) => (await registry.liveHosts()).find((h) => h.name === name)?.url,
      info: () => ({
        name: this.name,
        url: this.url,
        version,
        // StandPy's fields: the interpreters' environment, Python, limits and uptime.
        environment: pool.python.environment,
        prefix: pool.python.prefix,
        python: pool.python.executable,
        pythonVersion: pool.python.version,
        workers: pool.size,
        idleWorkers: pool.idle,
        minWorkers: this.opts.minWorkers,
        maxWorkers: this.opts.maxWorkers,
        workersAdded: this.interpreters[0].autoscaler.added,
        workersRetired: this.interpreters[0].autoscaler.retired,
        timeout: this.opts.timeoutS ?? null,
        max_requests: this.opts.maxRequests,
        worker_uptime: pool.uptimesS(),
        executorPids: pool.pids(),
        readOnly: this.opts.readOnly,
        startedAt: this.startedAt,
        queues: this.queueNames,
        jobs: Object.keys(catalog.local),
        // Interpreters whose replay of the persisted ALL calls failed: they take no calls until it succeeds.
        unhealthy: pool.unhealthy,
        // Each --env, as StandPy shows its environment: which Python, where, how many interpreters.
        environments: this.interpreters.slice(1).map(({ env, pool: { python, size, idle, unhealthy } }) => ({
          name: env,
          queue: envQueue(env),
          environment: python.environment,
          prefix: python.prefix,
          python: python.executable,
          pythonVersion: python.version,
          workers: size,
          idleWorkers: idle,
          unhealthy,
        })),
      }),
      metrics: () => metrics.text(),
      dataMoved: (direction, bytes) => metrics.moved(direction, bytes),
    };
    const appOptions = { gate: new Gate(this.opts.tokens, this.opts.publicPaths), ownToken: this.ownToken, scriptDir: this.opts.scriptDir, noCode: this.opts.noCode, maxRequestSizeBytes: this.opts.maxRequestSizeBytes };
    const koa = createApp(routes, appOptions);
    const fastRoutes = fastCallRoutes(routes, appOptions);
    const fastJobs = fastPerform({ service: jobService, gate: appOptions.gate, maxRequestSizeBytes: this.opts.maxRequestSizeBytes, errorAnswer, clientGone });
    const idle = new IdleCollector(() => pool.idle < pool.size, { quietMs: config.idleGcQuietMs, minGrowthBytes: config.idleGcMinGrowthBytes });
    this.idleCollector = idle;
    const handle = koa.callback();
    server.removeListener('request', answerStarting);
    server.on('request', (req, res) => {
      idle.touch();
      // `http://host:port/` + `/api/v1/...`, as users glue them in curl, is the same route.
      if (req.url?.startsWith('//')) req.url = req.url.replace(/^\/+/, '/');
      if (this.cutFromRedis(req, res)) return;
      if (fastRoutes(req, res) || fastJobs(req, res)) return;
      if (req.method === 'PUT' && Number(req.headers['content-length']) >= config.bigUploadBytes) idle.makeRoom();
      void handle(req, res);
    });
  }
}

/**
 * The url this node registers: `--node-url` as given (a proxy in front may listen elsewhere),
 * with the real port when it asked for port 0; without one, built from the bound address.
 */
function advertisedUrl(nodeUrl: URL | undefined, host: string, port: number): string {
  if (!nodeUrl) return `http://${loopbackOrHost(host)}:${port}`;
  const url = new URL(nodeUrl);
  if (url.port === '0') url.port = String(port);
  return normalizeNodeUrl(url.href);
}

/** An address this machine can connect to for a server bound to `host`. */
function connectableAddress(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  return bracketed(host === '::' ? '::1' : host);
}

function loopbackOrHost(host: string): string {
  if (host === '0.0.0.0' || host === '::') return hostname();
  return bracketed(host);
}

/** An IPv6 literal goes in brackets in a url. */
function bracketed(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
