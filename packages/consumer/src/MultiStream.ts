/**
 * One application over several streams, with one lease table: the KCL's multi-stream mode. Leases
 * are keyed `account:streamName:creationEpoch:shardId` and carry the KCL's `streamName` (the
 * serialized stream identifier) and `shardId` attributes, so a table written by a KCL 2.3+
 * multi-stream application is read and continued here, and ours by it.
 *
 * Each stream's shards are balanced over the workers on their own (a worker takes its fair share
 * of every stream); the workers share one worker id per process and one lease table.
 *
 * @since 0.2.0
 */
import { Client, InvalidSetting, MetricsCollector } from "@effect-kinesis/core"
import { Duration, Effect, Option, Schedule, Stream } from "effect"
import { randomUUID } from "node:crypto"
import { hostname } from "node:os"
import * as Consumer from "./Consumer.ts"
import type { ConsumerError } from "./ConsumerError.ts"
import type { ConsumerRecord } from "./ConsumerRecord.ts"
import type * as DiagnosticEvent from "./DiagnosticEvent.ts"
import * as ApplicationLeases from "./internal/applicationLeases.ts"
import * as MultiStreamLeases from "./internal/multiStreamLeases.ts"
import type { Lease } from "./Lease.ts"
import { LeaseRepository, type LeaseStoreError } from "./LeaseRepository.ts"

/**
 * A stream as a multi-stream lease table knows it: the KCL's `StreamIdentifier`. `serialized`
 * (`account:streamName:creationEpoch`) prefixes the stream's lease keys.
 *
 * @example
 * ```ts
 * import type { MultiStream } from "@effect-kinesis/consumer"
 *
 * const label = (id: MultiStream.StreamIdentifier) => `${id.streamName} in ${id.accountId}`
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface StreamIdentifier {
  readonly accountId: string
  readonly streamName: string
  /** The stream's creation time as an epoch number (see {@link StreamSpec}). */
  readonly creationEpoch: number
  /** `account:streamName:creationEpoch`, as the KCL serializes it. */
  readonly serialized: string
  /** The stream as given in the options (name or ARN), used for Kinesis calls. */
  readonly stream: Client.StreamId
}

/**
 * A stream to consume: its name or ARN (cross-account streams need the ARN), or that with
 * per-stream settings.
 *
 * The creation epoch names the stream in its lease keys. The KCL takes it from the application
 * (`StreamIdentifier.multiStreamInstance(arn, creationEpoch)`) and never checks it. Here it is,
 * in order: `creationEpoch` when given; else the epoch of a lease already in the table for the
 * same account and stream name whose epoch is the stream's creation time
 * (`DescribeStreamSummary`'s `StreamCreationTimestamp`) in milliseconds or in seconds; else that
 * time in milliseconds (what the KCL's own multi-stream test application uses). Give
 * `creationEpoch` to continue a KCL application that used another value.
 *
 * @example
 * ```ts
 * import type { MultiStream } from "@effect-kinesis/consumer"
 *
 * const streams: ReadonlyArray<MultiStream.StreamSpec> = [
 *   "orders",
 *   { stream: "arn:aws:kinesis:eu-west-1:123456789012:stream/payments", creationEpoch: 1717171717, initialPosition: "LATEST" }
 * ]
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export type StreamSpec = Client.StreamId | {
  readonly stream: Client.StreamId
  /** The epoch in the stream's lease keys. Default: see above. */
  readonly creationEpoch?: number | undefined
  /** Where to start this stream's shards that have no checkpoint. Default: the options' `initialPosition`. */
  readonly initialPosition?: Consumer.InitialPosition | undefined
}

/**
 * Options of {@link shardedStream}: those of `Consumer.shardedStream` with `streams` for `stream`.
 * A `ConsumerControl` handle is not supported here (it drives one stream's consumer).
 *
 * @example
 * ```ts
 * import { Serde } from "@effect-kinesis/core"
 * import type { MultiStream } from "@effect-kinesis/consumer"
 *
 * const options: MultiStream.ShardedStreamOptions<string> = {
 *   streams: ["orders", "payments"],
 *   applicationName: "billing",
 *   deserializer: Serde.string
 * }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface ShardedStreamOptions<A>
  extends Omit<Consumer.ShardedStreamOptions<A>, "stream" | "control" | "onDiagnostic">
{
  /** The streams, at least one, each once. */
  readonly streams: ReadonlyArray<StreamSpec>
  /** Called with every diagnostic event and the stream of its shard (shard ids repeat across streams). */
  readonly onDiagnostic?:
    | ((event: DiagnosticEvent.DiagnosticEvent, stream: StreamIdentifier) => Effect.Effect<void>)
    | undefined
}

/**
 * A shard held by this worker: `Consumer.ShardStream` with the stream it belongs to.
 *
 * @example
 * ```ts
 * import { Stream } from "effect"
 * import type { MultiStream } from "@effect-kinesis/consumer"
 *
 * const labelled = (shard: MultiStream.ShardStream<string>) =>
 *   Stream.map(shard.records, (record) => `${shard.stream.streamName}/${shard.shardId}: ${record.data}`)
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface ShardStream<A> extends Consumer.ShardStream<A> {
  readonly stream: StreamIdentifier
}

/**
 * The shards this worker holds, of every stream, as `Consumer.shardedStream` gives them for one.
 * Fails when any stream's consumer fails (the others stop with it).
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Serde } from "@effect-kinesis/core"
 * import { MultiStream } from "@effect-kinesis/consumer"
 *
 * const program = MultiStream.shardedStream({
 *   streams: ["orders", "payments"],
 *   applicationName: "billing",
 *   deserializer: Serde.string
 * }).pipe(
 *   Stream.flatMap((shard) =>
 *     shard.records.pipe(
 *       Stream.mapEffect((record) =>
 *         shard.checkpointer.stageOnSuccess(Effect.log(`${shard.stream.streamName}: ${record.data}`), record)
 *       ),
 *       shard.checkpointer.checkpointBatched({ records: 1000, interval: "5 seconds" })
 *     ), { concurrency: "unbounded" }),
 *   Stream.runDrain
 * )
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const shardedStream = <A>(
  options: ShardedStreamOptions<A>
): Stream.Stream<ShardStream<A>, ConsumerError, Client.Client | LeaseRepository> =>
  Stream.unwrap(Effect.map(prepare(options), (streams) =>
    Stream.mergeAll(
      streams.map(({ consumer, id, options: streamOptions }) =>
        Stream.map(
          consumer.shardedStream(streamOptions),
          // The same object, not a copy: the consumer's helpers (`BatchProcessing`, `Parallel`) know
          // a shard by identity.
          (shard): ShardStream<A> => Object.assign(shard, { stream: id })
        )
      ),
      { concurrency: "unbounded" }
    )))

/**
 * Options of {@link consumeWith}: those of `Consumer.consumeWith` with `streams` for `stream`.
 *
 * @example
 * ```ts
 * import { Serde } from "@effect-kinesis/core"
 * import type { MultiStream } from "@effect-kinesis/consumer"
 *
 * const options: MultiStream.ConsumeWithOptions<string, never, never> = {
 *   streams: ["orders", "payments"],
 *   applicationName: "billing",
 *   deserializer: Serde.string,
 *   checkpoint: { records: 500 }
 * }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface ConsumeWithOptions<A, E, R>
  extends Omit<Consumer.ConsumeWithOptions<A, E, R>, "stream" | "control" | "onDiagnostic">
{
  /** The streams, at least one, each once. */
  readonly streams: ReadonlyArray<StreamSpec>
  /** Called with every diagnostic event and the stream of its shard (shard ids repeat across streams). */
  readonly onDiagnostic?:
    | ((event: DiagnosticEvent.DiagnosticEvent, stream: StreamIdentifier) => Effect.Effect<void>)
    | undefined
}

/**
 * `Consumer.consumeWith` over several streams: `handler` gets each record with the stream it came
 * from. Every stream's shards are processed in parallel, each shard in order, with checkpoints per
 * shard in that stream's leases.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Serde } from "@effect-kinesis/core"
 * import { MultiStream } from "@effect-kinesis/consumer"
 *
 * const program = MultiStream.consumeWith(
 *   (record, stream) => Effect.log(`${stream.streamName}/${record.shardId}: ${record.data}`),
 *   { streams: ["orders", "payments"], applicationName: "billing", deserializer: Serde.string }
 * )
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const consumeWith = <A, E, R, R2 = never>(
  handler: (record: ConsumerRecord<A>, stream: StreamIdentifier) => Effect.Effect<unknown, E, R>,
  options: ConsumeWithOptions<A, E, R2>
): Effect.Effect<void, E | ConsumerError, R | R2 | Client.Client | LeaseRepository> =>
  Effect.flatMap(prepare(options), (streams) =>
    Effect.forEach(
      streams,
      ({ consumer, id, options: streamOptions }) =>
        Consumer.consumeWith((record: ConsumerRecord<A>) => handler(record, id), {
          ...withoutStreams(options),
          ...streamOptions
        }).pipe(Effect.provideService(Consumer.Consumer, consumer)),
      { concurrency: "unbounded", discard: true }
    ))

/**
 * The stream identifier of `stream` for the lease table of `store` (see {@link StreamSpec} for how
 * the creation epoch is chosen): what the consumer uses, for tools that read the table.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { LeaseRepository, MultiStream } from "@effect-kinesis/consumer"
 *
 * const prefix = Effect.gen(function*() {
 *   const store = yield* LeaseRepository.LeaseRepository
 *   const id = yield* MultiStream.identify("orders", store)
 *   return `${id.serialized}:` // the lease keys of "orders" start with it
 * })
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const identify = (
  spec: StreamSpec,
  store: LeaseRepository["Service"]
): Effect.Effect<StreamIdentifier, ConsumerError, Client.Client> =>
  Effect.flatMap(store.list, (leases) => identifyIn(spec, streamsIn(leases)))

/**
 * Reads a serialized stream identifier (`account:streamName:creationEpoch`, the `streamName`
 * attribute of a KCL multi-stream lease) as the KCL does; `undefined` when the text is not one.
 *
 * @example
 * ```ts
 * import { MultiStream } from "@effect-kinesis/consumer"
 *
 * const id = MultiStream.parseIdentifier("123456789012:orders:1700000000")
 * // { accountId: "123456789012", streamName: "orders", creationEpoch: 1700000000 }
 * ```
 *
 * @since 0.2.0
 * @category parsing
 */
export const parseIdentifier = (
  text: string
): Pick<StreamIdentifier, "accountId" | "streamName" | "creationEpoch"> | undefined => MultiStreamLeases.parse(text)

/**
 * Deletes every lease of a stream from a multi-stream table, each conditionally on the counter it
 * was listed with (one that changed meanwhile is left; run it again), and returns the deleted
 * lease keys. For a stream the application no longer consumes: its leases are never taken again
 * (a consumer only takes the leases of the streams it is given) but stay in the table until
 * deleted. The KCL deletes them itself when its `FormerStreamsLeasesDeletionStrategy` says so;
 * here you decide when. Deleting the leases of a stream that workers still consume makes them
 * lose the shards and start them again from the initial position.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { LeaseRepository, MultiStream } from "@effect-kinesis/consumer"
 *
 * const retire = Effect.gen(function*() {
 *   const store = yield* LeaseRepository.LeaseRepository
 *   const deleted = yield* MultiStream.deleteStreamLeases(store, "123456789012:old-orders:1700000000")
 *   yield* Effect.logInfo(`deleted ${deleted.length} leases of old-orders`)
 * })
 * ```
 *
 * @since 0.2.0
 * @category cleanup
 */
export const deleteStreamLeases = (
  store: LeaseRepository["Service"],
  stream: string | Pick<StreamIdentifier, "serialized">
): Effect.Effect<ReadonlyArray<string>, LeaseStoreError> =>
  Effect.gen(function*() {
    const serialized = typeof stream === "string" ? stream : stream.serialized
    const leases = (yield* store.list).filter((lease) => MultiStreamLeases.streamOf(lease) === serialized)
    const deleted: Array<string> = []
    for (const lease of leases) {
      const done = yield* store.delete(lease).pipe(
        Effect.as(true),
        Effect.catchTag("LeaseConflict", () => Effect.succeed(false))
      )
      if (done) deleted.push(lease.leaseKey)
    }
    return deleted
  })

// The stream identifiers present in a table.
const streamsIn = (leases: ReadonlyArray<Lease>) =>
  new Set(
    leases.flatMap((lease) => {
      const id = MultiStreamLeases.streamOf(lease)
      return id === undefined ? [] : [id]
    })
  )

// The options every stream's consumer shares (`onDiagnostic` is wrapped per stream).
const withoutStreams = <O extends { readonly streams: ReadonlyArray<StreamSpec>; readonly onDiagnostic?: unknown }>(
  options: O
): Omit<O, "streams" | "onDiagnostic"> => {
  const { onDiagnostic: _onDiagnostic, streams: _streams, ...rest } = options
  return rest
}

const specStream = (spec: StreamSpec): Client.StreamId => typeof spec === "string" ? spec : spec.stream

const identifyIn = (
  spec: StreamSpec,
  inTable: ReadonlySet<string>
): Effect.Effect<StreamIdentifier, ConsumerError, Client.Client> =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    const stream = specStream(spec)
    // Limited to 20 calls per second per account: a fleet starting together is throttled.
    const summary = yield* client.describeStreamSummary(stream).pipe(
      Effect.retry({ while: (error) => error.retryable, schedule: startRetry })
    )
    const accountId = summary.StreamARN?.split(":")[4]
    const streamName = summary.StreamName
    const created = summary.StreamCreationTimestamp?.getTime()
    const given = typeof spec === "string" ? undefined : spec.creationEpoch
    if (accountId === undefined || streamName === undefined || (given === undefined && created === undefined)) {
      return yield* invalid(stream, "DescribeStreamSummary gave no stream ARN, name or creation time")
    }
    const candidates = created === undefined ? [] : [created, Math.floor(created / 1000)]
    const creationEpoch = given ??
      candidates.find((epoch) => inTable.has(`${accountId}:${streamName}:${epoch}`)) ??
      created!
    if (!Number.isSafeInteger(creationEpoch) || creationEpoch <= 0) {
      return yield* invalid(stream, `creationEpoch must be a positive integer, got ${creationEpoch}`)
    }
    const identity = { accountId, streamName, creationEpoch }
    return { ...identity, serialized: MultiStreamLeases.serialize(identity), stream }
  })

const startRetry = Schedule.exponential("200 millis").pipe(Schedule.jittered, Schedule.upTo({ times: 8 }))

const invalid = (stream: Client.StreamId, reason: string) =>
  Effect.fail(new InvalidSetting.InvalidSetting({ setting: "streams", value: stream, reason }))

// The KCL's `StreamId` dimension (the serialized identifier) on the per-shard metrics, which would
// otherwise mix the shards of the same id in different streams.
const withStreamDimension = <A, E>(stream: Stream.Stream<A, E>, id: StreamIdentifier): Stream.Stream<A, E> =>
  Stream.unwrap(
    Effect.map(
      Effect.serviceOption(MetricsCollector.MetricsCollector),
      (collector) =>
        Option.isNone(collector) ? stream : Stream.provideService(
          stream,
          MetricsCollector.MetricsCollector,
          MetricsCollector.MetricsCollector.of({
            ...collector.value,
            series: (key) =>
              collector.value.series(
                key.dimensions.some((d) => d.name === "ShardId")
                  ? { ...key, dimensions: [...key.dimensions, { name: "StreamId", value: id.serialized }] }
                  : key
              )
          })
        )
    )
  )

interface Prepared<A> {
  readonly id: StreamIdentifier
  readonly consumer: Consumer.Consumer["Service"]
  readonly options: Consumer.ShardedStreamOptions<A>
}

// One consumer per stream over that stream's view of the application's lease store, all with the
// same worker id.
const prepare = <A>(
  options: ShardedStreamOptions<A>
): Effect.Effect<ReadonlyArray<Prepared<A>>, ConsumerError, Client.Client | LeaseRepository> =>
  Effect.gen(function*() {
    if (options.streams.length === 0) return yield* invalid("", "give at least one stream")
    const repository = yield* LeaseRepository
    const own = yield* ApplicationLeases.forConsumer(repository, options.applicationName)
    const inTable = streamsIn(yield* own.list)
    // A fifth of the scan interval, at most 100 ms: the delay a take round's read can get, and the
    // age of a scan another stream's round may reuse. The streams' rounds are jittered by ±20 % of
    // their interval (`RoundCadence`): on a small table the two together span the jitter.
    const scanInterval = Duration.fromInputUnsafe(options.lease?.scanInterval ?? "500 millis")
    const store = options.streams.length === 1
      ? own
      : MultiStreamLeases.shareScans(
        own,
        Duration.min(Duration.divideUnsafe(scanInterval, 5), Duration.millis(100))
      )
    const workerId = options.workerId ?? `${hostname()}-${randomUUID().slice(0, 8)}`
    const prepared: Array<Prepared<A>> = []
    for (const spec of options.streams) {
      const id = yield* identifyIn(spec, inTable)
      if (prepared.some((p) => p.id.serialized === id.serialized)) {
        return yield* invalid(id.stream, `${id.streamName} is given twice`)
      }
      const made = yield* Effect.provideService(
        Consumer.make,
        LeaseRepository,
        LeaseRepository.of(MultiStreamLeases.view(store, id.serialized))
      )
      const consumer = Consumer.Consumer.of({
        shardedStream: (streamOptions) => withStreamDimension(made.shardedStream(streamOptions), id)
      })
      const onDiagnostic = options.onDiagnostic
      const initialPosition = typeof spec === "string" ? undefined : spec.initialPosition
      prepared.push({
        id,
        consumer,
        options: {
          ...withoutStreams(options),
          stream: id.stream,
          workerId,
          onDiagnostic: onDiagnostic === undefined ? undefined : (event) => onDiagnostic(event, id),
          initialPosition: initialPosition ?? options.initialPosition
        }
      })
    }
    return prepared
  })
