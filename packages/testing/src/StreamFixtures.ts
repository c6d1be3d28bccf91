/**
 * Streams for tests on a `KinesisEmulator`: unique names, create-and-wait-until-ACTIVE, delete, and a scoped stream
 * that is deleted when the test ends.
 *
 * Waiting uses the real clock, so these work inside `it.effect` (which provides a `TestClock`).
 *
 * @since 0.1.0
 */
import { Duration, Effect, Schedule, Schema, type Scope } from "effect"
import { randomBytes } from "node:crypto"
import * as Sdk from "./internal/kinesisSdk.ts"
import { withLiveClock } from "./internal/liveClock.ts"
import { KinesisEmulator } from "./KinesisEmulator.ts"

/**
 * An open shard of a test stream.
 *
 * @example
 * ```ts
 * import type { StreamFixtures } from "@effect-kinesis/testing"
 *
 * const isRoot = (shard: StreamFixtures.TestShard) => shard.parentShardId === undefined
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface TestShard {
  readonly shardId: string
  /** Decimal, inclusive. */
  readonly startingHashKey: string
  /** Decimal, inclusive. */
  readonly endingHashKey: string
  readonly parentShardId: string | undefined
  readonly adjacentParentShardId: string | undefined
}

/**
 * An ACTIVE stream and its open shards.
 *
 * @example
 * ```ts
 * import type { StreamFixtures } from "@effect-kinesis/testing"
 *
 * const shardIds = (stream: StreamFixtures.TestStream) => stream.shards.map((shard) => shard.shardId)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface TestStream {
  readonly streamName: string
  readonly streamArn: string
  readonly shards: ReadonlyArray<TestShard>
}

/**
 * Options for creating a test stream.
 *
 * @example
 * ```ts
 * import type { StreamFixtures } from "@effect-kinesis/testing"
 *
 * const options: StreamFixtures.CreateStreamOptions = { shardCount: 4 }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface CreateStreamOptions {
  /** Provisioned shards. Default 1. Ignored with `onDemand`. */
  readonly shardCount?: number | undefined
  /** Create an on-demand stream instead. Default false. */
  readonly onDemand?: boolean | undefined
  /** How long to wait for ACTIVE. Default 30 seconds. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * A fixture call failed, or a stream did not become ACTIVE in time.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { StreamFixtures } from "@effect-kinesis/testing"
 *
 * const created = StreamFixtures.createStream("orders").pipe(
 *   Effect.catchTag("StreamFixtureError", (error) => Effect.die(error.message))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class StreamFixtureError extends Schema.TaggedError<StreamFixtureError>()("StreamFixtureError", {
  operation: Schema.String,
  streamName: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

const call = <A>(
  operation: string,
  streamName: string,
  f: (target: Sdk.Target, signal: AbortSignal) => Promise<A>
): Effect.Effect<A, StreamFixtureError, KinesisEmulator> =>
  Effect.flatMap(KinesisEmulator, (emulator) =>
    Effect.tryPromise({
      try: (signal) => f(emulator, signal),
      catch: (cause) =>
        new StreamFixtureError({
          operation,
          streamName,
          message: `${operation} ${streamName}: ${cause instanceof Error ? cause.message : String(cause)}`,
          cause
        })
    }))

/**
 * A stream name no other test uses: `prefix`, the time and random hex.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { StreamFixtures } from "@effect-kinesis/testing"
 *
 * const test = Effect.gen(function*() {
 *   const name = yield* StreamFixtures.uniqueStreamName("orders") // e.g. "orders-mfx1k2-3fa9c1d2"
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const uniqueStreamName = (prefix = "test"): Effect.Effect<string> =>
  Effect.sync(() => `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`)

/**
 * Waits until the stream is ACTIVE (after creation or resharding) and returns its open shards.
 *
 * @example
 * ```ts
 * import { StreamFixtures } from "@effect-kinesis/testing"
 *
 * const afterSplit = StreamFixtures.waitForActive("orders")
 * ```
 *
 * @since 0.1.0
 * @category waiting
 */
export const waitForActive = Effect.fnUntraced(function*(
  streamName: string,
  options: { readonly timeout?: Duration.Input | undefined } = {}
): Effect.fn.Return<TestStream, StreamFixtureError, KinesisEmulator> {
  const timeout = options.timeout ?? Duration.seconds(30)
  const summary = yield* call(
    "DescribeStreamSummary",
    streamName,
    (target, signal) => Sdk.describeSummary(target, streamName, signal)
  ).pipe(
    Effect.filterOrFail(
      (summary) => summary.status === "ACTIVE",
      (summary) =>
        new StreamFixtureError({
          operation: "waitForActive",
          streamName,
          message: `${streamName} is ${summary.status}, not ACTIVE`
        })
    ),
    Effect.retry({
      while: (error) => error.operation === "waitForActive",
      schedule: Schedule.spaced("50 millis")
    }),
    Effect.timeoutOrElse({
      duration: timeout,
      orElse: () =>
        Effect.fail(
          new StreamFixtureError({
            operation: "waitForActive",
            streamName,
            message: `${streamName} did not become ACTIVE within ${Duration.format(Duration.fromInputUnsafe(timeout))}`
          })
        )
    }),
    withLiveClock
  )
  const shards = yield* call(
    "ListShards",
    streamName,
    (target, signal) => Sdk.listOpenShards(target, streamName, signal)
  )
  return { streamName, streamArn: summary.streamArn, shards }
})

/**
 * Creates a stream and waits until it is ACTIVE. The stream outlives the test; see {@link stream} for one that is
 * deleted at the end of the scope.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { StreamFixtures } from "@effect-kinesis/testing"
 *
 * const twoShards = Effect.flatMap(
 *   StreamFixtures.uniqueStreamName("orders"),
 *   (name) => StreamFixtures.createStream(name, { shardCount: 2 })
 * )
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const createStream = Effect.fnUntraced(function*(
  streamName: string,
  options: CreateStreamOptions = {}
): Effect.fn.Return<TestStream, StreamFixtureError, KinesisEmulator> {
  yield* call("CreateStream", streamName, (target, signal) =>
    Sdk.createStream(
      target,
      streamName,
      options.onDemand === true ? "on-demand" : { shardCount: options.shardCount ?? 1 },
      signal
    ))
  return yield* waitForActive(streamName, { timeout: options.timeout })
})

/**
 * Deletes a stream (and its consumers) and waits until it is gone. Deleting a stream that does not exist succeeds.
 *
 * @example
 * ```ts
 * import { StreamFixtures } from "@effect-kinesis/testing"
 *
 * const cleanup = StreamFixtures.deleteStream("orders")
 * ```
 *
 * @since 0.1.0
 * @category destructors
 */
export const deleteStream = (streamName: string): Effect.Effect<void, StreamFixtureError, KinesisEmulator> =>
  call("DeleteStream", streamName, async (target, signal) => {
    try {
      await Sdk.deleteStream(target, streamName, signal)
      const deadline = Date.now() + 30_000
      while (Date.now() < deadline) {
        await Sdk.describeSummary(target, streamName, signal)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    } catch (error) {
      if (Sdk.isNotFound(error)) return
      throw error
    }
    throw new Error("still exists 30 seconds after DeleteStream")
  })

/**
 * A fresh stream for the current scope: a unique name with the given prefix (default `test`), created and ACTIVE,
 * deleted when the scope closes (a failed deletion is ignored: the emulator may already be gone).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { StreamFixtures } from "@effect-kinesis/testing"
 *
 * const test = Effect.gen(function*() {
 *   const { streamName, shards } = yield* StreamFixtures.stream({ prefix: "orders", shardCount: 2 })
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const stream = (
  options: CreateStreamOptions & { readonly prefix?: string | undefined } = {}
): Effect.Effect<TestStream, StreamFixtureError, KinesisEmulator | Scope.Scope> =>
  Effect.flatMap(uniqueStreamName(options.prefix), (streamName) =>
    Effect.acquireRelease(
      createStream(streamName, options),
      () => Effect.ignore(deleteStream(streamName))
    ))
