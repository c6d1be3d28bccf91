/**
 * The lease-coordination cost driver shared by `bench/leaseScale.ts` (1,000 shards × 20 workers) and
 * `LeaseScale.test.ts` (small numbers, on CI): workers run the consumer's lease logic on one dynalite table with no
 * Kinesis traffic, and every DynamoDB request is counted by operation with the capacity DynamoDB reports for it.
 *
 * - Kinesis is a fake whose `ListShards` returns a fixed list of open shards; nothing else is called, because the
 *   shard streams are never run: a worker only takes, renews, hands over and releases leases (the outer
 *   `shardedStream` is drained, so a lease moved away is released at once, as a shard stream with no records in
 *   flight would).
 * - Requests are counted by a middleware on the workers' SDK clients, with the capacity DynamoDB bills for each,
 *   computed from the items read or written by DynamoDB's rules (`billed`).
 * - Who holds what comes from the workers' diagnostic events, not from reading the table (which would be counted).
 */
import { DynamoDBClient as SdkDynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb"
import type { Shard } from "@aws-sdk/client-kinesis"
import { Consumer, type DiagnosticEvent, LeaseRepository } from "@effect-kinesis/consumer"
import { Client, Serde } from "@effect-kinesis/core"
import { DynamoDbClient, DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import type { DynamoEmulator } from "@effect-kinesis/testing"
import { Duration, Effect, Exit, Fiber, Layer, References, Scope, Stream } from "effect"

/** Calls and consumed capacity by DynamoDB operation. */
export interface Tally {
  readonly calls: Record<string, number>
  readonly capacity: Record<string, number>
  /** Requests that failed (a refused condition, a timeout), by operation and error name. */
  readonly failed?: Record<string, number> | undefined
}

/**
 * SDK clients, one per worker as in production (a shared one would queue every worker's renewals behind its own
 * connection pool), counting every request into one tally (and asking DynamoDB for its consumed capacity).
 */
export const countingClients = (config: DynamoEmulator.DynamoEmulator["Service"]["clientConfig"]) => {
  let calls: Record<string, number> = {}
  let capacity: Record<string, number> = {}
  let failed: Record<string, number> = {}
  const made: Array<SdkDynamoDBClient> = []
  const make = () => {
    const sdk = new SdkDynamoDBClient({ ...config, maxAttempts: 1 })
    made.push(sdk)
    sdk.middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as Record<string, unknown>
        const operation = (context.commandName ?? "?").replace(/Command$/, "")
        // Reads of the leader lock apart from reads of leases.
        const key = (input.Key as { leaseKey?: { S?: string } } | undefined)?.leaseKey?.S
        const label = operation === "GetItem" && key === "Leader" ? "GetItem(lock)" : operation
        calls[label] = (calls[label] ?? 0) + 1
        const charge = (units: number) => {
          capacity[label] = (capacity[label] ?? 0) + units
        }
        try {
          const result = await next(args)
          charge(billed(operation, input, result.output as unknown as Record<string, unknown>))
          return result
        } catch (error) {
          const name = `${label} ${(error as { name?: string }).name ?? "?"}`
          failed[name] = (failed[name] ?? 0) + 1
          // DynamoDB bills a write whose condition failed as a write.
          if (WRITES.has(operation)) charge(1)
          throw error
        }
      },
      { step: "initialize", name: "leaseScaleCounter" }
    )
    return sdk
  }
  return {
    make,
    destroy: () => made.forEach((sdk) => sdk.destroy()),
    /** What was counted since the last call, and starts counting afresh. */
    take: (): Tally => {
      const tally = { calls, capacity, failed }
      calls = {}
      capacity = {}
      failed = {}
      return tally
    }
  }
}

const WRITES = new Set(["PutItem", "UpdateItem", "DeleteItem"])

// Capacity as DynamoDB bills it, from the items read or written (dynalite's own `ConsumedCapacity` halves
// consistent scans and leaves out refused conditional writes): reads by 4 KB per request (a Scan or Query page by the
// summed size of its items), halved when eventually consistent; writes by 1 KB of the item written.
const billed = (operation: string, input: Record<string, unknown>, output: Record<string, unknown>): number => {
  const consistent = input.ConsistentRead === true
  const read = (bytes: number) => Math.max(1, Math.ceil(bytes / 4096)) * (consistent ? 1 : 0.5)
  type Items = Array<Record<string, Value>>
  switch (operation) {
    case "Scan":
    case "Query":
      return read(((output.Items ?? []) as Items).reduce((s, item) => s + itemSize(item), 0))
    case "GetItem":
      return read(output.Item === undefined ? 0 : itemSize(output.Item as Record<string, Value>))
    case "PutItem":
      return Math.max(1, Math.ceil(itemSize(input.Item as Record<string, Value>) / 1024))
    case "UpdateItem":
      return output.Attributes === undefined
        ? 1
        : Math.max(1, Math.ceil(itemSize(output.Attributes as Record<string, Value>) / 1024))
    case "DeleteItem":
      return 1
    default:
      return 0
  }
}

const shardId = (i: number) => `shardId-${String(i).padStart(12, "0")}`

/** `count` open shards splitting the hash key space evenly, as `ListShards` returns them. */
export const openShards = (count: number): ReadonlyArray<Shard> => {
  const span = (1n << 128n) / BigInt(count)
  return Array.from({ length: count }, (_, i) => ({
    ShardId: shardId(i),
    HashKeyRange: {
      StartingHashKey: (span * BigInt(i)).toString(),
      EndingHashKey: (i === count - 1 ? (1n << 128n) - 1n : span * BigInt(i + 1) - 1n).toString()
    },
    SequenceNumberRange: { StartingSequenceNumber: "49590338271490256608559692538361571095921575989136588898" }
  }))
}

// Kinesis as far as the lease logic sees it: the shard list. Anything else would mean a shard stream ran.
const fakeKinesis = (shards: ReadonlyArray<Shard>) =>
  Layer.succeed(
    Client.Client,
    new Proxy({ listShards: () => Stream.fromIterable(shards) }, {
      get: (target, key) =>
        key in target ? (target as Record<PropertyKey, unknown>)[key] : () => {
          throw new Error(`the lease-scale driver's Kinesis does not implement ${String(key)}`)
        }
    }) as unknown as Client.Client["Service"]
  )

/** A store whose every call fails for good once `dead()`: the worker stops as if killed, its leases left to expire. */
const killable = (dead: () => boolean) =>
  Layer.effect(
    LeaseRepository.LeaseRepository,
    Effect.map(Effect.service(LeaseRepository.LeaseRepository), (store) => {
      const killed = Effect.suspend(() =>
        Effect.fail(new LeaseRepository.LeaseStoreError({ operation: "killed", message: "killed", retryable: false }))
      )
      const gate = <A, E>(self: Effect.Effect<A, E>): Effect.Effect<A, E | LeaseRepository.LeaseStoreError> =>
        Effect.suspend((): Effect.Effect<A, E | LeaseRepository.LeaseStoreError> => dead() ? killed : self)
      const wrap = (value: unknown) =>
        Effect.isEffect(value)
          ? gate(value as Effect.Effect<unknown, unknown>)
          : typeof value === "function"
          ? (...args: Array<unknown>) => gate((value as (...a: Array<unknown>) => Effect.Effect<unknown>)(...args))
          : value
      const wrapped: Record<string, unknown> = {}
      for (const [key, value] of Object.entries(store)) wrapped[key] = wrap(value)
      // The leader lock too: a killed leader neither refreshes nor releases it.
      if (store.leaderLock !== undefined) {
        wrapped.leaderLock = Object.fromEntries(
          Object.entries(store.leaderLock).map(([key, value]) => [key, wrap(value)])
        )
      }
      return wrapped as unknown as LeaseRepository.LeaseRepository["Service"]
    })
  )

/** A worker of the driver. */
export interface ScaleWorker {
  readonly workerId: string
  /** Lease keys it holds now (from its own diagnostic events). */
  readonly held: Set<string>
  /** Stops gracefully (its leases are released). */
  readonly stop: Effect.Effect<void>
  /** Every store call fails from now on: the worker ends without releasing anything. */
  readonly kill: () => void
}

export interface ScaleOptions {
  readonly applicationName: string
  readonly shards: ReadonlyArray<Shard>
  /** A new SDK client for a worker. */
  readonly sdk: () => SdkDynamoDBClient
  readonly lease: Consumer.LeaseSettings
}

/** Starts one worker in the current scope. */
export const startWorker = (options: ScaleOptions, workerId: string) =>
  Effect.gen(function*() {
    const held = new Set<string>()
    let dead = false
    const onDiagnostic = (event: DiagnosticEvent.DiagnosticEvent) =>
      Effect.sync(() => {
        if (event._tag === "LeaseAcquired") held.add(event.shardId)
        else if (event._tag === "LeaseLost" || event._tag === "LeaseReleased") held.delete(event.shardId)
      })
    const store = killable(() => dead).pipe(
      // Leader mode looks up each worker's keys in the owner index.
      Layer.provide(DynamoDbLeaseRepository.layer({
        applicationName: options.applicationName,
        leaseOwnerIndex: options.lease.coordination === "leader" ? "create" : "use"
      })),
      Layer.provide(
        Layer.succeed(DynamoDbClient.DynamoDbClient, DynamoDbClient.DynamoDbClient.of({ sdk: options.sdk() }))
      )
    )
    const scope = yield* Scope.make()
    const fiber = yield* Consumer.shardedStream({
      stream: "lease-scale",
      applicationName: options.applicationName,
      workerId,
      deserializer: Serde.string,
      lease: options.lease,
      shutdownGracePeriod: "1 second",
      onDiagnostic
    }).pipe(
      Stream.runDrain,
      Effect.provide(Consumer.layer.pipe(Layer.provide(Layer.merge(fakeKinesis(options.shards), store)))),
      Effect.provideService(References.MinimumLogLevel, "Error"),
      Effect.ignore,
      Effect.forkIn(scope)
    )
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    return {
      workerId,
      held,
      stop: Effect.andThen(Fiber.interrupt(fiber), Scope.close(scope, Exit.void)),
      kill: () => {
        dead = true
      }
    } satisfies ScaleWorker
  })

/** Whether every lease is held and the workers' shares differ by at most one. */
export const balanced = (workers: ReadonlyArray<ScaleWorker>, leases: number) => {
  const counts = workers.map((w) => w.held.size)
  const total = counts.reduce((a, b) => a + b, 0)
  return total === leases && Math.max(...counts) - Math.min(...counts) <= 1
}

/** Waits (polling the workers' own views, no store call) until `done`, at most `timeout`; the time it took. */
export const waitUntil = (done: () => boolean, timeout: Duration.Input) =>
  Effect.gen(function*() {
    const started = Date.now()
    const limit = Duration.toMillis(Duration.fromInputUnsafe(timeout))
    while (!done()) {
      if (Date.now() - started > limit) return { millis: Date.now() - started, reached: false }
      yield* Effect.sleep("50 millis")
    }
    return { millis: Date.now() - started, reached: true }
  })

/** A phase's figures: its length, and calls and capacity in total and per minute. */
export interface Phase {
  readonly name: string
  readonly seconds: number
  readonly reached: boolean
  readonly tally: Tally
}

export const perMinute = (phase: Phase, values: Record<string, number>) =>
  Object.fromEntries(Object.entries(values).map(([k, v]) => [k, (v * 60) / phase.seconds]))

export const sum = (values: Record<string, number>) => Object.values(values).reduce((a, b) => a + b, 0)

const READS = new Set(["Scan", "Query", "GetItem", "GetItem(lock)", "BatchGetItem"])

/** Read and write capacity units of a tally. */
export const units = (tally: Tally) => {
  let read = 0
  let write = 0
  for (const [operation, value] of Object.entries(tally.capacity)) {
    if (READS.has(operation)) read += value
    else write += value
  }
  return { read, write }
}

// --- item sizes --------------------------------------------------------------------------------

type Value = {
  S?: string
  N?: string
  SS?: Array<string>
  NS?: Array<string>
  BOOL?: boolean
  NULL?: boolean
  M?: Record<string, Value>
  L?: Array<Value>
}

/**
 * An item's size as DynamoDB bills it: names and string values by UTF-8 length, numbers by about one byte per two
 * significant digits plus one, 3 bytes of overhead per map or list.
 */
export const itemSize = (item: Record<string, Value>): number =>
  Object.entries(item).reduce((size, [name, value]) => size + Buffer.byteLength(name) + valueSize(value), 0)

const numberSize = (n: string) => Math.ceil(n.replace(/^-|\.|^0+|e.*$/g, "").length / 2) + 1
const valueSize = (v: Value): number =>
  v.S !== undefined
    ? Buffer.byteLength(v.S)
    : v.N !== undefined
    ? numberSize(v.N)
    : v.SS !== undefined
    ? v.SS.reduce((s, x) => s + Buffer.byteLength(x), 0)
    : v.NS !== undefined
    ? v.NS.reduce((s, x) => s + numberSize(x), 0)
    : v.M !== undefined
    ? 3 + itemSize(v.M) + Object.keys(v.M).length
    : v.L !== undefined
    ? 3 + v.L.reduce((s, x) => s + 1 + valueSize(x), 0)
    : 1

// --- the KCL's call pattern, modelled ------------------------------------------------------------

/** Per minute (steady) or per moved lease (rebalance): calls and capacity units by operation. */
export interface Model {
  readonly calls: Record<string, number>
  readonly read: number
  readonly write: number
}

const rcu = (bytes: number, consistent: boolean) => Math.ceil(bytes / 4096) * (consistent ? 1 : 0.5)
const wcu = (bytes: number) => Math.max(1, Math.ceil(bytes / 1024))

/**
 * What the KCL's lease coordination costs per minute in steady state, from its call pattern (read in
 * awslabs/amazon-kinesis-client v3.5.1) and the item sizes measured on our table (the same item format), with the
 * KCL's defaults: `LeaseManagementConfig.failoverTimeMillis` 10,000, `epsilonMillis` 25, `consistentReads` false.
 *
 * KCL 2.x (lease-count assignment, every worker for itself):
 * - `DynamoDBLeaseRenewer` renews every held lease (one conditional UpdateItem each) every
 *   `CommonCalculations.getRenewerTakerIntervalMillis` = failover / 3 − epsilon = 3,308 ms.
 * - `DynamoDBLeaseTaker` runs every `takerIntervalMillis` = (failover + epsilon) × 2 = 20,050 ms on every worker
 *   (`DynamoDBLeaseCoordinator`, fixed delay) and starts with `listLeases`: a Scan of the whole table, eventually
 *   consistent (`DynamoDBLeaseRefresher` sets no ConsistentRead on its scans).
 *
 * KCL 3.x (worker-utilization-aware assignment by a leader):
 * - the same renewer (its renewals also write `throughputKBps`);
 * - `DynamoDBLeaseDiscoverer` on every worker every `leaseAssignmentIntervalMillis` / 2 − epsilon = 9,975 ms
 *   (`leaseAssignmentIntervalMillis` defaults to 2 × failover): a Query of `LeaseOwnerToLeaseKeyIndex` (keys only, so
 *   eventually consistent) for its own lease keys, and a GetItem per lease newly assigned to it;
 * - `LeaseAssignmentManager.performAssignment` every `leaseAssignmentIntervalMillis` = 20,000 ms on every worker
 *   (fixed delay), which returns at once unless `DynamoDBLockBasedLeaderDecider.isLeader`: the leader scans the table
 *   (`MigrationAwareLAMDataManager.loadData`: leases and `WorkerMetricStats` entities, one Scan) and assigns;
 * - `isLeader` reads the lock item (one GetItem) on every call for the leader, at most once per heartbeat period
 *   (`dynamoDbLockBasedLeaderHeartbeatPeriodInMillis` 30,000) for the others: here 2 per minute each, an upper bound;
 *   the lock client's heartbeat is one UpdateItem per 30 s by the leader;
 * - `WorkerMetricStatsReporter` writes the worker's `WorkerMetricStats` item every `workerMetricsReporterFreqInMillis`
 *   = 30,000 ms on every worker (one write each).
 */
export const kclSteadyState = (options: {
  readonly leases: number
  readonly workers: number
  /** An average lease item, in bytes as DynamoDB bills it. */
  readonly leaseItemBytes: number
}) => {
  const { leases, leaseItemBytes, workers } = options
  const epsilon = 25
  const failover = 10_000
  const renewer = failover / 3 - epsilon
  const taker = (failover + epsilon) * 2
  const assignment = 2 * failover
  const discoverer = assignment / 2 - epsilon
  const perMinute = (intervalMillis: number) => 60_000 / intervalMillis
  const tableBytes = leases * leaseItemBytes
  const renewals = leases * perMinute(renewer)
  const kcl2Scans = workers * perMinute(taker)
  const kcl2: Model = {
    calls: { UpdateItem: renewals, Scan: kcl2Scans },
    read: kcl2Scans * rcu(tableBytes, false),
    write: renewals * wcu(leaseItemBytes)
  }
  // KCL 3.x items carry `throughputKBps` (a double, ~8 bytes plus its 13-byte name); a WorkerMetricStats item holds
  // a few metric series of 10 values each: under 1 KB.
  const kcl3LeaseBytes = leaseItemBytes + 13 + 8
  const workerMetricBytes = 600
  const kcl3TableBytes = leases * kcl3LeaseBytes + workers * workerMetricBytes
  // A Query of the index is billed by its entries' sizes: `leaseOwner` and `leaseKey` (names and values, here
  // `worker-12` and `shardId-000000000123`) and 100 bytes of overhead per entry.
  const perWorker = leases / workers
  const indexEntryBytes = "leaseOwner".length + 9 + "leaseKey".length + 20 + 100
  const queries = workers * perMinute(discoverer)
  const lamScans = perMinute(assignment)
  const lockReads = lamScans + (workers - 1) * 2
  const lockWrites = 2
  const metricWrites = workers * 2
  const kcl3: Model = {
    calls: {
      UpdateItem: renewals + lockWrites + metricWrites,
      Scan: lamScans,
      Query: queries,
      GetItem: lockReads
    },
    read: lamScans * rcu(kcl3TableBytes, false) + queries * rcu(perWorker * indexEntryBytes, false) +
      lockReads * rcu(200, false),
    write: renewals * wcu(kcl3LeaseBytes) + lockWrites + metricWrites * wcu(workerMetricBytes)
  }
  return { kcl2, kcl3 }
}

// --- the phases ----------------------------------------------------------------------------------

export interface RunOptions {
  readonly shards: number
  readonly workers: number
  readonly lease: Consumer.LeaseSettings
  /** How long the steady state is measured. */
  readonly steady: Duration.Input
  /** The longest a start-up, join or failover phase may take before it is reported as not reached. */
  readonly phaseTimeout: Duration.Input
  readonly applicationName: string
  readonly log?: ((line: string) => void) | undefined
}

/**
 * Start-up (all workers at once on an empty table, until every lease is held and the shares differ by at most one),
 * steady state, a worker joining (until balanced again), a worker killed (until its leases are held by the others).
 * Needs the emulator's client configuration; the workers run in the current scope.
 */
export const run = (config: DynamoEmulator.DynamoEmulator["Service"]["clientConfig"], options: RunOptions) =>
  Effect.gen(function*() {
    const log = options.log ?? (() => {})
    const counter = countingClients(config)
    yield* Effect.addFinalizer(() => Effect.sync(() => counter.destroy()))
    const scaleOptions: ScaleOptions = {
      applicationName: options.applicationName,
      shards: openShards(options.shards),
      sdk: counter.make,
      lease: options.lease
    }
    const phases: Array<Phase> = []
    const phase = <R>(name: string, wait: Effect.Effect<{ millis: number; reached: boolean }, never, R>) =>
      Effect.gen(function*() {
        counter.take()
        const { millis, reached } = yield* wait
        const p: Phase = { name, seconds: millis / 1000, reached, tally: counter.take() }
        phases.push(p)
        const u = units(p.tally)
        log(
          `${name}: ${p.seconds.toFixed(1)} s${reached ? "" : " (NOT reached)"}, ${sum(p.tally.calls)} calls ${
            JSON.stringify(p.tally.calls)
          }, ${u.read.toFixed(1)} RCU, ${u.write.toFixed(1)} WCU; capacity ${
            JSON.stringify(p.tally.capacity)
          }; failed ${JSON.stringify(p.tally.failed ?? {})}`
        )
        return p
      })
    const workers: Array<ScaleWorker> = []
    const alive = () => workers.filter((w) => !killed.has(w.workerId))
    const killed = new Set<string>()
    yield* phase(
      "start-up",
      Effect.gen(function*() {
        for (let i = 0; i < options.workers; i++) workers.push(yield* startWorker(scaleOptions, `worker-${i}`))
        return yield* waitUntil(() => balanced(workers, options.shards), options.phaseTimeout)
      })
    )
    yield* phase(
      "steady",
      Effect.as(Effect.sleep(options.steady), {
        millis: Duration.toMillis(Duration.fromInputUnsafe(options.steady)),
        reached: true
      })
    )
    yield* phase(
      "join",
      Effect.gen(function*() {
        workers.push(yield* startWorker(scaleOptions, `worker-${options.workers}`))
        return yield* waitUntil(() => balanced(workers, options.shards), options.phaseTimeout)
      })
    )
    // Who leads (leader mode), read with a client that is not counted.
    const leaderNow = Effect.promise(async () => {
      const plain = new SdkDynamoDBClient({ ...config, maxAttempts: 1 })
      const lock = await plain.send(
        new GetItemCommand({
          TableName: options.applicationName,
          Key: { leaseKey: { S: "Leader" } },
          ConsistentRead: true
        })
      )
      plain.destroy()
      return lock.Item?.ownerName?.S
    })
    const failover = (name: string, pick: Effect.Effect<ScaleWorker>) =>
      phase(
        name,
        Effect.gen(function*() {
          const victim = yield* pick
          const leader = yield* leaderNow
          if (leader !== undefined) log(`killing ${victim.workerId}; the leader is ${leader}`)
          killed.add(victim.workerId)
          victim.kill()
          // Its view of what it holds is what the table still says it holds.
          const orphaned = new Set(victim.held)
          return yield* waitUntil(
            () => [...orphaned].every((key) => alive().some((w) => w.held.has(key))),
            options.phaseTimeout
          )
        })
      )
    yield* failover("failover", Effect.succeed(workers[0]!))
    // In leader mode, the leader killed: its leases wait for a new leader as well.
    if (options.lease.coordination === "leader") {
      yield* failover(
        "leader failover",
        Effect.map(leaderNow, (leader) => alive().find((w) => w.workerId === leader) ?? alive()[0]!)
      )
    }
    yield* Effect.forEach(workers, (w) => w.stop, { concurrency: "unbounded", discard: true })
    return phases
  })
