/**
 * Every constant that tunes kitchensink's behaviour, with its unit in its name.
 * CLI flags and client options default to these values.
 */
export const config = {
  /** Prefix of every Redis key, BullMQ queues included. */
  keyPrefix: 'ks',
  /** Where a node looks for (or starts) Redis. */
  redisUrl: 'redis://127.0.0.1:6379',
  nodePort: 6323,
  bindHost: '127.0.0.1',
  /** A host refreshes `ks:alive:<host>` this often... */
  heartbeatIntervalMs: 1_000,
  /** ...and is dead for routing once it has not for this long. */
  heartbeatTtlMs: 10_000,
  /** A node whose heartbeat has not reached Redis for this long takes no work (503): it could not record it. */
  redisCutAfterMs: 3_000,
  /** A claim expires unless its owner refreshes it, so a dead node's calls can run elsewhere. */
  claimTtlMs: 30_000,
  claimRefreshMs: 10_000,
  /** BullMQ job lock; a dead node's running jobs return to their queue about this long after. */
  jobLockMs: 10_000,
  /** A queued copy of a call another live host runs looks at it again this often. */
  recheckMs: 5_000,
  /** The longest a batch's answer waits for a replica of Redis to confirm it has the batch (WAIT). */
  replicaWaitMs: 500,
  /** How often a node asks Redis whether it has replicas online (only those are waited for). */
  replicaCheckMs: 5_000,
  /** How often some node looks for dead hosts whose queues hold calls nobody else can run. */
  sweepIntervalMs: 5_000,
  /** Results and events stay readable this long after a batch's last call ended. */
  resultTtlS: 3_600,
  /** Until then, a batch's stream and meta expire only after this long (a bound, not a plan). */
  batchSafetyTtlS: 7 * 24 * 3_600,
  /** An ended call's claim outlives every queued copy of it (they see it and drop): at least this long. */
  minDoneClaimTtlS: 600,
  /** The longest a `POST /results` long-poll holds before answering with no events. */
  longPollMaxMs: 5_000,
  /** The most events one long-poll answer carries. */
  eventsPerPoll: 5_000,
  maxRequestSizeBytes: 256 * 1024 * 1024,
  maxOutputBytes: 64 * 1024 * 1024,
  /** A call's output waits at most this long to go to Redis with more output or its result... */
  outputCoalesceMs: 5,
  /** ...or until this much of it waits. */
  outputCoalesceBytes: 64 * 1024,
  /** Output bytes a call may have on their way to Redis before its interpreter is made to wait. */
  outputInFlightBytes: 4 * 1024 * 1024,
  /** Bytes a file being written may hold in memory before it pushes back on the socket. */
  fileWriteBufferBytes: 2 * 1024 * 1024,
  /** Written bytes not yet on disk after which the writer starts an fdatasync in the background. */
  fileSyncEveryBytes: 32 * 1024 * 1024,
  /** The writer has V8 scavenge dead chunks after every this many bytes (see youngGc). */
  fileScavengeEveryBytes: 4 * 1024 * 1024,
  /** Sending a file reads into this many buffers of this size, in turn. */
  fileSendBuffers: 8,
  fileSendBufferBytes: 1024 * 1024,
  /** How long a stopping node lets running calls finish before killing them. */
  shutdownGraceMs: 30_000,
  /** The longest any other step of stopping a node may take (Redis may be gone). */
  stopStepMs: 5_000,
  /** Interrupt, then kill, a stuck interpreter this much later. */
  killGraceMs: 300,
  /** stderr lines kept per interpreter to explain a crash. */
  crashTailLines: 20,
  /**
   * A call's copy on a host of routing rank r becomes runnable only r × this much later, so
   * its first-choice host has a head start and an idle host steals only from a busy one.
   */
  stealDelayMs: 200,
  /**
   * The rate routing expects a host to copy data at (bytes per ms: 100 MB/s). A call's copy on
   * a host that would copy more than the first choice waits longer by the time the extra bytes
   * would take, so a host steals a call only once it has waited about as long as the copy
   * costs (as Dask's work stealing weighs transfer against waiting); the client spreads a
   * batch's calls by when each host could start them (copies at this rate).
   */
  copyBytesPerMs: 100_000,
  /** What routing counts each copy as besides its bytes (a request to the holder, the registry) when it spreads a batch ... */
  routedCopyMs: 10,
  /** ... and each call's run. */
  routedCallMs: 1,
  /** Hosts that would copy this many bytes or more are not routed to. */
  dataThresholdBytes: 200_000_000,
  /**
   * A routed call is queued on at most this many hosts, its first choice and those that may
   * steal it (ranked by when each could start it, so an idle host comes early): on a cluster of
   * hundreds, a queue entry per host for every call would cost Redis more than the calls.
   */
  routeHostsMax: 8,
  /** A copy between nodes fails when the holder sends no byte (or does not connect) for this long. */
  transferIdleMs: 30_000,
  /** A copy between nodes reads the holder's socket into buffers of this size, one per read. */
  transferChunkBytes: 1024 * 1024,
  /** Client HTTP timeouts: a long-poll answers within `longPollMaxMs`, so this bounds a dead node. */
  clientRequestTimeoutMs: 60_000,
  /** Connections a client keeps to one node at most; further requests wait for one. */
  clientMaxSockets: 64,
  /** A client closes a connection idle this long (a node closes them after 65 s). */
  clientIdleSocketMs: 30_000,
  /** Each of the two buffers a client download to a file goes through. */
  downloadBufferBytes: 1024 * 1024,
  /** Large batches go to the queues in jobs of up to this many calls... */
  maxCallsPerJob: 32,
  /** ...but never so few jobs that a live worker would get fewer than this many. */
  chunksPerWorker: 4,
  /** A long-poll that found some but not all of its calls' ends waits this long for more. */
  pollLingerMs: 10,
  /** How long a client's long-poll waits out a node or Redis that does not answer. */
  pollOutageMs: 60_000,
  /** A batch this large shows a progress bar when stderr is a TTY. */
  progressMinCalls: 200,
  /** A node that was busy and has been quiet this long runs a full garbage collection... */
  idleGcQuietMs: 200,
  /** ...when V8 holds this much more than the live heap of the last one (it gives it back). */
  idleGcMinGrowthBytes: 16 * 1024 * 1024,
  /** An upload this large first gets the node's heap collected, if it grew (see idleGc*). */
  bigUploadBytes: 64 * 1024 * 1024,
  /** An interpreter whose replay of the persisted ALL calls failed is tried again this long after... */
  prepareRetryFirstMs: 1_000,
  /** ...and twice as long after each failure in a row, up to this. */
  prepareRetryMaxMs: 30_000,
  /** How long a scrape of `/metrics` waits for a job's own `metrics()`. */
  jobMetricsWaitMs: 2_000,
  /** How long the host snapshot used to validate `opts.host`/`opts.queue` may be stale. */
  hostCacheMs: 1_000,
  /** How often the autoscaler looks at waiting calls and idle interpreters. */
  autoscaleCheckMs: 100,
  /** `--scale-up-after` default: a call waiting this long for an interpreter adds one (ms). */
  scaleUpAfterMs: 250,
  /** `--retire-idle` default: an interpreter idle this long is retired (s). */
  retireIdleS: 60,
} as const;

export const defaultQueue = 'default';
