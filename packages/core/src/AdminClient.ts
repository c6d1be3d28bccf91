/**
 * Control-plane operations: create, delete and reshard streams, change retention. Each operation
 * that AWS answers by putting the stream in `UPDATING`/`CREATING` waits until it is `ACTIVE` again,
 * so the next call can rely on the new shape.
 *
 * @since 0.1.0
 */
import type { StreamDescriptionSummary } from "@aws-sdk/client-kinesis"
import {
  CreateStreamCommand,
  DecreaseStreamRetentionPeriodCommand,
  DeleteStreamCommand,
  DescribeLimitsCommand,
  IncreaseStreamRetentionPeriodCommand,
  MergeShardsCommand,
  SplitShardCommand,
  UpdateMaxRecordSizeCommand,
  UpdateShardCountCommand
} from "@aws-sdk/client-kinesis"
import { Context, Data, Duration, Effect, Layer, Schedule, Stream } from "effect"
import * as Client from "./Client.ts"
import * as KinesisError from "./KinesisError.ts"

/**
 * A stream did not reach the awaited state in time.
 *
 * @example
 * ```ts
 * import { AdminClient } from "@effect-kinesis/core"
 *
 * const text = (e: AdminClient.WaitTimeout) => `${e.stream} not ${e.awaited} after ${e.timeout}`
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class WaitTimeout extends Data.TaggedError("WaitTimeout")<{
  readonly stream: string
  readonly awaited: "ACTIVE" | "DELETED"
  readonly timeout: string
}> {
  readonly retryable = true
}

/**
 * How long and how often to poll while waiting for a stream.
 *
 * @since 0.1.0
 * @category models
 */
export interface WaitOptions {
  /** Default 5 minutes (AWS resharding can take minutes on large streams). */
  readonly timeout?: Duration.Input | undefined
  /** Default 250 ms; DescribeStreamSummary allows 20 calls/s per account. */
  readonly pollInterval?: Duration.Input | undefined
}

/**
 * Capacity of a new stream: a fixed number of shards, or on-demand.
 *
 * @since 0.1.0
 * @category models
 */
export type Capacity = { readonly shardCount: number } | { readonly onDemand: true }

/**
 * The largest record a stream accepts when it reports no maximum: 1 MiB (1024 KiB), the default of
 * every stream until `UpdateMaxRecordSize` raises it.
 *
 * @example
 * ```ts
 * import { AdminClient } from "@effect-kinesis/core"
 *
 * AdminClient.defaultMaxRecordSizeKiB // 1024
 * ```
 *
 * @since 0.3.0
 * @category constants
 */
export const defaultMaxRecordSizeKiB = 1024

/**
 * The range `UpdateMaxRecordSize` accepts, in KiB: 1 MiB to 10 MiB.
 *
 * @example
 * ```ts
 * import { AdminClient } from "@effect-kinesis/core"
 *
 * AdminClient.maxRecordSizeRangeKiB.max // 10240
 * ```
 *
 * @since 0.3.0
 * @category constants
 */
export const maxRecordSizeRangeKiB = { min: 1024, max: 10240 } as const

/**
 * The largest record (data plus partition key bytes) a stream accepts, in bytes, from its
 * `DescribeStreamSummary`: `MaxRecordSizeInKiB`, or 1 MiB when the field is absent (older
 * endpoints and emulators leave it out for a stream never raised).
 *
 * @example
 * ```ts
 * import { AdminClient } from "@effect-kinesis/core"
 *
 * AdminClient.maxRecordBytes({ MaxRecordSizeInKiB: 10240 }) // 10485760
 * ```
 *
 * @since 0.3.0
 * @category getters
 */
export const maxRecordBytes = (summary: Pick<StreamDescriptionSummary, "MaxRecordSizeInKiB">): number =>
  (summary.MaxRecordSizeInKiB ?? defaultMaxRecordSizeKiB) * 1024

/**
 * What {@link AdminClient} `describeStream` reports about a stream.
 *
 * @example
 * ```ts
 * import type { AdminClient } from "@effect-kinesis/core"
 *
 * const accepts = (summary: AdminClient.StreamSummary, bytes: number) => bytes <= summary.maxRecordBytes
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface StreamSummary {
  readonly streamName: string
  readonly streamArn: string
  readonly status: string
  /** `"PROVISIONED"` or `"ON_DEMAND"`. */
  readonly mode: "PROVISIONED" | "ON_DEMAND"
  readonly openShardCount: number
  readonly retentionHours: number
  /** `MaxRecordSizeInKiB`, or 1024 when Kinesis leaves it out. */
  readonly maxRecordSizeKiB: number
  /** The same in bytes: the largest record (data plus partition key bytes) the stream accepts. */
  readonly maxRecordBytes: number
}

/**
 * The account's shard quota in the client's region, from `DescribeLimits`.
 *
 * @example
 * ```ts
 * import type { AdminClient } from "@effect-kinesis/core"
 *
 * const room = (limits: AdminClient.AccountLimits) => limits.shardLimit - limits.openShardCount
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface AccountLimits {
  /** Open shards the account may have (provisioned streams). */
  readonly shardLimit: number
  /** Open shards the account has now. */
  readonly openShardCount: number
}

const toSummary = (s: StreamDescriptionSummary): StreamSummary => ({
  streamName: s.StreamName ?? "",
  streamArn: s.StreamARN ?? "",
  status: s.StreamStatus ?? "UNKNOWN",
  mode: s.StreamModeDetails?.StreamMode === "ON_DEMAND" ? "ON_DEMAND" : "PROVISIONED",
  openShardCount: s.OpenShardCount ?? 0,
  retentionHours: s.RetentionPeriodHours ?? 24,
  maxRecordSizeKiB: s.MaxRecordSizeInKiB ?? defaultMaxRecordSizeKiB,
  maxRecordBytes: maxRecordBytes(s)
})

/**
 * The admin client service.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { AdminClient, Client } from "@effect-kinesis/core"
 *
 * const program = Effect.gen(function*() {
 *   const admin = yield* AdminClient.AdminClient
 *   yield* admin.createStream("orders", { shardCount: 4 })
 *   yield* admin.splitShard("orders", "shardId-000000000000")
 * }).pipe(Effect.provide(AdminClient.layer), Effect.provide(Client.layer({ region: "eu-west-1" })))
 * ```
 *
 * @since 0.1.0
 * @category services
 */
export class AdminClient extends Context.Service<AdminClient, {
  /** Creates the stream and waits until it is ACTIVE. */
  readonly createStream: (
    name: string,
    capacity: Capacity,
    options?: WaitOptions & {
      readonly tags?: Record<string, string> | undefined
      /** The largest record the stream accepts, 1024–10240 KiB. Default: Kinesis' (1024). */
      readonly maxRecordSizeKiB?: number | undefined
    }
  ) => Effect.Effect<void, KinesisError.KinesisError | WaitTimeout>
  /** The stream's status, mode, shard count, retention and largest record (`DescribeStreamSummary`). */
  readonly describeStream: (stream: Client.StreamId) => Effect.Effect<StreamSummary, KinesisError.KinesisError>
  /**
   * Sets the largest record the stream accepts (`UpdateMaxRecordSize`, 1024–10240 KiB, data plus
   * partition key), waits until the stream is ACTIVE and returns its summary. A value out of range
   * fails with `InvalidArgument` without calling Kinesis. Producers read the maximum when they start.
   */
  readonly updateMaxRecordSize: (
    stream: Client.StreamId,
    maxRecordSizeKiB: number,
    options?: WaitOptions
  ) => Effect.Effect<StreamSummary, KinesisError.KinesisError | WaitTimeout>
  /** The account's shard quota and open shards in the region (`DescribeLimits`). */
  readonly describeLimits: Effect.Effect<AccountLimits, KinesisError.KinesisError>
  /** Deletes the stream (and its registered consumers) and waits until it is gone. */
  readonly deleteStream: (
    stream: Client.StreamId,
    options?: WaitOptions
  ) => Effect.Effect<void, KinesisError.KinesisError | WaitTimeout>
  /** Waits until the stream is ACTIVE. Fails with `StreamNotFound` when it does not exist. */
  readonly waitForActive: (
    stream: Client.StreamId,
    options?: WaitOptions
  ) => Effect.Effect<void, KinesisError.KinesisError | WaitTimeout>
  /**
   * Splits a shard at `newStartingHashKey` (default: the middle of its range) and waits until the
   * stream is ACTIVE.
   */
  readonly splitShard: (
    stream: Client.StreamId,
    shardId: string,
    newStartingHashKey?: bigint,
    options?: WaitOptions
  ) => Effect.Effect<void, KinesisError.KinesisError | WaitTimeout>
  /** Merges two adjacent shards and waits until the stream is ACTIVE. */
  readonly mergeShards: (
    stream: Client.StreamId,
    shardId: string,
    adjacentShardId: string,
    options?: WaitOptions
  ) => Effect.Effect<void, KinesisError.KinesisError | WaitTimeout>
  /** Uniformly rescales the stream to `targetShardCount` and waits until it is ACTIVE. */
  readonly updateShardCount: (
    stream: Client.StreamId,
    targetShardCount: number,
    options?: WaitOptions
  ) => Effect.Effect<void, KinesisError.KinesisError | WaitTimeout>
  /** Sets the retention period (24–8760 hours), increasing or decreasing as needed. */
  readonly setRetention: (
    stream: Client.StreamId,
    hours: number,
    options?: WaitOptions
  ) => Effect.Effect<void, KinesisError.KinesisError | WaitTimeout>
}>()("@effect-kinesis/core/AdminClient") {}

const defaultTimeout = Duration.minutes(5)
const defaultPoll = Duration.millis(250)

// Control-plane calls share a small account-wide budget (LimitExceededException), and a stream
// that is still settling answers ResourceInUse: both usually pass after a short wait (about 6 s
// in all here). CreateStream's ResourceInUse means the name is taken, which no wait fixes.
const controlPlaneRetry = (operation: string) => <A>(self: Effect.Effect<A, KinesisError.KinesisError>) =>
  Effect.retry(self, {
    while: (e) => e._tag === "Throttled" || (e._tag === "ResourceInUse" && operation !== "CreateStream"),
    schedule: Schedule.exponential("200 millis").pipe(Schedule.jittered),
    times: 5
  })

/**
 * Builds the admin service over a {@link Client.Client}.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { AdminClient, Client } from "@effect-kinesis/core"
 *
 * const admin = Effect.map(Effect.service(Client.Client), AdminClient.fromClient)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromClient = (client: Client.Client["Service"]): AdminClient["Service"] => {
  const sdk = client.sdk
  const call = <A>(operation: string, send: (signal: AbortSignal) => Promise<A>) =>
    Effect.tryPromise({ try: send, catch: (error) => KinesisError.fromSdkError(operation, error) }).pipe(
      controlPlaneRetry(operation)
    )

  const poll = <E>(
    stream: string,
    awaited: "ACTIVE" | "DELETED",
    check: Effect.Effect<boolean, E>,
    options: WaitOptions | undefined
  ): Effect.Effect<void, E | WaitTimeout> => {
    const timeout = options?.timeout ?? defaultTimeout
    return check.pipe(
      Effect.repeat({
        until: (done) => done,
        schedule: Schedule.spaced(options?.pollInterval ?? defaultPoll)
      }),
      Effect.asVoid,
      Effect.timeoutOrElse({
        duration: timeout,
        orElse: () =>
          Effect.fail(new WaitTimeout({ stream, awaited, timeout: Duration.format(Duration.fromInputUnsafe(timeout)) }))
      })
    )
  }

  const waitForActive = (stream: Client.StreamId, options?: WaitOptions) =>
    poll(
      stream,
      "ACTIVE",
      Effect.map(client.describeStreamSummary(stream), (summary) => summary.StreamStatus === "ACTIVE"),
      options
    )

  const describeStream = (stream: Client.StreamId) => Effect.map(client.describeStreamSummary(stream), toSummary)

  return AdminClient.of({
    waitForActive,
    describeStream,
    updateMaxRecordSize: (stream, kib, options) =>
      Effect.gen(function*() {
        const { min, max } = maxRecordSizeRangeKiB
        if (!Number.isInteger(kib) || kib < min || kib > max) {
          return yield* new KinesisError.InvalidArgument({
            operation: "UpdateMaxRecordSize",
            message: `maxRecordSizeKiB must be an integer in [${min}, ${max}], got ${kib}`,
            reason: "Validation"
          })
        }
        // The operation takes the stream's ARN only.
        const arn = yield* client.streamArn(stream)
        yield* call("UpdateMaxRecordSize", (abortSignal) =>
          sdk.send(new UpdateMaxRecordSizeCommand({ StreamARN: arn, MaxRecordSizeInKiB: kib }), { abortSignal }))
        yield* waitForActive(stream, options)
        return yield* describeStream(stream)
      }),
    describeLimits: call("DescribeLimits", (abortSignal) => sdk.send(new DescribeLimitsCommand({}), { abortSignal }))
      .pipe(Effect.map((out) => ({ shardLimit: out.ShardLimit ?? 0, openShardCount: out.OpenShardCount ?? 0 }))),
    createStream: (name, capacity, options) =>
      call("CreateStream", (abortSignal) =>
        client.sdk.send(
          new CreateStreamCommand({
            StreamName: name,
            ...("shardCount" in capacity
              ? { ShardCount: capacity.shardCount, StreamModeDetails: { StreamMode: "PROVISIONED" } }
              : { StreamModeDetails: { StreamMode: "ON_DEMAND" } }),
            ...(options?.tags === undefined ? {} : { Tags: options.tags }),
            ...(options?.maxRecordSizeKiB === undefined ? {} : { MaxRecordSizeInKiB: options.maxRecordSizeKiB })
          }),
          { abortSignal }
        )).pipe(Effect.andThen(waitForActive(name, options))),
    deleteStream: (stream, options) =>
      call("DeleteStream", (abortSignal) =>
        sdk.send(
          new DeleteStreamCommand({ ...Client.streamParams(stream), EnforceConsumerDeletion: true }),
          { abortSignal }
        )).pipe(
          Effect.andThen(poll(
            stream,
            "DELETED",
            client.describeStreamSummary(stream).pipe(
              Effect.as(false),
              Effect.catchTag("StreamNotFound", () => Effect.succeed(true))
            ),
            options
          ))
        ),
    splitShard: (stream, shardId, newStartingHashKey, options) =>
      Effect.gen(function*() {
        let at = newStartingHashKey
        if (at === undefined) {
          const shards = yield* Stream.runCollect(client.listShards(stream))
          const shard = shards.find((s) => s.ShardId === shardId)
          if (shard?.HashKeyRange === undefined) {
            return yield* new KinesisError.InvalidArgument({
              operation: "SplitShard",
              message: `shard ${shardId} not found in ${stream}`,
              reason: "InvalidArgument"
            })
          }
          const start = BigInt(shard.HashKeyRange.StartingHashKey!)
          const end = BigInt(shard.HashKeyRange.EndingHashKey!)
          at = start + (end - start + 1n) / 2n
        }
        const newStart = at.toString()
        yield* call("SplitShard", (abortSignal) =>
          sdk.send(
            new SplitShardCommand({
              ...Client.streamParams(stream),
              ShardToSplit: shardId,
              NewStartingHashKey: newStart
            }),
            { abortSignal }
          ))
        yield* waitForActive(stream, options)
      }),
    mergeShards: (stream, shardId, adjacentShardId, options) =>
      call("MergeShards", (abortSignal) =>
        sdk.send(
          new MergeShardsCommand({
            ...Client.streamParams(stream),
            ShardToMerge: shardId,
            AdjacentShardToMerge: adjacentShardId
          }),
          { abortSignal }
        )).pipe(Effect.andThen(waitForActive(stream, options))),
    updateShardCount: (stream, targetShardCount, options) =>
      call("UpdateShardCount", (abortSignal) =>
        sdk.send(
          new UpdateShardCountCommand({
            ...Client.streamParams(stream),
            TargetShardCount: targetShardCount,
            ScalingType: "UNIFORM_SCALING"
          }),
          { abortSignal }
        )).pipe(Effect.andThen(waitForActive(stream, options))),
    setRetention: (stream, hours, options) =>
      Effect.gen(function*() {
        const summary = yield* client.describeStreamSummary(stream)
        const current = summary.RetentionPeriodHours ?? 24
        if (hours === current) return
        yield* call("ChangeRetention", (abortSignal) =>
          hours > current
            ? sdk.send(
              new IncreaseStreamRetentionPeriodCommand({ ...Client.streamParams(stream), RetentionPeriodHours: hours }),
              { abortSignal }
            )
            : sdk.send(
              new DecreaseStreamRetentionPeriodCommand({ ...Client.streamParams(stream), RetentionPeriodHours: hours }),
              { abortSignal }
            ))
        yield* waitForActive(stream, options)
      })
  })
}

/**
 * The admin layer, over the {@link Client.Client} in context.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { AdminClient, Client } from "@effect-kinesis/core"
 *
 * const Live = AdminClient.layer.pipe(Layer.provideMerge(Client.layer({ region: "eu-west-1" })))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<AdminClient, never, Client.Client> = Layer.effect(
  AdminClient,
  Effect.map(Effect.service(Client.Client), fromClient)
)
