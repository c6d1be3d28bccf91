/**
 * Checkpointing one shard. Processing code stages each record once it is done with it; the
 * checkpointer writes the last staged position to the lease store when asked, in batches
 * ({@link Checkpointer.checkpointBatched}), and always once more when the shard stream ends, fails
 * or is interrupted. A checkpoint means "every record up to and including this one is
 * processed", by `(sequenceNumber, subSequenceNumber)`.
 *
 * Stage every record once processed, including the last one of a shard: a closed shard is
 * checkpointed `SHARD_END` (and its children start) only when the last record delivered from it
 * was staged. `Consumer.consumeWith` and `ErrorHandling.processShard` stage for you.
 *
 * @since 0.1.0
 */
import type { ExtendedSequenceNumber, InvalidSetting } from "@effect-kinesis/core"
import type { Duration, Effect, Stream } from "effect"
import type { ShardLeaseLost } from "./ConsumerError.ts"
import type { LeaseStoreError } from "./LeaseRepository.ts"

/**
 * Anything with a record position: a `ConsumerRecord`, or an `ExtendedSequenceNumber`.
 *
 * @example
 * ```ts
 * import type { Checkpointer } from "@effect-kinesis/consumer"
 *
 * const position: Checkpointer.Checkpointable = { sequenceNumber: "49590338271490256608559692538361571095921575989136588898", subSequenceNumber: 0 }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Checkpointable {
  readonly sequenceNumber: string
  readonly subSequenceNumber: number
}

/**
 * The checkpointer of one shard, handed out with the shard's records by `Consumer.shardedStream`.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import type { Consumer } from "@effect-kinesis/consumer"
 *
 * const processShard = (shard: Consumer.ShardStream<string>) =>
 *   shard.records.pipe(
 *     Stream.mapEffect((record) => shard.checkpointer.stageOnSuccess(Effect.log(record.data), record)),
 *     shard.checkpointer.checkpointBatched({ records: 1000, interval: "5 seconds" })
 *   )
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Checkpointer {
  readonly shardId: string
  /** Marks a record as processed; the next checkpoint writes it. Positions only move forward. */
  readonly stage: (record: Checkpointable) => Effect.Effect<void>
  /**
   * Writes the last staged position, if any and not written yet. Store errors are retried per the
   * consumer's checkpoint schedule (never past the lease's expiry); fails with `ShardLeaseLost`
   * when this worker no longer holds the lease — stop processing the shard then.
   */
  readonly checkpoint: Effect.Effect<void, ShardLeaseLost | LeaseStoreError>
  /** Stages the record and checkpoints. */
  readonly checkpointNow: (record: Checkpointable) => Effect.Effect<void, ShardLeaseLost | LeaseStoreError>
  /**
   * Runs `effect` and stages `record` when it succeeds, even if interrupted right after. A stop of
   * the consumer lets `effect` finish within the consumer's `shutdownGracePeriod` (and stages
   * the record), so that it is checkpointed before the lease is released.
   */
  readonly stageOnSuccess: <A, E, R>(effect: Effect.Effect<A, E, R>, record: Checkpointable) => Effect.Effect<A, E, R>
  /**
   * Checkpoints after every `records` elements (counted per chunk, so a batch may run a chunk
   * over) and every `interval`, passing the elements through. Stage records upstream of it. When
   * the lease is lost the stream ends quietly; a store failure that outlasts the retries fails it.
   * `records` must be a positive integer and `interval` a positive duration, else the stream fails
   * with `InvalidSetting`.
   */
  readonly checkpointBatched: (options: {
    readonly records: number
    readonly interval: Duration.Input
  }) => <A, E, R>(
    self: Stream.Stream<A, E, R>
  ) => Stream.Stream<A, E | LeaseStoreError | InvalidSetting.InvalidSetting, R>
  /** The last position written. */
  readonly lastCheckpoint: Effect.Effect<ExtendedSequenceNumber.ExtendedSequenceNumber>
}
