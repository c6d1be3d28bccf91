/**
 * Ordered parallelism within a shard (after zio-kinesis's partitioned checkpoints and kcl_ex's
 * Broadway batchers): records with the same partition key are handled one after another in shard
 * order, records of different keys concurrently, up to `parallelism` at a time — no cap (AWS
 * Lambda caps its parallelization factor at 10).
 *
 * Only the contiguous prefix of finished records is staged, by `(sequenceNumber,
 * subSequenceNumber)`: a checkpoint never passes a record still running or not yet started, so a
 * crash skips nothing (records of other keys that finished after an unfinished one are processed
 * again by the next owner: at-least-once, as always). A slow record holds the checkpoint, not the
 * other keys: they go on until `window` records wait behind it, then the shard's reading waits.
 *
 * With `Consumer.consumeWith`, set its `parallelism` option. With `Consumer.shardedStream`, use
 * {@link processShard} and follow it with `checkpointBatched`.
 *
 * @since 0.2.0
 */
import type { InvalidSetting, KinesisError } from "@effect-kinesis/core"
import { type Effect, Stream } from "effect"
import type { ShardStream } from "./Consumer.ts"
import type { RecordDecodeFailed } from "./ConsumerError.ts"
import type { ConsumerRecord } from "./ConsumerRecord.ts"
import type * as ErrorHandling from "./ErrorHandling.ts"
import * as Partitioned from "./internal/partitioned.ts"
import * as ValidateSettings from "./internal/validateSettings.ts"

/**
 * Options of {@link processShard}.
 *
 * @example
 * ```ts
 * import { ErrorHandling, type Parallel } from "@effect-kinesis/consumer"
 *
 * const options: Parallel.Options<string, Error, never> = {
 *   parallelism: 16,
 *   errorHandling: { mode: ErrorHandling.retryAndSkip(3) }
 * }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Options<A, E, R> {
  /** Handlers running at a time in the shard (a positive integer; 1 is sequential). */
  readonly parallelism: number
  /**
   * Records read but not yet checkpointable (running, waiting for their key, or finished behind
   * an unfinished record) at most; the shard's reading waits beyond it. At least `parallelism`.
   * Default: `parallelism × 10`, at least 1000.
   */
  readonly window?: number | undefined
  /**
   * Retry, skip or stop per `ErrorHandling` (each record's retries hold only its own key). A
   * record given up on with `retryAndStop` stops the shard once the records before it are done:
   * the checkpoint stays before it, and records of other keys after it that already ran are
   * processed again by the next owner. Default: a failing handler fails the stream, and undecodable
   * records follow the consumer's `onDecodeFailure`.
   */
  readonly errorHandling?: ErrorHandling.Options<A, E, R> | undefined
}

/**
 * Processes a shard's records with `handler`, `parallelism` at a time, in order per partition
 * key, staging the contiguous prefix of finished records on the shard's checkpointer. Emits what
 * became of each record, in shard order, once it is staged; ends when the shard ends (after every
 * record is staged, so that the shard's end and its children follow), when the lease is lost or
 * the shard is stopped (no new record starts; the running ones finish), or at a record given up
 * on with `retryAndStop`. Interrupting it (a consumer's stop) starts no new record and lets the
 * running ones finish within the consumer's `shutdownGracePeriod`. Follow it with
 * `checkpointBatched`.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Serde } from "@effect-kinesis/core"
 * import { Consumer, Parallel } from "@effect-kinesis/consumer"
 *
 * const program = Consumer.shardedStream({ stream: "orders", applicationName: "billing", deserializer: Serde.string }).pipe(
 *   Stream.flatMap((shard) =>
 *     Parallel.processShard(shard, (record) => Effect.log(record.data), { parallelism: 16 }).pipe(
 *       shard.checkpointer.checkpointBatched({ records: 1000, interval: "5 seconds" })
 *     ), { concurrency: "unbounded" }),
 *   Stream.runDrain
 * )
 * ```
 *
 * @since 0.2.0
 * @category combinators
 */
export const processShard = <A, E, R, R2 = never>(
  shard: ShardStream<A>,
  handler: (record: ConsumerRecord<A>) => Effect.Effect<unknown, E, R>,
  options: Options<A, E, R2>
): Stream.Stream<
  ErrorHandling.Handled<A, E>,
  E | KinesisError.KinesisError | RecordDecodeFailed | InvalidSetting.InvalidSetting,
  R | R2
> => {
  const invalid = ValidateSettings.parallel(options.parallelism, options.window) ??
    ValidateSettings.errorHandling("errorHandling", options.errorHandling)
  return invalid !== undefined ? Stream.fail(invalid) : Partitioned.processShard(shard, handler, options)
}
