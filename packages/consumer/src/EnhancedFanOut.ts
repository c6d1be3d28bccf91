/**
 * Enhanced fan-out: records pushed to the consumer over `SubscribeToShard`, with 2 MiB/s per
 * shard for each application instead of a share of the polling limits, and lower latency.
 *
 * An application registers **one** stream consumer, named after it and shared by all of its
 * workers. Each subscription is renewed right after its last continuation when Kinesis ends it
 * (every 5 minutes), a stalled one is cancelled and renewed, and shard end is found even where an
 * emulator does not announce it. Select it for a consumer with the `enhancedFanOut` option of
 * `Consumer.shardedStream` / `Consumer.consumeWith`; {@link readShard} reads one shard directly.
 *
 * `SubscribeToShard` needs HTTP/2 on AWS (the `Client`'s default `httpHandler: "http2"`); the
 * kinesis-mock emulator needs `httpHandler: "http1"`.
 *
 * @since 0.1.0
 */
import type { _Record, ChildShard, ConsumerDescription } from "@aws-sdk/client-kinesis"
import { Client, ExtendedSequenceNumber, type KinesisError } from "@effect-kinesis/core"
import type { Duration, Schedule } from "effect"
import { Effect, Stream } from "effect"
import * as FanOutFetcher from "./internal/fanOutFetcher.ts"
import * as StreamConsumer from "./internal/streamConsumer.ts"

/**
 * Enhanced fan-out settings; every field has a default suited to AWS.
 *
 * The HTTP handler is a setting of the `Client`, not of these: `"http2"` (the default) is what
 * AWS requires for `SubscribeToShard`, `"http1"` what kinesis-mock requires.
 *
 * @example
 * ```ts
 * import type { EnhancedFanOut } from "@effect-kinesis/consumer"
 *
 * const settings: EnhancedFanOut.Settings = { consumerName: "billing-v2", stallTimeout: "20 seconds" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Settings {
  /**
   * The registered stream consumer, shared by all workers of the application. Default: the
   * application name.
   */
  readonly consumerName?: string | undefined
  /**
   * Deregister the stream consumer when the consumer shuts down. Default false: the other workers
   * of the application are still using it (and registering again costs time at the next start).
   */
  readonly deregisterOnShutdown?: boolean | undefined
  /**
   * A subscription with no event for this long is cancelled and renewed. AWS sends an event at
   * least every 5 seconds or so, kinesis-mock about every second. Default 35 seconds.
   */
  readonly stallTimeout?: Duration.Input | undefined
  /** `SubscribeToShard` calls per second per shard; Kinesis allows 1 per consumer. Default 1. */
  readonly maxSubscribesPerSecond?: number | undefined
  /**
   * Wait before subscribing again after `ResourceInUse` (Kinesis refuses a renewal within 5
   * seconds of the previous subscription, e.g. right after another worker let the shard go).
   * Default 1 second.
   */
  readonly resourceInUseDelay?: Duration.Input | undefined
  /**
   * When a subscription is caught up and Kinesis has not announced the shard's end, how old the
   * shard list may be when checking whether the shard is closed (one `ListShards` per worker at
   * most this often). Default 10 seconds.
   */
  readonly shardEndCheckInterval?: Duration.Input | undefined
  /** Batches (events) received ahead of a slow processor, per shard. Default 2. */
  readonly bufferedBatches?: number | undefined
  /**
   * Backoff before resubscribing after a transient error (5xx, reset connection, throttling);
   * reset once events flow again. Errors that retrying cannot fix (stream or stream consumer
   * deleted, access denied) fail at once. Default: exponential from 200 ms, capped at 10 s,
   * jittered, forever.
   */
  readonly retrySchedule?: Schedule.Schedule<unknown, KinesisError.KinesisError> | undefined
  /** How often to look while the stream consumer is being registered. Default 500 milliseconds. */
  readonly registrationPollInterval?: Duration.Input | undefined
}

/**
 * The stream consumer `consumerName` once it is ACTIVE, registering it if it does not exist.
 * Idempotent and safe to run from many workers at once: they all end up with the same consumer.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { EnhancedFanOut } from "@effect-kinesis/consumer"
 *
 * const arn = EnhancedFanOut.registerStreamConsumer("orders", "billing").pipe(
 *   Effect.map((consumer) => consumer.ConsumerARN)
 * )
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const registerStreamConsumer = (
  stream: Client.StreamId,
  consumerName: string,
  settings?: Settings
): Effect.Effect<ConsumerDescription, KinesisError.KinesisError, Client.Client> =>
  Effect.flatMap(
    Effect.service(Client.Client),
    (client) => StreamConsumer.ensureActive(client, stream, consumerName, StreamConsumer.resolveSettings(settings))
  )

/**
 * Deregisters the stream consumer `consumerName` (every subscription through it ends); one that
 * does not exist counts as deregistered.
 *
 * @example
 * ```ts
 * import { EnhancedFanOut } from "@effect-kinesis/consumer"
 *
 * const retire = EnhancedFanOut.deregisterStreamConsumer("orders", "billing")
 * ```
 *
 * @since 0.1.0
 * @category destructors
 */
export const deregisterStreamConsumer = (
  stream: Client.StreamId,
  consumerName: string
): Effect.Effect<void, KinesisError.KinesisError, Client.Client> =>
  Effect.flatMap(Effect.service(Client.Client), (client) => StreamConsumer.deregister(client, stream, consumerName))

/**
 * The Kinesis records of one subscription event.
 *
 * @example
 * ```ts
 * import type { EnhancedFanOut } from "@effect-kinesis/consumer"
 *
 * const children = (batch: EnhancedFanOut.ShardBatch) => batch.shardEnd?.childShards.map((c) => c.ShardId) ?? []
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ShardBatch {
  readonly records: ReadonlyArray<_Record>
  readonly millisBehindLatest: number | undefined
  /** Set on the last batch of a closed shard, with the shards that continue it. */
  readonly shardEnd: { readonly childShards: ReadonlyArray<ChildShard> } | undefined
}

/**
 * Where {@link readShard} starts: a shard's oldest record, records written from now on, the first
 * record at or after a time, or a record's own sequence number.
 *
 * @example
 * ```ts
 * import type { EnhancedFanOut } from "@effect-kinesis/consumer"
 *
 * const from: EnhancedFanOut.StartingPosition = { atSequenceNumber: "49590338271490256608559692538361571095921575989136588898" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type StartingPosition =
  | "TRIM_HORIZON"
  | "LATEST"
  | { readonly atTimestamp: Date }
  | { readonly atSequenceNumber: string }

/**
 * Options of {@link readShard}.
 *
 * @example
 * ```ts
 * import type { EnhancedFanOut } from "@effect-kinesis/consumer"
 *
 * const options: EnhancedFanOut.ReadShardOptions = {
 *   stream: "orders",
 *   consumerARN: "arn:aws:kinesis:eu-west-1:123456789012:stream/orders/consumer/billing:1700000000",
 *   shardId: "shardId-000000000000"
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ReadShardOptions {
  readonly stream: Client.StreamId
  /** A registered, ACTIVE stream consumer (see {@link registerStreamConsumer}). */
  readonly consumerARN: string
  readonly shardId: string
  /** Default `"TRIM_HORIZON"`. */
  readonly startingPosition?: StartingPosition | undefined
  readonly settings?: Settings | undefined
}

/**
 * One shard's records through enhanced fan-out, without leases or checkpoints: subscriptions are
 * renewed across the 5-minute cut-off, stalls and transient errors, and the stream ends after the
 * batch that carries `shardEnd`. Fails only with errors that retrying cannot fix.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { EnhancedFanOut } from "@effect-kinesis/consumer"
 *
 * const program = Effect.gen(function*() {
 *   const consumer = yield* EnhancedFanOut.registerStreamConsumer("orders", "audit")
 *   yield* EnhancedFanOut.readShard({
 *     stream: "orders",
 *     consumerARN: consumer.ConsumerARN!,
 *     shardId: "shardId-000000000000"
 *   }).pipe(Stream.runForEach((batch) => Effect.log(`${batch.records.length} records`)))
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const readShard = (
  options: ReadShardOptions
): Stream.Stream<ShardBatch, KinesisError.KinesisError, Client.Client> =>
  Stream.unwrap(Effect.map(Effect.service(Client.Client), (client) => {
    const start = options.startingPosition ?? "TRIM_HORIZON"
    const from = start === "TRIM_HORIZON"
      ? { position: ExtendedSequenceNumber.trimHorizon, timestamp: undefined }
      : start === "LATEST"
      ? { position: ExtendedSequenceNumber.latest, timestamp: undefined }
      : "atTimestamp" in start
      ? { position: ExtendedSequenceNumber.atTimestamp, timestamp: start.atTimestamp }
      : { position: ExtendedSequenceNumber.make(start.atSequenceNumber), timestamp: undefined }
    return FanOutFetcher.make(
      client,
      options.stream,
      options.consumerARN,
      FanOutFetcher.resolveSettings(options.settings)
    )
      .fetch(options.shardId, from)
  }))
