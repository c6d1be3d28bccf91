/**
 * Batch handlers with the failure handling of AWS Lambda's Kinesis event source mapping, for
 * handlers that write to a database or call an API in bulk: the handler gets up to `batchSize`
 * records of one shard (gathered for up to `batchWindow`) and returns either nothing (all
 * processed), or {@link itemFailures} naming the records that failed; failing with an error fails
 * the whole batch.
 *
 * - The checkpoint advances up to, not including, the first failed record; processing resumes
 *   from it, in order (records after it are attempted again, as Lambda does).
 * - `maxRetryAttempts`: retries of a failing batch (or of the rest of it from its first failed
 *   record); then the failed records go to `onFailure` and the shard moves on. Default: no limit.
 * - `maxRecordAge`: a record older than this (by `approximateArrivalTimestamp`) when due for an
 *   attempt goes to `onFailure` unprocessed. Default: no limit.
 * - `bisectOnError`: a batch that fails as a whole is split in two halves, each handled as a
 *   batch, first half first, down to single records: a poison record ends up alone. Splitting is
 *   not a retry (as in Lambda); a half starts with the retries of the batch it came from.
 * - `retrySchedule`: the wait between attempts (splits are attempted at once).
 * - `onFailure`: any Effect sink, see `FailureDestination`; undecodable records go there too,
 *   without an attempt. Without it, records given up on are logged as warnings.
 *
 * Records are identified by `(sequenceNumber, subSequenceNumber)`: the user records of one KPL
 * aggregate share a sequence number, and each can fail on its own (Lambda, which does not
 * deaggregate, can only fail the whole aggregate).
 *
 * @since 0.2.0
 */
import type { InvalidSetting, KinesisError } from "@effect-kinesis/core"
import { type Duration, Effect, Result, type Schedule, Stream } from "effect"
import type { Checkpointable } from "./Checkpointer.ts"
import * as Consumer from "./Consumer.ts"
import type { ConsumerError, RecordDecodeFailed } from "./ConsumerError.ts"
import type { ConsumerRecord } from "./ConsumerRecord.ts"
import type { FailedRecord, FailureDestination } from "./FailureDestination.ts"
import * as Internal from "./internal/batchProcessing.ts"
import { letFinishFor, stageMany } from "./internal/checkpointer.ts"
import { whilePaused } from "./internal/control.ts"
import * as ValidateSettings from "./internal/validateSettings.ts"

/**
 * One failed record of a batch, named by its position (a `ConsumerRecord` is one), with its error.
 *
 * @example
 * ```ts
 * import type { BatchProcessing, ConsumerRecord } from "@effect-kinesis/consumer"
 *
 * declare const record: ConsumerRecord.ConsumerRecord<string>
 * const failure: BatchProcessing.ItemFailure<Error> = { record, error: new Error("rejected by the API") }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface ItemFailure<E> {
  readonly record: Checkpointable
  readonly error: E
}

/**
 * A batch handler's report of the records that failed (Lambda's `batchItemFailures`). Empty means
 * the whole batch was processed.
 *
 * @since 0.2.0
 * @category models
 */
export interface BatchItemFailures<E> {
  readonly _tag: "BatchItemFailures"
  readonly failures: ReadonlyArray<ItemFailure<E>>
}

/**
 * The result of a batch handler whose batch partly failed. Only the first failed record (by
 * position) decides where the batch resumes; every failure named is given to the destination if
 * the retries run out. Naming a record that is not in the batch fails the whole batch (as Lambda
 * does with an unknown `itemIdentifier`).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { BatchProcessing, type ConsumerRecord } from "@effect-kinesis/consumer"
 *
 * declare const saveAll: (rows: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<boolean>>
 *
 * const handler = (records: ReadonlyArray<ConsumerRecord.ConsumerRecord<string>>) =>
 *   Effect.map(saveAll(records.map((r) => r.data)), (saved) =>
 *     BatchProcessing.itemFailures(
 *       records.flatMap((record, i) => saved[i] ? [] : [{ record, error: new Error("not saved") }])
 *     ))
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const itemFailures = <E>(failures: Iterable<ItemFailure<E>>): BatchItemFailures<E> => ({
  _tag: "BatchItemFailures",
  failures: Array.from(failures)
})

/**
 * What became of one record: processed, or given to the on-failure destination.
 *
 * @since 0.2.0
 * @category models
 */
export type Handled<A, E> =
  | { readonly _tag: "Processed"; readonly record: ConsumerRecord<A> }
  | { readonly _tag: "Failed"; readonly failed: FailedRecord<A, E> }

/**
 * Batching and failure settings, with the Lambda event source mapping setting each mirrors.
 *
 * @example
 * ```ts
 * import { Effect, Schedule } from "effect"
 * import type { BatchProcessing } from "@effect-kinesis/consumer"
 *
 * const options: BatchProcessing.Options<string, Error, never> = {
 *   batchSize: 500,
 *   batchWindow: "1 second",
 *   maxRetryAttempts: 3,
 *   maxRecordAge: "1 hour",
 *   bisectOnError: true,
 *   retrySchedule: Schedule.spaced("1 second"),
 *   onFailure: (failed) => Effect.logError(`gave up on ${failed.sequenceNumber}: ${failed._tag}`)
 * }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Options<A, E, R> {
  /** Records per call of the handler at most (`BatchSize`). Default 100, as Lambda's. */
  readonly batchSize?: number | undefined
  /**
   * How long to gather records for a batch before calling the handler with fewer than
   * `batchSize` (`MaximumBatchingWindowInSeconds`). Default 0, as Lambda's: the records fetched
   * together, cut at `batchSize`.
   */
  readonly batchWindow?: Duration.Input | undefined
  /**
   * Retries after the first failed attempt before giving up (`MaximumRetryAttempts`); 0 gives up
   * at the first failure. Default: no limit, as Lambda's (a poison record then blocks its shard
   * until `maxRecordAge`, or until the stream's retention drops it).
   */
  readonly maxRetryAttempts?: number | undefined
  /** Records older than this are given up on unprocessed (`MaximumRecordAgeInSeconds`). Default: no limit. */
  readonly maxRecordAge?: Duration.Input | undefined
  /** Split a batch that fails as a whole in two, recursively (`BisectBatchOnFunctionError`). Default `false`. */
  readonly bisectOnError?: boolean | undefined
  /**
   * The wait between attempts. Default: exponential from 100 ms, capped at 10 s, jittered. A
   * schedule that ends before `maxRetryAttempts` ends the retries too.
   */
  readonly retrySchedule?: Schedule.Schedule<unknown, unknown> | undefined
  /** The on-failure destination (`DestinationConfig.OnFailure`). Default: a warning per record. */
  readonly onFailure?: FailureDestination<A, E, R> | undefined
}

/**
 * A batch handler: returns nothing when every record was processed, {@link itemFailures} when
 * some failed; fails when the whole batch failed. (A defect is not a batch failure: it fails the
 * consumer.) The result type is checked so that a reported failure's error is an `E`: end an
 * effect that returns something else with `Effect.asVoid`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { BatchProcessing } from "@effect-kinesis/consumer"
 *
 * declare const insertRows: (rows: ReadonlyArray<string>) => Effect.Effect<void, Error>
 * const handler: BatchProcessing.Handler<string, Error, never> = (records) => insertRows(records.map((r) => r.data))
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export type Handler<A, E, R> = (
  records: ReadonlyArray<ConsumerRecord<A>>
) => Effect.Effect<void | BatchItemFailures<E>, E, R>

// Records fetched together, cut at `size`; or gathered for up to `window`.
const batches = <X, E, R>(
  self: Stream.Stream<X, E, R>,
  size: number,
  window: Duration.Input | undefined
): Stream.Stream<ReadonlyArray<X>, E, R> => {
  if (window !== undefined && window !== 0) return Stream.groupedWithin(self, size, window)
  return Stream.chunks(self).pipe(
    Stream.flatMap((chunk) => {
      if (chunk.length <= size) return Stream.succeed(chunk)
      const parts: Array<ReadonlyArray<X>> = []
      for (let i = 0; i < chunk.length; i += size) parts.push(chunk.slice(i, i + size))
      return Stream.fromArray(parts)
    })
  )
}

/**
 * Handles one shard's records in batches with `handler`, staging on the shard's checkpointer
 * only what was processed or delivered to the destination, in order. Follow it with
 * `checkpointBatched`. A stop of the consumer lets the running call of the handler finish (within
 * `shutdownGracePeriod`) and starts no new attempt; a lost lease starts no new attempt either.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Serde } from "@effect-kinesis/core"
 * import { BatchProcessing, Consumer } from "@effect-kinesis/consumer"
 *
 * declare const insertRows: (rows: ReadonlyArray<string>) => Effect.Effect<void, Error>
 *
 * const program = Consumer.shardedStream({ stream: "orders", applicationName: "billing", deserializer: Serde.string }).pipe(
 *   Stream.flatMap((shard) =>
 *     BatchProcessing.processBatches(shard, (records) => insertRows(records.map((r) => r.data)), {
 *       batchSize: 500,
 *       maxRetryAttempts: 3,
 *       bisectOnError: true
 *     }).pipe(shard.checkpointer.checkpointBatched({ records: 1000, interval: "5 seconds" })), { concurrency: "unbounded" }),
 *   Stream.runDrain
 * )
 * ```
 *
 * @since 0.2.0
 * @category combinators
 */
export const processBatches = <A, E, R, R2 = never>(
  shard: Consumer.ShardStream<A>,
  handler: Handler<A, E, R>,
  options: Options<A, E, R2> = {}
): Stream.Stream<Handled<A, E>, KinesisError.KinesisError | InvalidSetting.InvalidSetting, R | R2> => {
  const invalid = ValidateSettings.batchProcessing(options)
  if (invalid !== undefined) return Stream.fail(invalid)
  const handle = Internal.make(
    handler,
    options,
    (position, count) => stageMany(shard.checkpointer, position, count),
    (stopped) => whilePaused(shard.checkpointer, stopped)
  )
  const finishing = letFinishFor(shard.checkpointer)
  const active = Consumer.isActive(shard)
  const size = Math.max(1, Math.floor(options.batchSize ?? 100))
  return batches<Result.Result<ConsumerRecord<A>, RecordDecodeFailed>, KinesisError.KinesisError, never>(
    shard.results,
    size,
    options.batchWindow
  ).pipe(
    Stream.mapEffect((items) => {
      let stopping = false
      return finishing(handle(items, () => stopping || !active()), () => {
        stopping = true
      })
    }),
    Stream.flattenIterable
  )
}

/**
 * Options of {@link consumeBatchesWith}: the consumer's, the batch settings, and checkpointing.
 *
 * @example
 * ```ts
 * import { Serde } from "@effect-kinesis/core"
 * import type { BatchProcessing } from "@effect-kinesis/consumer"
 *
 * const options: BatchProcessing.ConsumeBatchesOptions<string, Error, never> = {
 *   stream: "orders",
 *   applicationName: "billing",
 *   deserializer: Serde.string,
 *   batchSize: 200,
 *   maxRetryAttempts: 5,
 *   bisectOnError: true
 * }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface ConsumeBatchesOptions<A, E, R> extends Consumer.ShardedStreamOptions<A>, Options<A, E, R> {
  /** When to write checkpoints: see `Consumer.CheckpointSettings`. Default every 1000 records or 5 seconds. */
  readonly checkpoint?: Consumer.CheckpointSettings | undefined
  /** @deprecated Use `checkpoint: { records }`. */
  readonly checkpointBatchSize?: number | undefined
  /** @deprecated Use `checkpoint: { interval }`. */
  readonly checkpointInterval?: Duration.Input | undefined
}

/**
 * Runs `handler` on batches of every shard this worker holds, shards in parallel and each shard's
 * batches in order, with Lambda's failure semantics (see the module's documentation). Runs until
 * interrupted (a stop: the running call of the handler may finish within `shutdownGracePeriod`,
 * then checkpoints and releases the leases) or until the consumer fails; the handler's errors
 * never fail it.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Serde } from "@effect-kinesis/core"
 * import { BatchProcessing, FailureDestination } from "@effect-kinesis/consumer"
 *
 * declare const insertRows: (rows: ReadonlyArray<string>) => Effect.Effect<void, Error>
 *
 * const program = BatchProcessing.consumeBatchesWith((records) => insertRows(records.map((r) => r.data)), {
 *   stream: "orders",
 *   applicationName: "billing",
 *   deserializer: Serde.string,
 *   batchSize: 500,
 *   maxRetryAttempts: 3,
 *   maxRecordAge: "1 hour",
 *   bisectOnError: true,
 *   onFailure: (failed) => Effect.logError(JSON.stringify(FailureDestination.describe(failed)))
 * })
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const consumeBatchesWith = <A, E, R, R2 = never>(
  handler: Handler<A, E, R>,
  options: ConsumeBatchesOptions<A, E, R2>
): Effect.Effect<void, ConsumerError, R | R2 | Consumer.Consumer> => {
  const invalid = ValidateSettings.consumeBatchesWith(options)
  if (invalid !== undefined) return Effect.fail(invalid)
  const checkpointing = ValidateSettings.checkpointBatched(options)
  return Consumer.shardedStream(options).pipe(
    Stream.flatMap(
      (shard) => processBatches(shard, handler, options).pipe(shard.checkpointer.checkpointBatched(checkpointing)),
      { concurrency: "unbounded" }
    ),
    Stream.runDrain
  )
}
