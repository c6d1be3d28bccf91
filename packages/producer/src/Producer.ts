/**
 * A high-throughput, reliable Kinesis producer: records are validated, buffered, batched into
 * PutRecords requests (optionally KPL-aggregated per shard), paced per shard with token buckets
 * that back off on throttling, retried with backoff and jitter, and flushed when the scope
 * closes. Every record is acknowledged exactly once, or fails with a typed
 * {@link ProducerError.ProducerError}.
 *
 * One record never fails its neighbours: each is checked before buffering against what Kinesis
 * validates per record (partition key of 1 to 256 UTF-16 code units, explicit hash key, data plus
 * the key's UTF-8 bytes within `maxRecordBytes`), and a request Kinesis still rejects as a whole
 * as invalid is split until the record at fault is alone and fails with `RecordRejected`.
 *
 * Ordering: by default the records of one partition key are stored in the order they were
 * offered, through parallel requests, throttling, errors and retries: a key never has two Kinesis
 * records in flight at once (see `ProducerSettings.ordering`).
 *
 * @since 0.1.0
 */
import type { InvalidSetting, KinesisError } from "@effect-kinesis/core"
import { Aggregation, Client, HashKey, MetricsCollector, Serde, ShardMap } from "@effect-kinesis/core"
import {
  Cause,
  Clock,
  Context,
  Deferred,
  Effect,
  Exit,
  Fiber,
  Layer,
  Queue,
  Result,
  Schedule,
  Sink,
  Stream,
  Tracer
} from "effect"
import type { Scope } from "effect"
import * as AutoSplit from "./AutoSplit.ts"
import * as AutoSplitLoop from "./internal/autoSplit.ts"
import { Engine } from "./internal/engine.ts"
import type { Batch, PutRecordsOutput, RequestFailure } from "./internal/engine.ts"
import { type Done, Entry, Extras, HashKeyRoute, PartitionKeyHashes } from "./internal/entry.ts"
import { FailureLog } from "./internal/failureLog.ts"
import { KplMetrics, streamName } from "./internal/kplMetrics.ts"
import { Recorder } from "./internal/recorder.ts"
import * as RecordLimits from "./internal/recordLimits.ts"
import * as Tracing from "./internal/tracing.ts"
import * as ValidateSettings from "./internal/validateSettings.ts"
import * as ProducerError from "./ProducerError.ts"
import type * as ProducerMetrics from "./ProducerMetrics.ts"
import * as ProducerSettings from "./ProducerSettings.ts"

/**
 * A record to produce: a partition key, the data (serialized by the producer's serializer) and an
 * optional explicit hash key that routes it instead of `MD5(partitionKey)`.
 *
 * @example
 * ```ts
 * import type { Producer } from "@effect-kinesis/producer"
 *
 * const record: Producer.ProducerRecord<string> = { partitionKey: "customer-42", data: "order placed" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ProducerRecord<A> {
  readonly partitionKey: string
  readonly data: A
  readonly explicitHashKey?: string | undefined
}

/**
 * Where Kinesis stored a record. Records aggregated together share the sequence number and
 * differ in `subSequenceNumber` (their index in the aggregate; 0 for a plain record).
 *
 * @example
 * ```ts
 * import type { Producer } from "@effect-kinesis/producer"
 *
 * const describe = (r: Producer.ProduceResult) => `${r.shardId}/${r.sequenceNumber}.${r.subSequenceNumber}`
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ProduceResult {
  readonly shardId: string
  readonly sequenceNumber: string
  readonly subSequenceNumber: number
  /** PutRecords attempts the record needed (1 when it was written at once). */
  readonly attempts: number
}

/**
 * A record given to `offer` / `offerAll` that failed, and why. Delivered to `onError`.
 *
 * @example
 * ```ts
 * import type { Producer } from "@effect-kinesis/producer"
 *
 * const log = (f: Producer.OfferFailure<string>) => console.error(f.record.partitionKey, f.error._tag)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface OfferFailure<A> {
  readonly record: ProducerRecord<A>
  readonly error: ProducerError.ProducerError
}

/**
 * A producer for one stream.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Serde } from "@effect-kinesis/core"
 * import { Producer } from "@effect-kinesis/producer"
 *
 * const program = Effect.gen(function*() {
 *   const producer = yield* Producer.make({ stream: "orders", serializer: Serde.string })
 *   const result = yield* producer.produce({ partitionKey: "customer-1", data: "hello" })
 *   yield* Stream.make({ partitionKey: "k", data: "a" }, { partitionKey: "k", data: "b" }).pipe(
 *     Stream.run(producer.sink)
 *   )
 *   return result.shardId
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Producer<A> {
  /** Produces one record; completes when Kinesis has acknowledged it. */
  readonly produce: (record: ProducerRecord<A>) => Effect.Effect<ProduceResult, ProducerError.ProducerError>
  /**
   * Produces many records; completes when every one has settled, with their results in order,
   * or with the error of the first record (by position) that failed. The others are produced
   * regardless: a failure of one never fails its neighbours' writes.
   */
  readonly produceChunk: (
    records: Iterable<ProducerRecord<A>>
  ) => Effect.Effect<ReadonlyArray<ProduceResult>, ProducerError.ProducerError>
  /**
   * Completes as soon as the record is in the buffer (suspending while it is full), with an
   * effect that awaits its result.
   */
  readonly produceAsync: (
    record: ProducerRecord<A>
  ) => Effect.Effect<Effect.Effect<ProduceResult, ProducerError.ProducerError>, ProducerError.ProducerError>
  /**
   * Fire and forget: completes when the record is in the buffer (suspending while it is full).
   * Any failure, now or later, goes to the `onError` callback of {@link MakeOptions}.
   */
  readonly offer: (record: ProducerRecord<A>) => Effect.Effect<void>
  /** {@link Producer.offer} for many records. */
  readonly offerAll: (records: Iterable<ProducerRecord<A>>) => Effect.Effect<void>
  /**
   * A sink producing everything the stream emits. It keeps the buffer full rather than waiting
   * chunk by chunk, and completes once all records are acknowledged, failing with the first
   * error (records after a failure are still produced until the sink stops).
   */
  readonly sink: Sink.Sink<void, ProducerRecord<A>, never, ProducerError.ProducerError>
  /** The shard map records are currently routed and paced by. */
  readonly shardMap: Effect.Effect<ShardMap.ShardMap>
  /** User records accepted and not yet settled. */
  readonly buffered: Effect.Effect<number>
}

/**
 * What {@link make} needs: the stream, the serializer for the data (a `Serde`, as the consumer's
 * `deserializer`), settings, and callbacks. `serde` is the serializer's deprecated former name.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Serde } from "@effect-kinesis/core"
 * import type { Producer } from "@effect-kinesis/producer"
 *
 * const options: Producer.MakeOptions<string> = {
 *   stream: "orders",
 *   serializer: Serde.string,
 *   settings: { aggregate: true },
 *   onError: (failure) => Effect.logError("dropped record", failure.error),
 *   onMetrics: (metrics) => Effect.log(`${metrics.userRecordsPut} records put`)
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type MakeOptions<A> =
  & MakeOptionsFields<A>
  & (
    | {
      /** Turns record data into bytes, e.g. `Serde.string`, `Serde.json(schema)`, `Serde.bytes`. */
      readonly serializer: Serde.Serde<A>
      readonly serde?: undefined
    }
    | {
      /** @deprecated Use `serializer` (the consumer's is its `deserializer`). */
      readonly serde: Serde.Serde<A>
      readonly serializer?: undefined
    }
  )

interface MakeOptionsFields<A> {
  /** Stream name or ARN. */
  readonly stream: Client.StreamId
  readonly settings?: Partial<ProducerSettings.ProducerSettings> | undefined
  /**
   * Receives every record given to `offer`/`offerAll` that failed. Without it no failure goes
   * unseen either: the producer logs records that failed for good at error level, grouped per
   * shard and error (see `ProducerSettings.LoggingSettings`), and, without this callback, the
   * records `offer` refused (invalid, buffer full, closed) the same way.
   */
  readonly onError?: ((failure: OfferFailure<A>) => Effect.Effect<void>) | undefined
  /** Receives the metrics of each interval (setting `metricsInterval`) and of the last one at close. */
  readonly onMetrics?: ((metrics: ProducerMetrics.ProducerMetrics) => Effect.Effect<void>) | undefined
  /**
   * Receives each decision of auto-split (setting `autoSplit`); each is also counted in
   * `AutoSplit.metrics`.
   */
  readonly onDiagnostic?: ((event: AutoSplit.AutoSplitEvent) => Effect.Effect<void>) | undefined
}

const now = (): number => performance.now()
/** Kinesis' limit, in UTF-16 code units. */
const MAX_PARTITION_KEY_LENGTH = 256
const noop = () => {}

/** The AWS error code of a Kinesis error (`ProvisionedThroughputExceededException`…), as the KPL reports it. */
const awsErrorCode = (e: KinesisError.KinesisError): string => {
  if ("code" in e && typeof e.code === "string") return e.code
  const sdk = e.cause
  if (typeof sdk === "object" && sdk !== null) {
    const name = (sdk as { readonly name?: unknown }).name
    if (typeof name === "string" && name !== "Error") return name
  }
  return e._tag
}

const toFailure = (cause: Cause.Cause<KinesisError.KinesisError>): RequestFailure => {
  const error = Cause.squash(cause)
  if (typeof error === "object" && error !== null && "_tag" in error && "retryable" in error) {
    const e = error as KinesisError.KinesisError
    return { code: e._tag, message: e.message, retryable: e.retryable, cause: e, errorCode: awsErrorCode(e) }
  }
  return { code: "Unknown", message: String(error), retryable: true, cause: error }
}

/** How often `UserRecordsPending` is sampled (the KPL's period). */
const PENDING_SAMPLE_MILLIS = 200
/** The KPL metrics are moved into the collector every this many samples (a second). */
const SAMPLES_PER_FLUSH = 5

/**
 * Creates a producer for one stream, living as long as the enclosing scope. It lists the
 * stream's open shards first (failing if the stream does not exist), after checking `settings`
 * (one that cannot work fails with `InvalidSetting`). Closing the scope stops intake and flushes
 * everything buffered within `closeTimeout`. As `make` in every package, it builds the value its
 * module's `layer` provides (there under a service tag of yours).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Client, Serde } from "@effect-kinesis/core"
 * import { Producer } from "@effect-kinesis/producer"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const producer = yield* Producer.make({ stream: "orders", serializer: Serde.string, settings: { aggregate: true } })
 *   yield* producer.offer({ partitionKey: "customer-1", data: "hello" })
 * })).pipe(Effect.provide(Client.layer({ region: "eu-west-1" })))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <A>(
  options: MakeOptions<A>
): Effect.Effect<
  Producer<A>,
  KinesisError.KinesisError | ShardMap.ShardMapInvalid | InvalidSetting.InvalidSetting,
  Client.Client | Scope.Scope
> =>
  Effect.gen(function*() {
    const invalid = ValidateSettings.validate(options.settings)
    if (invalid !== undefined) return yield* invalid
    const resolved = yield* Effect.try({
      try: () => ProducerSettings.resolve(options.settings),
      catch: ValidateSettings.fromResolveError
    })
    const client = yield* Client.Client
    const stream = options.stream
    // The stream's own maximum record size caps the setting (read once: a producer restarts to follow a change).
    const settings = yield* RecordLimits.forStream(resolved, client, stream)
    const context = yield* Effect.context<never>()
    const runFork = Effect.runForkWith(context)

    const listShardMap = client.listShards(stream, { shardFilter: { Type: "AT_LATEST" } }).pipe(
      Stream.runCollect,
      Effect.flatMap((shards) => Effect.fromResult(ShardMap.fromShards(shards))),
      // Throttling and 5xx on ListShards are transient: a producer should not fail to start on one.
      Effect.retry({
        while: (error) => error._tag !== "ShardMapInvalid" && error.retryable,
        schedule: Schedule.exponential(100).pipe(Schedule.jittered),
        times: 6
      })
    )
    const initialMap = yield* listShardMap

    const recorder = new Recorder(stream, context, () => Date.now())
    const collector = Context.getOrUndefined(context, MetricsCollector.MetricsCollector)
    const kpl = collector !== undefined && settings.metrics.level !== "none"
      ? new KplMetrics(collector, settings.metrics, stream)
      : undefined
    const engine = new Engine(settings, initialMap, recorder, now(), kpl)

    // --- tracing: only with a tracer of the application's (the built-in one exports nothing) ------
    const tracer = Context.get(context, Tracer.Tracer)
    const traced = tracer !== Tracer.nativeTracer
    const requestSpans = traced && settings.tracing.requestSpans
    const recordSpans = traced && settings.tracing.recordSpansPerSecond > 0
      ? new Tracing.RecordSpans(settings.tracing.recordSpansPerSecond, Context.get(context, Clock.Clock), now())
      : undefined
    const streamLabel = streamName(stream)

    // --- records that failed for good: logged in groups, at most one line per group and interval --
    const failureLog = new FailureLog()
    engine.observer = {
      gaveUp: (entry, error) => failureLog.note(entry.shard?.info.shardId, error),
      spanEnded: (entry, span, error, shardId, sequenceNumber, subSequenceNumber, request) =>
        recordSpans?.end(entry, span, error, shardId, sequenceNumber, subSequenceNumber, request),
      retried: (entry, span, failure) => recordSpans?.retried(entry, span, failure)
    }
    yield* failureLog.awaitNote.pipe(
      Effect.andThen(failureLog.flush),
      Effect.andThen(Effect.sleep(settings.logging.failureSummaryMillis)),
      Effect.forever,
      Effect.annotateLogs({ stream: streamLabel }),
      Effect.forkScoped
    )

    // --- failures of offer / offerAll, delivered to onError by one fiber ------------------------
    const failures = yield* Queue.unbounded<OfferFailure<A>, Cause.Done>()
    // Without a callback, failures go to the log only: those of accepted records are logged by
    // the engine's failure log already, those refused at intake are noted there too.
    const onError = options.onError
    const reportFailure = (record: ProducerRecord<A>, error: ProducerError.ProducerError) => {
      if (onError !== undefined) Queue.offerUnsafe(failures, { record, error })
    }
    const refuseOffer = (record: ProducerRecord<A>, error: ProducerError.ProducerError) => {
      if (onError === undefined) failureLog.note(undefined, error)
      else Queue.offerUnsafe(failures, { record, error })
    }
    const offerDone: Done = (entry, error) => {
      if (error !== undefined) reportFailure(entry.ref as ProducerRecord<A>, error)
    }
    const failureFiber = yield* Queue.takeAll(failures).pipe(
      Effect.flatMap((batch) =>
        Effect.forEach(batch, (failure) => Effect.catchCause(onError!(failure), Effect.logError), { discard: true })
      ),
      Effect.forever,
      Effect.catch(() => Effect.void),
      Effect.forkDetach
    )

    // --- requests ----------------------------------------------------------------------------------
    const requests = new Set<Fiber.Fiber<void>>()
    /** One debug line per answer that sends records back (retries are routine; give-ups are not). */
    const logRetries = (batch: Batch) =>
      Effect.suspend(() => {
        if (batch.retriedRecords === 0) return Effect.void
        const error = batch.requestError
        const why = error !== undefined
          ? `the request failed (${error.errorCode ?? error.code}: ${error.message})`
          : Array.from(batch.errorCodes ?? [], ([code, n]) => `${code} x${n}`).join(", ")
        return Effect.logDebug(
          `Kinesis producer: PutRecords: ${batch.retriedRecords} of ${batch.userRecords} records to retry, ${why}`
        ).pipe(
          Effect.annotateLogs({
            stream: streamLabel,
            records: batch.count,
            retried: batch.retriedRecords,
            throttled: batch.throttledRecords
          })
        )
      })
    /**
     * Hands the answer to the engine and the span in one step: settling the last records lets
     * close interrupt the request's fiber before any later step.
     */
    const handle = (batch: Batch, output: PutRecordsOutput | undefined, failure: RequestFailure | undefined) =>
      Effect.andThen(
        Effect.sync(() => {
          engine.onResponse(batch, output, failure, now())
          if (batch.span !== undefined) Tracing.annotateOutcome(batch.span, batch)
        }),
        logRetries(batch)
      )
    const send = (batch: Batch) =>
      // The client times the request (and, on HTTP/2, drops a connection gone silent, which an
      // interruption from out here would leave in the pool for every retry to ride).
      client.putRecords(stream, batch.request, { requestTimeout: settings.requestTimeoutMillis }).pipe(
        Effect.matchCauseEffect({
          onSuccess: (output: PutRecordsOutput) => handle(batch, output, undefined),
          onFailure: (cause) =>
            Cause.hasInterruptsOnly(cause) ? Effect.void : handle(batch, undefined, toFailure(cause))
        }),
        Effect.catchDefect((defect) =>
          Effect.logError("Kinesis producer: handling a PutRecords response failed", defect)
        )
      )
    // A request's span is a root: it carries records of many offers (sampled record spans link to it).
    const sendTraced = (batch: Batch) =>
      Effect.useSpan(
        Tracing.names.request,
        { kind: "client", root: true, attributes: Tracing.requestAttributes(streamLabel, batch) },
        (span) => {
          batch.span = span
          return Effect.withParentSpan(send(batch), span)
        }
      )
    engine.launch = (batch) => {
      const fiber = runFork(requestSpans ? sendTraced(batch) : send(batch))
      requests.add(fiber)
      fiber.addObserver(() => requests.delete(fiber))
    }

    // --- dispatcher: one fiber sleeping until records, responses, buckets or timers need it -------
    const dispatchOnce = Effect.callback<void>((resume) => {
      const sleep = engine.step(now())
      let timer: ReturnType<typeof setTimeout> | undefined
      const wake = () => {
        if (timer !== undefined) clearTimeout(timer)
        resume(Effect.void)
      }
      engine.wakeup = wake
      if (sleep !== Number.POSITIVE_INFINITY) {
        timer = setTimeout(() => {
          timer = undefined
          if (engine.wakeup === wake) engine.wakeup = undefined
          resume(Effect.void)
        }, Math.max(1, Math.ceil(sleep)))
      }
      return Effect.sync(() => {
        if (timer !== undefined) clearTimeout(timer)
        if (engine.wakeup === wake) engine.wakeup = undefined
      })
    })
    // A bug in the engine must not silently stop all sending: log it and keep dispatching.
    yield* dispatchOnce.pipe(
      Effect.catchDefect((defect) =>
        Effect.logError("Kinesis producer: dispatcher failed", defect).pipe(Effect.andThen(Effect.sleep(100)))
      ),
      Effect.forever,
      Effect.forkScoped
    )

    // --- shard map refresher: periodic, and soon after Kinesis reports an unexpected shard --------
    let refreshNow: (() => void) | undefined
    let refreshRequested = false
    engine.onWrongShard = () => {
      refreshRequested = true
      refreshNow?.()
    }
    const waitForRefresh = Effect.callback<void>((resume) => {
      if (refreshRequested) return resume(Effect.void)
      const timer = setTimeout(() => resume(Effect.void), settings.shardRefreshMillis)
      refreshNow = () => {
        clearTimeout(timer)
        resume(Effect.void)
      }
      return Effect.sync(() => {
        clearTimeout(timer)
        refreshNow = undefined
      })
    })
    const shardIds = (map: ShardMap.ShardMap) => map.shards.map((shard) => shard.shardId).join(",")
    const refresh = listShardMap.pipe(
      Effect.tap((map) =>
        Effect.suspend(() => {
          const before = engine.currentShardMap
          engine.applyShardMap(map, now())
          return shardIds(before) === shardIds(map)
            ? Effect.void
            : Effect.logInfo(
              `Kinesis producer: the stream's open shards changed, ${before.shards.length} -> ${map.shards.length}`
            ).pipe(Effect.annotateLogs({ shards: map.shards.map((shard) => shard.shardId) }))
        })
      ),
      Effect.catch((error) =>
        Effect.logWarning(`Kinesis producer: could not refresh the shard map: ${error._tag}: ${error.message}`)
      ),
      Effect.annotateLogs({ stream: streamLabel })
    )
    yield* waitForRefresh.pipe(
      Effect.andThen(Effect.sync(() => {
        refreshNow = undefined
        refreshRequested = false
      })),
      Effect.andThen(refresh),
      // At most two listings per second, however many records report a new shard.
      Effect.andThen(Effect.sleep(500)),
      Effect.forever,
      Effect.forkScoped
    )

    // --- auto-split of hot shards (opt-in) ----------------------------------------------------------
    if (settings.autoSplit.enabled) {
      const log = engine.traffic = recorder.traffic = new AutoSplitLoop.ShardTrafficLog(settings.autoSplit, now, {
        recordsPerSecond: settings.aggregate ? undefined : settings.shardRecordsPerSecond,
        bytesPerSecond: settings.shardBytesPerSecond
      })
      yield* AutoSplitLoop.run({
        settings: settings.autoSplit,
        log,
        client,
        stream,
        shardMap: () => engine.currentShardMap,
        refreshShardMap: () => engine.onWrongShard(),
        report: (event) =>
          Effect.andThen(
            AutoSplit.recordMetrics(streamLabel, event),
            options.onDiagnostic === undefined
              ? Effect.void
              : Effect.catchCause(options.onDiagnostic(event), Effect.logError)
          ),
        now
      }).pipe(Effect.annotateLogs({ stream: streamLabel }), Effect.forkScoped)
    }

    // --- metrics ------------------------------------------------------------------------------------
    const emitMetrics = Effect.suspend(() => {
      recorder.flushEffectMetrics(engine.buffered)
      const metrics = recorder.snapshot()
      return options.onMetrics === undefined
        ? Effect.void
        : Effect.catchCause(options.onMetrics(metrics), Effect.logError)
    })
    yield* Effect.sleep(settings.metricsIntervalMillis).pipe(
      Effect.andThen(emitMetrics),
      Effect.forever,
      Effect.forkScoped
    )
    const flushKpl = Effect.sync(() => kpl?.flush(engine.takeReceived(), engine.buffered))
    if (kpl !== undefined) {
      let samples = 0
      const tick = Effect.sync(() => {
        if (++samples < SAMPLES_PER_FLUSH) kpl.userRecordsPending.add(engine.buffered)
        else {
          samples = 0
          kpl.flush(engine.takeReceived(), engine.buffered)
        }
      })
      yield* Effect.sleep(PENDING_SAMPLE_MILLIS).pipe(Effect.andThen(tick), Effect.forever, Effect.forkScoped)
    }

    // --- close: runs before the fibers above are interrupted (finalizers run in reverse) ----------
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        engine.close()
        yield* Effect.callback<void>((resume) => {
          const idle = () => resume(Effect.void)
          engine.onIdle(idle)
          return Effect.sync(() => engine.removeIdleWaiter(idle))
        }).pipe(Effect.timeoutOption(settings.closeTimeoutMillis))
        engine.abandon()
        yield* Fiber.interruptAll(Array.from(requests))
        yield* emitMetrics
        yield* flushKpl
        yield* failureLog.flush.pipe(Effect.annotateLogs({ stream: streamLabel }))
        yield* Queue.end(failures)
        yield* Fiber.await(failureFiber)
      })
    )

    // --- intake -------------------------------------------------------------------------------------
    const serde: Serde.Serde<A> = options.serializer ?? options.serde
    const serializeSync = Serde.isSync(serde) ? serde.serializeResult : undefined
    // The bytes serde is the identity: skip its per-record Result.
    const isBytesSerde = (serde as Serde.Serde<unknown>) === Serde.bytes
    const syncSerialized = Effect.succeed(undefined)
    const hashes = new PartitionKeyHashes()

    const prepare = (
      record: ProducerRecord<A>,
      serialized: Result.Result<Uint8Array, Serde.SerializationError> | undefined,
      done: Done,
      ref: unknown,
      span?: Tracer.Span
    ): Entry | ProducerError.ProducerError => {
      const checked = check(record, serialized, done, ref)
      if (span !== undefined) {
        if (checked instanceof Entry) (checked.extras = new Extras()).span = span
        else recordSpans!.end(undefined, span, checked, "", "", 0, undefined)
      }
      return checked
    }

    /** A record that will not be accepted after all: its span, if it has one, ends with `error`. */
    const refused = (item: Entry, error: ProducerError.ProducerError) => {
      const span = item.extras?.span
      if (span !== undefined) recordSpans!.end(item, span, error, "", "", 0, undefined)
    }

    const check = (
      record: ProducerRecord<A>,
      serialized: Result.Result<Uint8Array, Serde.SerializationError> | undefined,
      done: Done,
      ref: unknown
    ): Entry | ProducerError.ProducerError => {
      const key = record.partitionKey
      if (typeof key !== "string" || key.length === 0) {
        return new ProducerError.InvalidPartitionKey({ partitionKey: String(key), reason: "empty" })
      }
      // Kinesis (and the KPL) count UTF-16 code units, which is what `length` is: an emoji counts
      // two. A key over the limit would fail its whole request, or its whole aggregate.
      if (key.length > MAX_PARTITION_KEY_LENGTH) {
        return new ProducerError.InvalidPartitionKey({ partitionKey: key, reason: "too long" })
      }
      let hashKey: HashKeyRoute
      const explicit = record.explicitHashKey
      if (explicit !== undefined) {
        const parsed = HashKey.parseExplicit(explicit)
        if (parsed === undefined) return new ProducerError.InvalidExplicitHashKey({ explicitHashKey: explicit })
        hashKey = new HashKeyRoute(parsed, Aggregation.partitionKeyBytes(key), explicit)
      } else {
        hashKey = hashes.get(key)
      }
      let bytes: Uint8Array
      if (isBytesSerde) {
        bytes = record.data as Uint8Array
      } else {
        const data = serialized ?? serializeSync!(record.data)
        if (Result.isFailure(data)) return data.failure
        bytes = data.success
      }
      const size = bytes.length + hashKey.partitionKeyBytes
      if (size > settings.maxRecordBytes) {
        return new ProducerError.RecordTooLarge({ size, maxBytes: settings.maxRecordBytes })
      }
      return new Entry(key, bytes, size, hashKey, done, ref)
    }

    /**
     * Serialized data of each record, for a serde without the sync functions; `undefined` (no
     * allocation) when `prepare` can serialize synchronously itself.
     */
    const serializeAll = (
      records: ReadonlyArray<ProducerRecord<A>>
    ): Effect.Effect<Array<Result.Result<Uint8Array, Serde.SerializationError>> | undefined> =>
      serializeSync !== undefined
        ? syncSerialized
        : Effect.forEach(records, (r) => Effect.result(serde.serialize(r.data)))

    const closedError = new ProducerError.ProducerClosed({ written: false })

    const noSpans = Effect.succeed(undefined)
    const recordSpanOptions = {
      kind: "producer" as const,
      attributes: { [Tracing.names.stream]: streamLabel }
    }
    /**
     * Spans for the first records of a call made inside a sampled span, as many as the rate
     * allows (see `TracingSettings.recordSpansPerSecond`).
     */
    const startSpans = (count: number): Effect.Effect<ReadonlyArray<Tracer.Span> | undefined> =>
      Effect.withFiber((fiber) => {
        const parent = Context.getOrUndefined(fiber.context, Tracer.ParentSpan)
        if (parent === undefined || !parent.sampled) return noSpans
        const granted = recordSpans!.take(count, now())
        if (granted === 0) return noSpans
        return Effect.forEach(
          Array.from({ length: granted }),
          () => Effect.makeSpan(Tracing.names.record, recordSpanOptions)
        )
      })
    /** Runs `f` with the spans of the call's records (none unless record spans are on). */
    const traceable = <X, E>(
      count: number,
      f: (spans: ReadonlyArray<Tracer.Span> | undefined) => Effect.Effect<X, E>
    ): Effect.Effect<X, E> => recordSpans === undefined ? f(undefined) : Effect.flatMap(startSpans(count), f)

    /**
     * Admits prepared records into the buffer in order, waiting for room (or rejecting, per
     * `whenBufferFull`). Returns a canceller for an interrupted caller.
     */
    const admit = (
      items: ReadonlyArray<Entry | ProducerError.ProducerError>,
      reject: (index: number, error: ProducerError.ProducerError) => void,
      admitted: () => void
    ): () => void => {
      let i = 0
      let waiting = false
      const run = (woken: boolean) => {
        waiting = false
        const t = now()
        while (i < items.length) {
          const item = items[i]!
          if (!(item instanceof Entry)) reject(i, item)
          else if (engine.closed) {
            refused(item, closedError)
            reject(i, closedError)
          } else if (!engine.tryAccept(item, t)) {
            if (settings.whenBufferFull === "fail") {
              const error = new ProducerError.BufferFull({
                capacity: settings.bufferSize,
                capacityBytes: settings.bufferBytes
              })
              refused(item, error)
              reject(i, error)
            } else {
              waiting = true
              engine.addWaiter(waiter, woken)
              return
            }
          }
          i++
        }
        admitted()
      }
      const waiter = () => run(true)
      run(false)
      return () => {
        if (waiting) engine.removeWaiter(waiter)
      }
    }

    const produceChunk = (
      input: Iterable<ProducerRecord<A>>
    ): Effect.Effect<ReadonlyArray<ProduceResult>, ProducerError.ProducerError> =>
      Effect.suspend(() => {
        const records = Array.isArray(input) ? input as ReadonlyArray<ProducerRecord<A>> : Array.from(input)
        if (records.length === 0) return Effect.succeed([])
        return traceable(records.length, (spans) =>
          Effect.flatMap(serializeAll(records), (data) =>
            Effect.callback<ReadonlyArray<ProduceResult>, ProducerError.ProducerError>((resume) => {
              const n = records.length
              const results = new Array<ProduceResult>(n)
              let remaining = n
              let errorIndex = n
              let firstError: ProducerError.ProducerError | undefined
              const settle = (i: number, error: ProducerError.ProducerError | undefined, result?: ProduceResult) => {
                if (error !== undefined) {
                  if (i < errorIndex) {
                    errorIndex = i
                    firstError = error
                  }
                } else {
                  results[i] = result!
                }
                if (--remaining === 0) {
                  resume(firstError !== undefined ? Effect.fail(firstError) : Effect.succeed(results))
                }
              }
              const done: Done = (entry, error, shardId, sequenceNumber, subSequenceNumber) =>
                settle(
                  entry.ref as number,
                  error,
                  error === undefined
                    ? { shardId, sequenceNumber, subSequenceNumber, attempts: entry.attempts }
                    : undefined
                )
              const items = records.map((record, i) => prepare(record, data?.[i], done, i, spans?.[i]))
              return Effect.sync(admit(items, settle, noop))
            })))
      })

    const produce = (record: ProducerRecord<A>): Effect.Effect<ProduceResult, ProducerError.ProducerError> =>
      Effect.flatMap(produceChunk([record]), (results) => Effect.succeed(results[0]!))

    const produceAsync = (
      record: ProducerRecord<A>
    ): Effect.Effect<Effect.Effect<ProduceResult, ProducerError.ProducerError>, ProducerError.ProducerError> =>
      traceable(1, (spans) =>
        Effect.flatMap(serializeAll([record]), (data) =>
          Effect.callback<Effect.Effect<ProduceResult, ProducerError.ProducerError>, ProducerError.ProducerError>(
            (resume) => {
              const deferred = Deferred.makeUnsafe<ProduceResult, ProducerError.ProducerError>()
              const done: Done = (entry, error, shardId, sequenceNumber, subSequenceNumber) => {
                Deferred.doneUnsafe(
                  deferred,
                  error !== undefined
                    ? Exit.fail(error)
                    : Exit.succeed({ shardId, sequenceNumber, subSequenceNumber, attempts: entry.attempts })
                )
              }
              const item = prepare(record, data?.[0], done, undefined, spans?.[0])
              return Effect.sync(admit(
                [item],
                (_, error) =>
                  resume(Effect.fail(error)),
                () => resume(Effect.succeed(Deferred.await(deferred)))
              ))
            }
          )))

    const offerAll = (input: Iterable<ProducerRecord<A>>): Effect.Effect<void> =>
      Effect.suspend(() => {
        const records = Array.isArray(input) ? input as ReadonlyArray<ProducerRecord<A>> : Array.from(input)
        if (records.length === 0) {
          return Effect.void
        }
        return traceable(records.length, (spans) =>
          Effect.flatMap(serializeAll(records), (data) => {
            // Fast path: everything fits, no callback needed (and no array of prepared records).
            const t = now()
            let i = 0
            let first: Entry | undefined
            for (; i < records.length; i++) {
              const record = records[i]!
              const item = prepare(record, data?.[i], offerDone, record, spans?.[i])
              if (!(item instanceof Entry)) {
                refuseOffer(record, item)
              } else if (engine.closed) {
                refused(item, closedError)
                refuseOffer(record, closedError)
              } else if (!engine.tryAccept(item, t)) {
                first = item
                break
              }
            }
            if (first === undefined) {
              return Effect.void
            }
            const rest: Array<Entry | ProducerError.ProducerError> = [first]
            for (let j = i + 1; j < records.length; j++) {
              rest.push(prepare(records[j]!, data?.[j], offerDone, records[j]!, spans?.[j]))
            }
            const restRecords = records.slice(i)
            return Effect.callback<void>((resume) =>
              Effect.sync(admit(rest, (j, error) =>
                refuseOffer(restRecords[j]!, error), () => resume(Effect.void)))
            )
          }))
      })

    const offer = (record: ProducerRecord<A>): Effect.Effect<void> => offerAll([record])

    const sink: Sink.Sink<void, ProducerRecord<A>, never, ProducerError.ProducerError> = Sink.unwrap(
      Effect.sync(() => {
        let outstanding = 0
        let firstError: ProducerError.ProducerError | undefined
        let idle: (() => void) | undefined
        const settled = (error: ProducerError.ProducerError | undefined) => {
          if (error !== undefined && firstError === undefined) firstError = error
          if (--outstanding === 0 && idle !== undefined) {
            const f = idle
            idle = undefined
            f()
          }
        }
        const done: Done = (_, error) => settled(error)
        const submit = (records: ReadonlyArray<ProducerRecord<A>>) =>
          traceable(records.length, (spans) =>
            Effect.flatMap(serializeAll(records), (data) =>
              Effect.callback<void, ProducerError.ProducerError>((resume) => {
                if (firstError !== undefined) {
                  // Not offered after all.
                  if (spans !== undefined) {
                    for (const span of spans) {
                      recordSpans!.end(undefined, span, firstError, "", "", 0, undefined)
                    }
                  }
                  return resume(Effect.fail(firstError))
                }
                const items = records.map((record, i) =>
                  prepare(record, data?.[i], done, undefined, spans?.[i])
                )
                outstanding += items.length
                return Effect.sync(admit(items, (_, error) =>
                  settled(error), () =>
                  resume(Effect.void)))
              })))
        const awaitAll = Effect.callback<void, ProducerError.ProducerError>((resume) => {
          const finish = () =>
            resume(firstError !== undefined ? Effect.fail(firstError) : Effect.void)
          if (outstanding === 0) finish()
          else idle = finish
        })
        return Sink.forEachArray(submit).pipe(Sink.mapEffect(() => awaitAll))
      })
    )

    return {
      produce,
      produceChunk,
      produceAsync,
      offer,
      offerAll,
      sink,
      shardMap: Effect.sync(() => engine.currentShardMap),
      buffered: Effect.sync(() => engine.buffered)
    } satisfies Producer<A>
  })

/**
 * A layer providing a producer under your own service tag (a producer is generic in its record
 * type, so each application names its own).
 *
 * @example
 * ```ts
 * import { Context } from "effect"
 * import { Client, Serde } from "@effect-kinesis/core"
 * import { Producer } from "@effect-kinesis/producer"
 *
 * class OrdersProducer extends Context.Service<OrdersProducer, Producer.Producer<string>>()("app/OrdersProducer") {}
 *
 * const OrdersProducerLive = Producer.layer(OrdersProducer, { stream: "orders", serializer: Serde.string })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I, A>(
  tag: Context.Service<I, Producer<A>>,
  options: MakeOptions<A>
): Layer.Layer<
  I,
  KinesisError.KinesisError | ShardMap.ShardMapInvalid | InvalidSetting.InvalidSetting,
  Client.Client
> => Layer.effect(tag, make(options))
