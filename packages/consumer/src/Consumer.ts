/**
 * The Kinesis consumer: every shard of a stream as its own `Stream` of records, with a
 * checkpointer, spread over the workers sharing an application name through leases.
 *
 * - {@link shardedStream}: a stream of {@link ShardStream}s, one per shard this worker holds;
 *   process them in parallel with `Stream.flatMap(…, { concurrency: "unbounded" })`.
 * - {@link consumeWith}: the common case — an effect per record, checkpoints every N records or
 *   T, an optional error handling mode.
 *
 * Needs the {@link Consumer} service ({@link layer}), which needs a `Client` from
 * `@effect-kinesis/core` and a `LeaseRepository` (in memory, DynamoDB, …); swapping the lease
 * store changes nothing else.
 *
 * What it reports, by default:
 *
 * - Metrics: the KCL's, into a `MetricsCollector` when one is in the context ({@link MetricsSettings}).
 * - Spans (Effect's tracer; children of the span the consumer runs in): `kinesis.consumer.batch`
 *   per fetched batch (stream, shard, records, millisBehindLatest, first and last sequence
 *   number), `kinesis.consumer.process` per batch handed to the `consumeWith` handler (no span
 *   per record), `kinesis.consumer.checkpoint` (stream, shard, sequence number), and
 *   `kinesis.lease.take` / `renew` / `release` (shard, owner, counter; a take says whether the lease
 *   was free, expired or stolen, and from whom).
 * - Logs, annotated with `applicationName`, `stream`, `workerId` and `shardId`: lease hand-offs at
 *   info (taken, stolen, lost, released, created, deleted, shard ended, worker joined or left), a
 *   lease that expired under this worker and failed background rounds at warning, retries at
 *   debug; never record data, nor a deserializer's message (it may quote the data).
 *
 * @since 0.1.0
 */
import type { ChildShard } from "@aws-sdk/client-kinesis"
import { Client, ExtendedSequenceNumber, type KinesisError, MetricsCollector, type Serde } from "@effect-kinesis/core"
import {
  Clock,
  Config,
  Context,
  Deferred,
  Duration,
  Effect,
  Layer,
  Option,
  References,
  Result,
  Schedule,
  type Scope,
  Stream
} from "effect"
import { randomUUID } from "node:crypto"
import { hostname } from "node:os"
import type { Checkpointable, Checkpointer } from "./Checkpointer.ts"
import type { ConsumerControl } from "./ConsumerControl.ts"
import { type ConsumerError, RecordDecodeFailed } from "./ConsumerError.ts"
import type { ConsumerRecord } from "./ConsumerRecord.ts"
import * as DiagnosticEvent from "./DiagnosticEvent.ts"
import type * as EnhancedFanOut from "./EnhancedFanOut.ts"
import * as ErrorHandling from "./ErrorHandling.ts"
import * as ApplicationLeases from "./internal/applicationLeases.ts"
import * as InternalCheckpointer from "./internal/checkpointer.ts"
import * as ConsumerMetrics from "./internal/consumerMetrics.ts"
import * as InternalControl from "./internal/control.ts"
import * as FanOutFetcher from "./internal/fanOutFetcher.ts"
import * as LeaseCoordinator from "./internal/leaseCoordinator.ts"
import * as Partitioned from "./internal/partitioned.ts"
import * as PollingFetcher from "./internal/pollingFetcher.ts"
import * as RecordDecoder from "./internal/recordDecoder.ts"
import type { FetchedBatch, ShardFetcher } from "./internal/shardFetcher.ts"
import * as StreamConsumer from "./internal/streamConsumer.ts"
import * as ValidateSettings from "./internal/validateSettings.ts"
import { LeaseRepository } from "./LeaseRepository.ts"
import * as ShardAssignment from "./ShardAssignment.ts"

/**
 * Where to start a shard that has no checkpoint yet: its oldest record (`"TRIM_HORIZON"`, the
 * default), records written from now on (`"LATEST"`), or the first record at or after a time.
 * Child shards of a split or merge always start at their beginning.
 *
 * Across resharding: with `"TRIM_HORIZON"` every shard still in the stream is read, parents
 * before children. With `atTimestamp`, the shards that were open at that time are read from it,
 * also those closed since, and every shard opened after it from its beginning, parents before
 * children; shards that closed before the time are not read, and a time older than the stream
 * reads everything, as `"TRIM_HORIZON"`. With `"LATEST"` only the shards open at the start are
 * read (from their latest record), and their descendants.
 *
 * @example
 * ```ts
 * import type { Consumer } from "@effect-kinesis/consumer"
 *
 * const sinceMidnight: Consumer.InitialPosition = { atTimestamp: new Date("2026-01-01T00:00:00Z") }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type InitialPosition = "TRIM_HORIZON" | "LATEST" | { readonly atTimestamp: Date }

/**
 * Polling settings.
 *
 * @example
 * ```ts
 * import type { Consumer } from "@effect-kinesis/consumer"
 *
 * const fetch: Consumer.FetchSettings = { batchSize: 1000, pollInterval: "500 millis" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface FetchSettings {
  /** Records per `GetRecords` call (1–10000). Default 10000. */
  readonly batchSize?: number | undefined
  /** Wait between calls once the shard is caught up. Default 1 second. */
  readonly pollInterval?: Duration.Input | undefined
  /** Kinesis allows 5 `GetRecords` calls per second per shard, shared by all consumers. Default 5. */
  readonly maxCallsPerSecond?: number | undefined
  /** Batches fetched ahead of a slow processor, per shard. Default 2. */
  readonly bufferedBatches?: number | undefined
  /**
   * Backoff for throttling and transient errors (retried while the schedule recurs; errors that
   * retrying cannot fix fail at once). Default: exponential from 200 ms, capped at 10 s, jittered,
   * forever.
   */
  readonly retrySchedule?: Schedule.Schedule<unknown, KinesisError.KinesisError> | undefined
}

/**
 * Lease timing. A lease is expired when its counter has not moved for `expiry` on the observer's
 * clock; its owner renews it every `renewInterval` and stops processing (self-fencing) once its
 * last successful renewal is `expiry` old.
 *
 * @example
 * ```ts
 * import type { Consumer } from "@effect-kinesis/consumer"
 *
 * const lease: Consumer.LeaseSettings = { expiry: "20 seconds", renewInterval: "5 seconds" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface LeaseSettings {
  /**
   * Default 10 seconds (the KCL's failover time). A worker that dies without releasing its leases
   * (killed, partitioned) has its shards taken over about this long after its last renewal: at the
   * first scan that finds them expired, by a worker below its fair share, else, a take interval
   * later, by one at its share. On a large table, which each worker reads about once per take
   * interval, the last of them may wait up to a take interval more.
   */
  readonly expiry?: Duration.Input | undefined
  /** Default 3 seconds; must be well below `expiry`. */
  readonly renewInterval?: Duration.Input | undefined
  /**
   * How often to steal toward a fair share; also how long an expired or released lease waits for a
   * worker below its share before a worker at its share takes it (workers that died recently still
   * count toward the share until their leases expire). Default 10 seconds.
   */
  readonly takeInterval?: Duration.Input | undefined
  /**
   * The pace of the reads of the lease table (one consistent scan each) for leases released by a
   * worker shutting down, expired leases and new leases: each worker reads about one 4 KB read
   * unit's worth (some 16 leases) per scan interval, so every scan interval on a small table and up
   * to once per take interval on a large one (1,000 leases: every 10 s, jittered), and at once when
   * a round found work in motion or a shard ended. A hand-off another worker asks of this one, or
   * a lease taken from it, is found at its next renewal; a hand-off toward it is checked every
   * scan interval by reading those leases alone. Default 500 milliseconds.
   */
  readonly scanInterval?: Duration.Input | undefined
  /** How often to list the stream's shards (also right after a shard ends). Default 30 seconds. */
  readonly shardSyncInterval?: Duration.Input | undefined
  /**
   * Delete, at every shard sync, the leases of shards read to their end once their parents'
   * leases are gone and a child has started (`Lease.isFinished`), parents first as the KCL's
   * lease cleanup does, so that the lease table does not grow with every reshard: it keeps the
   * open shards' leases, and a finished parent only until one of its children gets a record.
   * Default `true`.
   */
  readonly cleanupFinished?: boolean | undefined
  /**
   * Who assigns leases. `"workers"` (default): every worker reads the lease table and takes
   * toward its fair share itself. `"leader"`: one worker, holding the leader lock (KCL 3.x's
   * `LeaderLock` item), reads the table every two expiries and assigns leases to the others
   * (taking free or expired ones on their behalf, handing held ones over for balance); the others
   * look up only their own lease keys (`listOwnedKeys`, KCL 3.x's `LeaseOwnerToLeaseKeyIndex` on
   * DynamoDB: the table with its owner index, `leaseOwnerIndex: "create"`) every expiry. Reads of
   * the table then no longer grow with the number of workers (1,000 shards × 20 workers: about
   * 1/34–1/50 of the reads, below KCL 3.x's), for a slower takeover of a dead worker's leases (31–52 s
   * at the default timing in our runs, against about 20 s; the leader's too). A worker holding
   * no lease (one joining) takes toward its share as in `"workers"` mode until it holds one. Needs
   * a store with `leaderLock` and `listOwnedKeys` (the in-memory and DynamoDB ones), else the
   * consumer fails at start with `InvalidSetting`; not with a manual `ShardAssignment`.
   */
  readonly coordination?: "workers" | "leader" | undefined
}

/**
 * The KCL's metrics, recorded into the `MetricsCollector` of the context (from
 * `@effect-kinesis/cloudwatch`, or `MetricsCollector.layer`) under the KCL's names, units,
 * operations and dimensions, so that dashboards and alarms built for the KCL work unchanged.
 * Nothing is recorded when no collector is provided.
 *
 * `RecordsProcessed` and `DataBytesProcessed` count the user records handed to your code (after
 * deaggregation, past the checkpoint), per fetched batch, as the KCL counts the records it passes
 * to `processRecords`; `ProcessTask` `Time`/`Success` and `RecordProcessor.processRecords.Time`
 * time the handler per batch in `consumeWith` only (with `shardedStream` the library does not see
 * your processing).
 *
 * @example
 * ```ts
 * import type { Consumer } from "@effect-kinesis/consumer"
 *
 * const metrics: Consumer.MetricsSettings = { level: "summary", dimensions: ["ShardId"] }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface MetricsSettings {
  /**
   * `"none"`, `"summary"` (the metrics the KCL marks SUMMARY) or `"detailed"` (also per-call
   * success and latency of GetRecords, lease reads and writes). Default `"detailed"`, the KCL's.
   */
  readonly level?: MetricsCollector.MetricsLevel | undefined
  /** CloudWatch namespace. Default: the application name, as the KCL. */
  readonly namespace?: string | undefined
  /**
   * The dimensions besides `Operation` (always on): `"ShardId"`, `"WorkerIdentifier"`. A metric
   * whose dimension is turned off is aggregated over its values (all shards, all workers). Default:
   * both, the KCL's default (`ALL`).
   */
  readonly dimensions?: ReadonlyArray<"ShardId" | "WorkerIdentifier"> | undefined
}

/**
 * Options of {@link shardedStream}.
 *
 * @example
 * ```ts
 * import { Serde } from "@effect-kinesis/core"
 * import type { Consumer } from "@effect-kinesis/consumer"
 *
 * const options: Consumer.ShardedStreamOptions<string> = {
 *   stream: "orders",
 *   applicationName: "billing",
 *   deserializer: Serde.string,
 *   initialPosition: "LATEST"
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ShardedStreamOptions<A> {
  /** The stream, by name or ARN. */
  readonly stream: Client.StreamId
  /**
   * Names the group of workers sharing the work (and, by convention, the lease table the
   * `LeaseRepository` layer uses). Annotates the consumer's logs.
   */
  readonly applicationName: string
  /** Unique per worker. Default: host name and a random suffix. */
  readonly workerId?: string | undefined
  /** Turns record data into `A`, e.g. `Serde.string`, `Serde.json(schema)`, `Serde.bytes`. */
  readonly deserializer: Serde.Serde<A>
  /** Default `"TRIM_HORIZON"`. */
  readonly initialPosition?: InitialPosition | undefined
  /** Polling settings (ignored with `enhancedFanOut`). */
  readonly fetch?: FetchSettings | undefined
  /**
   * Receive records through enhanced fan-out (`SubscribeToShard`) instead of polling: `true` for
   * the defaults, or settings. The application registers one stream consumer (named after it by
   * default), shared by all its workers; records, checkpoints, aggregation and resharding behave
   * as with polling.
   *
   * `SubscribeToShard` needs the `Client`'s HTTP handler to be `"http2"` on AWS (its default) and
   * `"http1"` on kinesis-mock. Default: polling.
   */
  readonly enhancedFanOut?: boolean | EnhancedFanOut.Settings | undefined
  readonly lease?: LeaseSettings | undefined
  /**
   * Retries of checkpoint writes on lease store errors (never past the lease's expiry). Default:
   * exponential from 100 ms, 5 times.
   */
  readonly checkpointRetrySchedule?: Schedule.Schedule<unknown, unknown> | undefined
  /** Default `ShardAssignment.balanced()`. */
  readonly shardAssignment?: ShardAssignment.ShardAssignment | undefined
  /** Called with every diagnostic event (they are recorded as metrics in any case). */
  readonly onDiagnostic?: ((event: DiagnosticEvent.DiagnosticEvent) => Effect.Effect<void>) | undefined
  /** The KCL's CloudWatch metrics, when a `MetricsCollector` is provided: see {@link MetricsSettings}. */
  readonly metrics?: MetricsSettings | undefined
  /**
   * What `ShardStream.records` (and so `consumeWith` without `errorHandling`) does with a record
   * the deserializer rejects: see {@link DecodeFailureHandling}. Default `"skip"`: logged as a
   * warning, reported as a `RecordUndecodable` diagnostic event, and checkpointed past. With
   * `ShardStream.results` or `errorHandling` such records reach your code as values instead.
   */
  readonly onDecodeFailure?: DecodeFailureHandling | undefined
  /**
   * How long a stop (interrupting the consumer, as a SIGTERM handler does) lets handlers that are
   * running finish: no new record is started, what finishes in time is checkpointed, then the
   * leases are released; a handler still running after it is interrupted and its record is
   * processed again by the next owner. Leases stay renewed meanwhile, so another worker cannot
   * take a shard while its handler still runs here. Applies to `consumeWith`, to
   * `ErrorHandling.processShard` and to `Checkpointer.stageOnSuccess`. Default 10 seconds: within
   * the 30 s a Kubernetes pod gets between SIGTERM and SIGKILL, with time left for the final
   * checkpoints and releases.
   */
  readonly shutdownGracePeriod?: Duration.Input | undefined
  /**
   * A handle from `ConsumerControl.make` to stop and start shards on this worker, pause and
   * resume it, and read its status while it runs. One consumer per handle at a time. With
   * `consumeWith` (no `errorHandling`) a pause takes effect between two records; elsewhere
   * (`errorHandling`, your own `shardedStream` pipeline) between two batches, so the records of a
   * batch already handed on are processed first.
   */
  readonly control?: ConsumerControl | undefined
}

/**
 * What to do with a record whose data the deserializer rejects (in `ShardStream.records` and
 * `consumeWith` without `errorHandling`):
 *
 * - `"skip"` (the default): log a warning, emit a `RecordUndecodable` diagnostic event, and go
 *   on; the checkpoint moves past it once the records before it are staged.
 * - `"fail"`: the shard's stream fails with `RecordDecodeFailed` (and so, unless caught, the
 *   whole consumer); the checkpoint stays before the record, so it fails again after a restart.
 * - a function: a dead-letter hook. It gets the `RecordDecodeFailed` (raw bytes, shard, sequence
 *   number, the deserializer's error) and answers `"skip"` or `"fail"`; the event is emitted too.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { Consumer } from "@effect-kinesis/consumer"
 *
 * const deadLetter: Consumer.DecodeFailureHandling = (failure) =>
 *   Effect.as(Effect.logError(`dead letter ${failure.record.shardId}/${failure.record.sequenceNumber}`), "skip")
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type DecodeFailureHandling =
  | "skip"
  | "fail"
  | ((failure: RecordDecodeFailed) => Effect.Effect<"skip" | "fail">)

/**
 * One shard held by this worker. Consume **one** of `records` and `results`, once (each runs the shard's
 * fetcher; a second reader while one runs is a defect). The stream ends when the shard has been read to its end, and ends early — without a
 * checkpoint — when the lease is lost. The last staged record is checkpointed when it ends, fails
 * or is interrupted.
 *
 * **Stage every record** (`checkpointer.stage`, `stageOnSuccess`, …) once it is processed, also
 * ones you skip: a shard is complete — `SHARD_END` checkpointed, its child shards released for
 * processing — only if, when its stream ends, the last record delivered has been staged. Records
 * still in flight in your pipeline then (concurrent `mapEffect`, buffers) or never staged leave
 * the checkpoint at the last staged record; the lease is released and this worker does not take
 * it again, so another worker (or the next run) resumes the shard from there. `consumeWith`
 * stages for you.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import type { Consumer } from "@effect-kinesis/consumer"
 *
 * const handle = (shard: Consumer.ShardStream<string>) =>
 *   shard.records.pipe(
 *     Stream.tap((record) => Effect.log(`${shard.shardId}: ${record.data}`)),
 *     Stream.tap(shard.checkpointer.stage),
 *     shard.checkpointer.checkpointBatched({ records: 1000, interval: "5 seconds" })
 *   )
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ShardStream<A> {
  readonly shardId: string
  /**
   * Records in order. A record that cannot be decoded is handled per the `onDecodeFailure`
   * option (by default skipped, with a warning and a `RecordUndecodable` event).
   */
  readonly records: Stream.Stream<ConsumerRecord<A>, KinesisError.KinesisError | RecordDecodeFailed>
  /** The same records, with undecodable ones as failures instead of failing the stream. */
  readonly results: Stream.Stream<Result.Result<ConsumerRecord<A>, RecordDecodeFailed>, KinesisError.KinesisError>
  readonly checkpointer: Checkpointer
}

/**
 * The consumer service.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Serde } from "@effect-kinesis/core"
 * import { Consumer } from "@effect-kinesis/consumer"
 *
 * const program = Effect.gen(function*() {
 *   const consumer = yield* Consumer.Consumer
 *   yield* consumer.shardedStream({ stream: "orders", applicationName: "billing", deserializer: Serde.string }).pipe(
 *     Stream.flatMap((shard) => shard.records, { concurrency: "unbounded" }),
 *     Stream.runDrain
 *   )
 * })
 * ```
 *
 * @since 0.1.0
 * @category services
 */
export class Consumer extends Context.Service<Consumer, {
  readonly shardedStream: <A>(options: ShardedStreamOptions<A>) => Stream.Stream<ShardStream<A>, ConsumerError>
}>()("@effect-kinesis/consumer/Consumer") {}

const resolveFetch = (settings: FetchSettings = {}): PollingFetcher.PollingSettings => ({
  batchSize: settings.batchSize ?? 10_000,
  pollInterval: Duration.fromInputUnsafe(settings.pollInterval ?? "1 second"),
  maxCallsPerSecond: settings.maxCallsPerSecond ?? 5,
  bufferedBatches: settings.bufferedBatches ?? 2,
  retrySchedule: settings.retrySchedule ?? Schedule.exponential("200 millis").pipe(
    Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(10)))),
    Schedule.jittered
  )
})

const resolveLease = (
  settings: LeaseSettings = {}
): Omit<LeaseCoordinator.LeaseSettings, "shutdownGracePeriod"> => {
  const resolved = {
    expiry: Duration.fromInputUnsafe(settings.expiry ?? "10 seconds"),
    renewInterval: Duration.fromInputUnsafe(settings.renewInterval ?? "3 seconds"),
    takeInterval: Duration.fromInputUnsafe(settings.takeInterval ?? "10 seconds"),
    scanInterval: Duration.fromInputUnsafe(settings.scanInterval ?? "500 millis"),
    shardSyncInterval: Duration.fromInputUnsafe(settings.shardSyncInterval ?? "30 seconds"),
    cleanupFinished: settings.cleanupFinished ?? true,
    coordination: settings.coordination ?? "workers"
  }
  // Checked before (`ValidateSettings.shardedStream`): renewInterval < expiry.
  return resolved
}

const initialCheckpoint = (position: InitialPosition | undefined): ExtendedSequenceNumber.ExtendedSequenceNumber =>
  position === undefined || position === "TRIM_HORIZON"
    ? ExtendedSequenceNumber.trimHorizon
    : position === "LATEST"
    ? ExtendedSequenceNumber.latest
    : ExtendedSequenceNumber.atTimestamp

const defaultCheckpointRetry: Schedule.Schedule<unknown, unknown> = Schedule.exponential("100 millis").pipe(
  Schedule.upTo({ times: 5 })
)

/**
 * The service {@link layer} provides, built from the `Client` and the `LeaseRepository` of the
 * context. In every package `make` builds the value its module's `layer` provides: here the
 * consumer service, `Producer.make` a producer, `DynamoDBLeaseRepository.make` a lease store,
 * `MetricsCollector.make` a collector. Programs usually provide the layer and call
 * {@link consumeWith} or {@link shardedStream}.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Consumer } from "@effect-kinesis/consumer"
 *
 * // What `Consumer.layer` is.
 * const ConsumerLive = Layer.effect(Consumer.Consumer, Consumer.make)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Consumer["Service"], never, Client.Client | LeaseRepository> = Effect.gen(
  function*() {
    const client = yield* Client.Client
    const repository = yield* LeaseRepository
    return Consumer.of({
      shardedStream: <A>(options: ShardedStreamOptions<A>) =>
        Stream.unwrap(Effect.suspend(() => {
          const workerId = options.workerId ?? `${hostname()}-${randomUUID().slice(0, 8)}`
          return Effect.gen(function*() {
            const invalid = ValidateSettings.shardedStream(options)
            if (invalid !== undefined) return yield* invalid
            const store = yield* ApplicationLeases.forConsumer(repository, options.applicationName)
            if (
              options.lease?.coordination === "leader" &&
              (store.leaderLock === undefined || store.listOwnedKeys === undefined)
            ) {
              return yield* ValidateSettings.leaderModeUnsupported
            }
            const onDiagnostic = options.onDiagnostic
            const emit = (event: DiagnosticEvent.DiagnosticEvent) =>
              onDiagnostic === undefined
                ? DiagnosticEvent.recordMetrics(event)
                : Effect.andThen(DiagnosticEvent.recordMetrics(event), onDiagnostic(event))
            const collector = yield* Effect.serviceOption(MetricsCollector.MetricsCollector)
            const metrics = ConsumerMetrics.make({
              collector: Option.getOrUndefined(collector),
              level: options.metrics?.level ?? "detailed",
              namespace: options.metrics?.namespace ?? options.applicationName,
              dimensions: new Set(options.metrics?.dimensions ?? ["ShardId", "WorkerIdentifier"]),
              workerId
            })
            // Claimed first: a second consumer on one handle fails before it takes a lease.
            const control = options.control === undefined ? undefined : yield* InternalControl.attach(options.control)
            // Before any lease is taken: a worker whose stream consumer cannot be registered holds none.
            const fetcher = yield* makeFetcher(client, options, metrics)
            const gracePeriod = Duration.fromInputUnsafe(options.shutdownGracePeriod ?? "10 seconds")
            const timestamp = typeof options.initialPosition === "object"
              ? options.initialPosition.atTimestamp
              : undefined
            const coordinator = yield* LeaseCoordinator.make({
              workerId,
              stream: options.stream,
              client,
              repository: store,
              initialPosition: initialCheckpoint(options.initialPosition),
              timestamp,
              settings: { ...resolveLease(options.lease), shutdownGracePeriod: gracePeriod },
              assignment: options.shardAssignment ?? ShardAssignment.balanced(),
              emit,
              metrics,
              holds: control?.holds
            })
            if (control !== undefined) control.coordinator = coordinator
            const context: ShardContext<A> = {
              client,
              stream: options.stream,
              coordinator,
              fetcher,
              emit,
              deserializer: options.deserializer,
              timestamp,
              checkpointRetrySchedule: options.checkpointRetrySchedule ?? defaultCheckpointRetry,
              gracePeriod,
              onDecodeFailure: options.onDecodeFailure ?? "skip",
              control,
              logAnnotations: { applicationName: options.applicationName, stream: options.stream, workerId }
            }
            return Stream.fromQueue(coordinator.acquired).pipe(Stream.map((owned) => makeShardStream(owned, context)))
          }).pipe(Effect.annotateLogs({ applicationName: options.applicationName, stream: options.stream, workerId }))
        }))
    })
  }
)

const makeFetcher = Effect.fnUntraced(function*<A>(
  client: Client.Client["Service"],
  options: ShardedStreamOptions<A>,
  metrics: ConsumerMetrics.ConsumerMetrics
): Effect.fn.Return<ShardFetcher, KinesisError.KinesisError, Scope.Scope> {
  const fanOut = options.enhancedFanOut === true ? {} : options.enhancedFanOut
  if (fanOut === undefined || fanOut === false) {
    return PollingFetcher.make(client, options.stream, resolveFetch(options.fetch), metrics.expiredIterator)
  }
  const consumerName = fanOut.consumerName ?? options.applicationName
  const consumer = yield* StreamConsumer.acquire(
    client,
    options.stream,
    consumerName,
    StreamConsumer.resolveSettings(fanOut)
  )
  return FanOutFetcher.make(client, options.stream, consumer.ConsumerARN!, FanOutFetcher.resolveSettings(fanOut))
})

interface ShardContext<A> {
  readonly client: Client.Client["Service"]
  readonly stream: Client.StreamId
  readonly coordinator: LeaseCoordinator.LeaseCoordinator
  readonly fetcher: ShardFetcher
  readonly emit: (event: DiagnosticEvent.DiagnosticEvent) => Effect.Effect<void>
  readonly deserializer: Serde.Serde<A>
  readonly timestamp: Date | undefined
  readonly checkpointRetrySchedule: Schedule.Schedule<unknown, unknown>
  readonly gracePeriod: Duration.Duration
  readonly onDecodeFailure: DecodeFailureHandling
  readonly control: InternalControl.ControlState | undefined
  readonly logAnnotations: Readonly<Record<string, string>>
}

const positionOf = (item: Checkpointable | RecordDecodeFailed) => {
  const record = item instanceof RecordDecodeFailed ? item.record : item
  return ExtendedSequenceNumber.make(record.sequenceNumber, record.subSequenceNumber)
}

// What a record not handled (a stop or a lost lease during a pause) answers in consumeWith's loop.
const SKIP = Symbol.for("@effect-kinesis/consumer/Consumer/skip")

// Whether the lease behind a shard stream made here is still held and not being stopped (the
// shard's `done`), for loops that outrun the stream.
const leases = new WeakMap<ShardStream<any>, LeaseCoordinator.OwnedLease>()
/** @internal For `BatchProcessing`, whose retries outrun the stream too. */
export const isActive = (shard: ShardStream<any>): () => boolean => {
  const owned = leases.get(shard)
  return owned === undefined ? () => true : () => owned.state === "active" && !Deferred.isDoneUnsafe(owned.done)
}

// The handler's time per batch in `consumeWith`: the KCL's `ProcessTask` `Success`/`Time` and
// `RecordProcessor.processRecords.Time` (the same measure here: no separate task around it).
const timeProcessing = (shard: ShardStream<any>) => {
  const metrics = leases.get(shard)?.metrics
  if (metrics === undefined || metrics.time === MetricsCollector.disabled) {
    return <X, E, R>(self: Effect.Effect<X, E, R>) => self
  }
  return <X, E, R>(self: Effect.Effect<X, E, R>): Effect.Effect<X, E, R> =>
    Effect.flatMap(
      Clock.currentTimeMillis,
      (startedAt) =>
        Effect.onExit(self, (exit) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) =>
            Effect.sync(() => {
              metrics.success.record(exit._tag === "Success" ? 1 : 0)
              metrics.time.record(now - startedAt)
              metrics.processRecordsTime.record(now - startedAt)
            })))
    )
}

// One span per batch handed to the handler, not per record: a span per record would cost more
// than many handlers.
const processSpan = (shard: ShardStream<any>, records: ReadonlyArray<ConsumerRecord<any>>) =>
  Effect.withSpan("kinesis.consumer.process", {
    attributes: {
      "kinesis.shard_id": shard.shardId,
      "kinesis.user_records": records.length,
      ...(records.length === 0 ? {} : {
        "kinesis.first_sequence_number": records[0]!.sequenceNumber,
        "kinesis.last_sequence_number": records[records.length - 1]!.sequenceNumber
      })
    }
  })

const makeShardStream = <A>(owned: LeaseCoordinator.OwnedLease, context: ShardContext<A>): ShardStream<A> => {
  const { coordinator, emit } = context
  const shardId = owned.shardId
  const start = owned.lease.checkpoint
  const internal = InternalCheckpointer.make({
    shardId,
    initial: start,
    write: (position, childShardIds) => coordinator.checkpoint(owned, position, childShardIds),
    retrySchedule: context.checkpointRetrySchedule,
    gracePeriod: context.gracePeriod,
    // `done` completes while the lease is still active only when the coordinator stops the shard.
    // A stop of this shard alone (`stopShard`) must not interrupt the other shards' streams.
    stopping: () => owned.state === "active" && Deferred.isDoneUnsafe(owned.done) && !owned.stopRequested
  })
  Partitioned.register(internal.checkpointer, () => owned.state === "active" && !Deferred.isDoneUnsafe(owned.done))
  owned.progress = internal.progress
  InternalControl.register(internal.checkpointer, context.control)
  owned.flush = Effect.catch(
    internal.checkpointer.checkpoint,
    (error) => Effect.logWarning(`final checkpoint of ${shardId} failed: ${error.message}`)
  )

  // Runs once the shard stream is over, however it ended: the last staged record is written, then
  // the lease is handed on (children created at shard end; released otherwise). A lost lease
  // gets neither: it is not ours to write. The shard ends only when it was read to its end and
  // every record delivered was staged: the user's pipeline may still hold records (buffers,
  // concurrency) when the records stream ends, and those must not be checkpointed past.
  const finish = (childShards: ReadonlyArray<ChildShard> | undefined) =>
    Effect.gen(function*() {
      owned.streams--
      if (owned.state !== "active") return
      // Parallel processing (`parallelism`) may still run records read before the end.
      yield* Partitioned.settled(internal.checkpointer)
      if (childShards !== undefined) {
        if (internal.allProcessed()) {
          yield* internal.stageShardEnd(childShards.map((child) => child.ShardId!))
        } else {
          yield* Effect.logWarning(
            `${shardId} was read to its end but not all its records were staged; not ending the shard`
          )
        }
      }
      const written = yield* Effect.result(internal.checkpointer.checkpoint)
      if (Result.isFailure(written)) {
        yield* Effect.logWarning(`final checkpoint of ${shardId} failed: ${written.failure.message}`)
        if (written.failure._tag === "ShardLeaseLost") return
      }
      if (internal.shardEndWritten()) return yield* coordinator.shardEnded(owned, childShards ?? [])
      yield* coordinator.park(owned)
    })

  const build = <B, E>(
    toStream: (decoded: RecordDecoder.DecodedBatch<A>) => Stream.Stream<B, E>
  ): Stream.Stream<B, E | KinesisError.KinesisError> =>
    Stream.unwrap(Effect.gen(function*() {
      const range = yield* hashKeyRange
      // Checked and counted with no wait in between. Two readers of one shard would each fetch
      // it, deliver every record twice and race each other's checkpoints.
      if (owned.streams > 0) {
        return yield* Effect.die(
          new Error(`${shardId} is already being read: consume one of ShardStream.records and .results, once`)
        )
      }
      const decoder = RecordDecoder.make({
        shardId,
        after: start,
        deserializer: context.deserializer,
        hashKeyRange: range,
        onDelivered: internal.delivered,
        onDropped: internal.dropped
      })
      owned.streams++
      const metrics = owned.metrics
      // Once per batch: the records handed on (the KCL's `RecordsProcessed`, `DataBytesProcessed`).
      const recordBatch = (batch: FetchedBatch, decoded: RecordDecoder.DecodedBatch<A>) => {
        // Also the lease's measured throughput (`ShardAssignment.byThroughput`).
        owned.fetchedBytes += decoded.bytes
        if (!metrics.enabled) return
        const n = decoded.count
        metrics.recordsProcessed.record(n)
        if (n === 0) metrics.dataBytesProcessed.record(0)
        else {
          metrics.dataBytesProcessed.recordStatistics({
            sampleCount: n,
            sum: decoded.bytes,
            minimum: decoded.minBytes,
            maximum: decoded.maxBytes
          })
        }
        if (batch.millisBehindLatest !== undefined) {
          metrics.millisBehindLatest.record(batch.millisBehindLatest)
          metrics.appMillisBehindLatest.record(batch.millisBehindLatest)
        }
      }
      let fetchedToEnd: ReadonlyArray<ChildShard> | undefined
      // Set once every record of the shard has been emitted: the upstream of the records ended.
      let childShards: ReadonlyArray<ChildShard> | undefined
      return context.fetcher.fetch(shardId, { position: start, timestamp: context.timestamp }, metrics).pipe(
        Stream.tap((batch) => {
          if (batch.shardEnd !== undefined) fetchedToEnd = batch.shardEnd.childShards
          owned.millisBehindLatest = batch.millisBehindLatest
          return emit({
            _tag: "PollComplete",
            workerId: coordinator.workerId,
            shardId,
            records: batch.records.length,
            millisBehindLatest: batch.millisBehindLatest
          })
        }),
        Stream.mapEffect((batch) =>
          Effect.tap(decoder.decode(batch.records), (decoded) => {
            recordBatch(batch, decoded)
            return Effect.andThen(
              Effect.annotateCurrentSpan("kinesis.user_records", decoded.count),
              Effect.andThen(
                Effect.forEach(decoded.dropped, (dropped) =>
                  emit({
                    _tag: "AggregateDropped",
                    workerId: coordinator.workerId,
                    shardId,
                    sequenceNumber: dropped.sequenceNumber,
                    userRecords: dropped.userRecords
                  }), { discard: true }),
                Effect.forEach(decoded.malformed, (malformed) =>
                  Effect.andThen(
                    Effect.logWarning(
                      `record ${malformed.sequenceNumber} of ${shardId} has a KPL aggregate's magic and MD5 but is malformed (${malformed.error.message}); delivered as a plain record`
                    ),
                    emit({
                      _tag: "AggregateMalformed",
                      workerId: coordinator.workerId,
                      shardId,
                      sequenceNumber: malformed.sequenceNumber,
                      reason: malformed.error.message
                    })
                  ), { discard: true })
              )
            )
          }).pipe(Effect.withSpan("kinesis.consumer.batch", { attributes: batchAttributes(batch) }))
        ),
        InternalControl.gateBatches(context.control),
        Stream.flatMap(toStream),
        Stream.concat(Stream.fromEffectDrain(Effect.sync(() => {
          childShards = fetchedToEnd
        }))),
        Stream.interruptWhen(Deferred.await(owned.done)),
        Stream.onExit(() => Effect.suspend(() => finish(childShards)))
      )
    })).pipe(Stream.updateService(References.CurrentLogAnnotations, (annotations) => ({
      ...annotations,
      ...context.logAnnotations,
      shardId
    })))

  const batchAttributes = (batch: FetchedBatch): Record<string, unknown> => {
    const records = batch.records
    const attributes: Record<string, unknown> = {
      "kinesis.stream": context.stream,
      "kinesis.shard_id": shardId,
      "kinesis.worker_id": coordinator.workerId,
      "kinesis.records": records.length
    }
    if (batch.millisBehindLatest !== undefined) attributes["kinesis.millis_behind_latest"] = batch.millisBehindLatest
    if (records.length > 0) {
      attributes["kinesis.first_sequence_number"] = records[0]!.SequenceNumber
      attributes["kinesis.last_sequence_number"] = records[records.length - 1]!.SequenceNumber
    }
    if (batch.shardEnd !== undefined) attributes["kinesis.shard_end"] = true
    return attributes
  }

  // Runs when the records stream reaches the failure, in order: a skipped record counts as
  // processed once the item before it is, so the checkpoint never passes records still in the
  // user's pipeline; a failing one leaves the checkpoint before it.
  const undecodable = (
    failure: RecordDecodeFailed,
    after: ExtendedSequenceNumber.ExtendedSequenceNumber | undefined
  ): Effect.Effect<void, RecordDecodeFailed> =>
    Effect.gen(function*() {
      const handling = context.onDecodeFailure
      const action = typeof handling === "function" ? yield* handling(failure) : handling
      yield* emit({
        _tag: "RecordUndecodable",
        workerId: coordinator.workerId,
        shardId,
        sequenceNumber: failure.record.sequenceNumber,
        subSequenceNumber: failure.record.subSequenceNumber,
        reason: failure.cause.message,
        action: action === "skip" ? "skipped" : "failed"
      })
      if (action === "fail") return yield* failure
      // Without the deserializer's message: it may quote the record's data.
      if (handling === "skip") {
        yield* Effect.annotateLogs(
          Effect.logWarning(
            `skipping a record that could not be decoded: ${failure.record.sequenceNumber}/${failure.record.subSequenceNumber}`
          ),
          {
            sequenceNumber: failure.record.sequenceNumber,
            subSequenceNumber: failure.record.subSequenceNumber
          }
        )
      }
      internal.skipped(after, positionOf(failure.record))
    })

  // Needed to drop aggregates routed to another shard. Leases written by other tools may lack it.
  const hashKeyRange = owned.lease.hashKeyRange !== undefined
    ? Effect.succeed(owned.lease.hashKeyRange)
    : Stream.runCollect(context.client.listShards(context.stream)).pipe(
      Effect.map((shards) => {
        const range = shards.find((shard) => shard.ShardId === shardId)?.HashKeyRange
        return range?.StartingHashKey !== undefined && range.EndingHashKey !== undefined
          ? { startingHashKey: range.StartingHashKey, endingHashKey: range.EndingHashKey }
          : undefined
      }),
      Effect.catch((error) =>
        Effect.as(
          Effect.logWarning(`hash key range of ${shardId} unknown, aggregates are not checked: ${error.message}`),
          undefined
        )
      )
    )

  const shard: ShardStream<A> = {
    shardId,
    checkpointer: internal.checkpointer,
    results: build((decoded) =>
      RecordDecoder.chunks(
        decoded,
        (chunk) =>
          chunk.items.map((item) => item instanceof RecordDecodeFailed ? Result.fail(item) : Result.succeed(item))
      )
    ),
    records: Stream.suspend(() => {
      // The last item of the chunk before, for a failure first in its chunk.
      let previous: ExtendedSequenceNumber.ExtendedSequenceNumber | undefined
      // A chunk at a time (see `RecordDecoder.chunks`).
      return build((batch) =>
        Stream.flatMap(RecordDecoder.chunks(batch, (chunk) => [chunk]), (decoded) => {
          const items = decoded.items
          const before = previous
          const last = items.at(-1)
          if (last !== undefined) previous = positionOf(last)
          if (decoded.failures === 0) return Stream.fromArray(items as Array<ConsumerRecord<A>>)
          const parts: Array<Stream.Stream<ConsumerRecord<A>, RecordDecodeFailed>> = []
          let from = 0
          items.forEach((item, i) => {
            if (!(item instanceof RecordDecodeFailed)) return
            if (i > from) parts.push(Stream.fromArray(items.slice(from, i) as Array<ConsumerRecord<A>>))
            parts.push(Stream.fromEffectDrain(undecodable(item, i === 0 ? before : positionOf(items[i - 1]!))))
            from = i + 1
          })
          if (from < items.length) parts.push(Stream.fromArray(items.slice(from) as Array<ConsumerRecord<A>>))
          return Stream.flatten(Stream.fromArray(parts))
        })
      )
    })
  }
  leases.set(shard, owned)
  return shard
}

/**
 * The consumer layer over a `Client` and a `LeaseRepository`.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Client } from "@effect-kinesis/core"
 * import { Consumer, LeaseRepository } from "@effect-kinesis/consumer"
 *
 * declare const leases: Layer.Layer<LeaseRepository.LeaseRepository>
 * const ConsumerLive = Consumer.layer.pipe(Layer.provide([Client.layer({ region: "eu-west-1" }), leases]))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Consumer, never, Client.Client | LeaseRepository> = Layer.effect(Consumer, make)

/**
 * The consumer layer with its Kinesis client configured from the environment (see
 * `Client.config`); only the lease store remains to be provided.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Consumer, LeaseRepository } from "@effect-kinesis/consumer"
 *
 * declare const leases: Layer.Layer<LeaseRepository.LeaseRepository>
 * const ConsumerLive = Consumer.layerConfig.pipe(Layer.provide(leases))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: Layer.Layer<Consumer, Config.ConfigError, LeaseRepository> = layer.pipe(
  Layer.provide(Client.layerConfig)
)

/**
 * The identity of a consumer read from Effect `Config` (environment variables by default), to
 * spread into {@link ShardedStreamOptions}:
 *
 * | variable | meaning |
 * |---|---|
 * | `KINESIS_STREAM` | stream name or ARN (required) |
 * | `KINESIS_APPLICATION_NAME` | application name (required) |
 * | `KINESIS_WORKER_ID` | worker id (default: host name and a random suffix) |
 * | `KINESIS_INITIAL_POSITION` | `TRIM_HORIZON` (default) or `LATEST` |
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Serde } from "@effect-kinesis/core"
 * import { Consumer } from "@effect-kinesis/consumer"
 *
 * const program = Effect.flatMap(Consumer.config, (identity) =>
 *   Consumer.consumeWith((record) => Effect.log(record.data), { ...identity, deserializer: Serde.string }))
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<{
  readonly stream: string
  readonly applicationName: string
  readonly workerId: string | undefined
  readonly initialPosition: InitialPosition
}> = Config.all({
  stream: Config.String("KINESIS_STREAM"),
  applicationName: Config.String("KINESIS_APPLICATION_NAME"),
  workerId: Config.option(Config.String("KINESIS_WORKER_ID")),
  initialPosition: Config.Literals(["TRIM_HORIZON", "LATEST"], "KINESIS_INITIAL_POSITION").pipe(
    Config.withDefault("TRIM_HORIZON" as const)
  )
}).pipe(Config.map((c) => ({
  stream: c.stream,
  applicationName: c.applicationName,
  workerId: Option.getOrUndefined(c.workerId),
  initialPosition: c.initialPosition
})))

/**
 * The shards this worker holds, each as a {@link ShardStream}. Fails with a typed error when the
 * stream is gone or the lease store fails for good; losing one lease ends that shard's stream
 * only.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Serde } from "@effect-kinesis/core"
 * import { Consumer } from "@effect-kinesis/consumer"
 *
 * const program = Consumer.shardedStream({ stream: "orders", applicationName: "billing", deserializer: Serde.string }).pipe(
 *   Stream.flatMap((shard) =>
 *     shard.records.pipe(
 *       Stream.mapEffect((record) => shard.checkpointer.stageOnSuccess(Effect.log(record.data), record)),
 *       shard.checkpointer.checkpointBatched({ records: 1000, interval: "5 seconds" })
 *     ), { concurrency: "unbounded" }),
 *   Stream.runDrain
 * )
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const shardedStream = <A>(
  options: ShardedStreamOptions<A>
): Stream.Stream<ShardStream<A>, ConsumerError, Consumer> =>
  Stream.unwrap(Effect.map(Effect.service(Consumer), (consumer) => consumer.shardedStream(options)))

/**
 * When `consumeWith` (and `BatchProcessing.consumeBatchesWith`) write checkpoints: after `records`
 * processed records or after `interval`, whichever comes first, as
 * `Checkpointer.checkpointBatched({ records, interval })` does in a pipeline of your own.
 *
 * @example
 * ```ts
 * import type { Consumer } from "@effect-kinesis/consumer"
 *
 * const checkpoint: Consumer.CheckpointSettings = { records: 500, interval: "2 seconds" }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface CheckpointSettings {
  /** Checkpoint after this many records… Default 1000. */
  readonly records?: number | undefined
  /** …or this long, whichever comes first. Default 5 seconds. */
  readonly interval?: Duration.Input | undefined
}

/**
 * Options of {@link consumeWith}.
 *
 * @example
 * ```ts
 * import { Serde } from "@effect-kinesis/core"
 * import { type Consumer, ErrorHandling } from "@effect-kinesis/consumer"
 *
 * const options: Consumer.ConsumeWithOptions<string, Error, never> = {
 *   stream: "orders",
 *   applicationName: "billing",
 *   deserializer: Serde.string,
 *   errorHandling: { mode: ErrorHandling.retryAndSkip(3) }
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ConsumeWithOptions<A, E, R> extends ShardedStreamOptions<A> {
  /** When to write checkpoints: see {@link CheckpointSettings}. Default every 1000 records or 5 seconds. */
  readonly checkpoint?: CheckpointSettings | undefined
  /** @deprecated Use `checkpoint: { records }`. */
  readonly checkpointBatchSize?: number | undefined
  /** @deprecated Use `checkpoint: { interval }`. */
  readonly checkpointInterval?: Duration.Input | undefined
  /**
   * What to do when the handler fails. Default: the failure fails the consumer (after the last
   * processed record is checkpointed).
   */
  readonly errorHandling?: ErrorHandling.Options<A, E, R> | undefined
  /**
   * Handlers running at a time per shard: records with the same partition key one after another
   * in shard order, different keys concurrently; the checkpoint only covers the contiguous prefix
   * of finished records (see `Parallel.processShard`). Default 1: one record at a time.
   */
  readonly parallelism?: number | undefined
}

/**
 * Runs `handler` for every record of every shard this worker holds, shards in parallel and each
 * shard in order (with `parallelism`, in order per partition key), checkpointing in batches.
 * Runs until interrupted (then starts no new record,
 * lets the handlers running finish within `shutdownGracePeriod`, checkpoints and releases its
 * leases) or until it fails. A record that cannot be decoded goes to `errorHandling` if given,
 * else is handled per `onDecodeFailure` (skipped, with a warning, by default).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Serde } from "@effect-kinesis/core"
 * import { Consumer } from "@effect-kinesis/consumer"
 *
 * const program = Consumer.consumeWith((record) => Effect.log(record.data), {
 *   stream: "orders",
 *   applicationName: "billing",
 *   deserializer: Serde.string
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const consumeWith = <A, E, R, R2 = never>(
  handler: (record: ConsumerRecord<A>) => Effect.Effect<unknown, E, R>,
  options: ConsumeWithOptions<A, E, R2>
): Effect.Effect<void, E | ConsumerError, R | R2 | Consumer> => {
  const invalid = ValidateSettings.consumeWith(options)
  if (invalid !== undefined) return Effect.fail(invalid)
  const batching = ValidateSettings.checkpointBatched(options)
  const errorHandling = options.errorHandling
  const parallelism = options.parallelism ?? 1
  return shardedStream(options).pipe(
    Stream.flatMap((shard) => {
      const processed: Stream.Stream<unknown, E | ConsumerError, R | R2> = parallelism > 1
        ? Partitioned.processShard(shard, handler, { parallelism, errorHandling })
        : errorHandling === undefined
        ? Stream.mapArrayEffect(shard.records, (records) => {
          // One effect per chunk, not per record: records are handled in order and each is staged
          // as soon as it is handled. A chunk can be large, so a lost lease or a stop ends it
          // part-way; a stop lets the record being handled finish.
          const active = isActive(shard)
          const stage = InternalCheckpointer.stageSyncFor(shard.checkpointer)
          const paused = InternalControl.pausedFor(shard.checkpointer)
          let stopping = false
          return Effect.as(
            InternalCheckpointer.letFinishFor(shard.checkpointer)(
              // A `whileLoop`, not a generator: a third of the runtime's cost per record.
              Effect.suspend(() => {
                let i = 0
                const go = () => !stopping && active()
                const next = () => handler(records[i]!)
                // While paused, wait before the next record; a stop or a lost lease ends the wait.
                const afterPause = Effect.andThen(
                  Effect.suspend(() => InternalControl.whilePaused(shard.checkpointer, () => !go())),
                  Effect.suspend(() => go() ? next() : Effect.succeed(SKIP))
                )
                return Effect.whileLoop({
                  while: () => i < records.length && go(),
                  body: (): Effect.Effect<unknown, E, R> => paused() ? afterPause : next(),
                  step: (result) => {
                    if (result !== SKIP) stage(records[i++]!)
                  }
                })
              }).pipe(processSpan(shard, records), timeProcessing(shard)),
              () => {
                stopping = true
              }
            ),
            records
          )
        })
        : ErrorHandling.processShard(shard, handler, errorHandling)
      return processed.pipe(shard.checkpointer.checkpointBatched(batching))
    }, { concurrency: "unbounded" }),
    Stream.runDrain
  )
}
