/**
 * Streams for tests on a `KinesisEmulator`: unique names, create-and-wait-until-ACTIVE, delete, and a scoped stream
 * that is deleted when the test ends.
 *
 * Waiting uses the real clock, so these work inside `it.effect` (which provides a `TestClock`).
 *
 * @since 0.1.0
 */
import { KinesisClient, type Shard } from "@aws-sdk/client-kinesis"
import { AdminClient, Client, type KinesisError } from "@effect-kinesis/core"
import { Duration, Effect, Schema, type Scope, Stream } from "effect"
import { randomBytes } from "node:crypto"
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

interface Clients {
  readonly client: Client.Client["Service"]
  readonly admin: AdminClient.AdminClient["Service"]
}

// One client per emulator, reused by every fixture call of a test file. It is never destroyed: the emulator's
// scope is not ours to hook, Node unrefs idle keep-alive sockets (they do not hold the process open), and they
// close with the emulator. Keyed by the service value, so a restarted emulator on a reused port gets a new client.
const clientsByEmulator = new WeakMap<KinesisEmulator["Service"], Clients>()

const clientsFor = (emulator: KinesisEmulator["Service"]): Clients => {
  let clients = clientsByEmulator.get(emulator)
  if (clients === undefined) {
    // A few SDK attempts ride out a loaded emulator's dropped connection; fixtures are setup, not the code under test.
    const client = Client.fromSdk(new KinesisClient(Client.sdkOptions({ ...emulator.clientConfig, maxAttempts: 3 })))
    clients = { client, admin: AdminClient.fromClient(client) }
    clientsByEmulator.set(emulator, clients)
  }
  return clients
}

/** Runs `f` with the emulator's clients, on the real clock (the admin client's waits and retries sleep). */
const withClients = <A, E>(
  f: (clients: Clients) => Effect.Effect<A, E>
): Effect.Effect<A, E, KinesisEmulator> =>
  Effect.flatMap(KinesisEmulator, (emulator) => Effect.suspend(() => withLiveClock(f(clientsFor(emulator)))))

const failed = (streamName: string, error: KinesisError.KinesisError): StreamFixtureError =>
  new StreamFixtureError({
    operation: error.operation,
    streamName,
    message: `${error.operation} ${streamName}: ${error.message}`,
    cause: error
  })

const notActive = (streamName: string, error: KinesisError.KinesisError | AdminClient.WaitTimeout) =>
  error._tag === "WaitTimeout"
    ? new StreamFixtureError({
      operation: "waitForActive",
      streamName,
      message: `${streamName} did not become ACTIVE within ${error.timeout}`
    })
    : failed(streamName, error)

const pollInterval = Duration.millis(50)
const defaultTimeout = Duration.seconds(30)

const toTestShard = (shard: Shard): TestShard => ({
  shardId: shard.ShardId ?? "",
  startingHashKey: shard.HashKeyRange?.StartingHashKey ?? "",
  endingHashKey: shard.HashKeyRange?.EndingHashKey ?? "",
  parentShardId: shard.ParentShardId ?? undefined,
  adjacentParentShardId: shard.AdjacentParentShardId ?? undefined
})

/** The ARN and open shards of an ACTIVE stream. */
const describe = (client: Client.Client["Service"], streamName: string) =>
  Effect.all({
    streamArn: client.streamArn(streamName),
    shards: client.listShards(streamName, { shardFilter: { Type: "AT_LATEST" } }).pipe(
      // AT_LATEST lists open shards; the check keeps that true on emulators that ignore ShardFilter (kinesalite).
      Stream.filter((shard) => shard.SequenceNumberRange?.EndingSequenceNumber == null),
      Stream.map(toTestShard),
      Stream.runCollect
    )
  }).pipe(
    Effect.map(({ shards, streamArn }): TestStream => ({ streamName, streamArn, shards })),
    Effect.mapError((error) => failed(streamName, error))
  )

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
  return yield* withClients(({ admin, client }) =>
    admin.waitForActive(streamName, { timeout: options.timeout ?? defaultTimeout, pollInterval }).pipe(
      Effect.mapError((error) => notActive(streamName, error)),
      Effect.andThen(describe(client, streamName))
    )
  )
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
  return yield* withClients(({ admin, client }) =>
    admin.createStream(
      streamName,
      options.onDemand === true ? { onDemand: true } : { shardCount: options.shardCount ?? 1 },
      { timeout: options.timeout ?? defaultTimeout, pollInterval }
    ).pipe(
      Effect.mapError((error) => notActive(streamName, error)),
      Effect.andThen(describe(client, streamName))
    )
  )
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
  withClients(({ admin }) =>
    admin.deleteStream(streamName, { timeout: defaultTimeout, pollInterval }).pipe(
      Effect.catchTag("StreamNotFound", () => Effect.void),
      Effect.mapError((error) =>
        error._tag === "WaitTimeout"
          ? new StreamFixtureError({
            operation: "DeleteStream",
            streamName,
            message: `DeleteStream ${streamName}: still exists ${error.timeout} after DeleteStream`
          })
          : failed(streamName, error)
      )
    )
  )

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

/**
 * A record for {@link putInOrder}.
 *
 * @example
 * ```ts
 * import type { StreamFixtures } from "@effect-kinesis/testing"
 *
 * const record: StreamFixtures.TestRecord = { partitionKey: "customer-1", data: "order placed" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface TestRecord {
  readonly partitionKey: string
  /** A string is written as UTF-8. */
  readonly data: string | Uint8Array
  readonly explicitHashKey?: string | undefined
}

const encoder = new TextEncoder()

/**
 * Writes records with plain PutRecords calls (no producer), all accepted before it returns, in
 * order per partition key: a record Kinesis rejects is sent again together with every record
 * after it.
 *
 * @example
 * ```ts
 * import { StreamFixtures } from "@effect-kinesis/testing"
 *
 * const write = (stream: string) =>
 *   StreamFixtures.putInOrder(stream, Array.from({ length: 100 }, (_, i) => ({ partitionKey: `k${i % 4}`, data: `r${i}` })))
 * ```
 *
 * @since 0.1.0
 * @category writing
 */
export const putInOrder = (
  stream: string,
  records: ReadonlyArray<TestRecord>
): Effect.Effect<void, KinesisError.KinesisError, Client.Client> =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    for (let i = 0; i < records.length; i += 250) {
      let pending = records.slice(i, i + 250).map((r) => ({
        PartitionKey: r.partitionKey,
        Data: typeof r.data === "string" ? encoder.encode(r.data) : r.data,
        ...(r.explicitHashKey !== undefined ? { ExplicitHashKey: r.explicitHashKey } : {})
      }))
      while (pending.length > 0) {
        const out = yield* client.putRecords(stream, pending)
        const firstFailed = (out.Records ?? []).findIndex((r) => r.ErrorCode !== undefined)
        pending = firstFailed < 0 ? [] : pending.slice(firstFailed)
      }
    }
  })
