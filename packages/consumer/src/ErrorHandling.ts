/**
 * What to do when processing a record fails (after Reacto-KinesiX): retry it `retries` times,
 * then either skip it ({@link retryAndSkip}) or stop processing the shard ({@link retryAndStop}).
 * Before skipping or stopping, `onMaxRetryExceeded` gets the record — the place for a dead-letter
 * queue. A record that cannot be decoded takes the same path (without retries: decoding again
 * gives the same answer). A stopped shard is not checkpointed past the failing record.
 *
 * Records older than `maxRecordAge` are skipped unprocessed; `onFailure` (an on-failure destination,
 * see `FailureDestination`) receives every record skipped.
 *
 * Use {@link processShard} with `Consumer.shardedStream`, or pass the options to
 * `Consumer.consumeWith`.
 *
 * @since 0.1.0
 */
import type { InvalidSetting, KinesisError } from "@effect-kinesis/core"
import { type Duration, Effect, type Schedule, Stream } from "effect"
import type { ShardStream } from "./Consumer.ts"
import type { RecordDecodeFailed } from "./ConsumerError.ts"
import type { ConsumerRecord } from "./ConsumerRecord.ts"
import type { FailureDestination } from "./FailureDestination.ts"
import { letFinishFor } from "./internal/checkpointer.ts"
import { whilePaused } from "./internal/control.ts"
import * as RecordHandling from "./internal/recordHandling.ts"
import * as ValidateSettings from "./internal/validateSettings.ts"

/**
 * Retry, then skip the record and go on with the next.
 *
 * @since 0.1.0
 * @category models
 */
export interface RetryAndSkip {
  readonly _tag: "RetryAndSkip"
  readonly retries: number
  readonly schedule: Schedule.Schedule<unknown, unknown> | undefined
}

/**
 * Retry, then stop processing the shard (per-key order matters more than progress).
 *
 * @since 0.1.0
 * @category models
 */
export interface RetryAndStop {
  readonly _tag: "RetryAndStop"
  readonly retries: number
  readonly schedule: Schedule.Schedule<unknown, unknown> | undefined
}

/**
 * An error handling mode.
 *
 * @example
 * ```ts
 * import { ErrorHandling } from "@effect-kinesis/consumer"
 *
 * const mode: ErrorHandling.Mode = ErrorHandling.retryAndSkip(3)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Mode = RetryAndSkip | RetryAndStop

/**
 * Retry `retries` times (spaced by `schedule`, default: at once), then skip the record.
 *
 * @example
 * ```ts
 * import { Schedule } from "effect"
 * import { ErrorHandling } from "@effect-kinesis/consumer"
 *
 * const mode = ErrorHandling.retryAndSkip(3, { schedule: Schedule.exponential("100 millis") })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const retryAndSkip = (
  retries: number,
  options: { readonly schedule?: Schedule.Schedule<unknown, unknown> | undefined } = {}
): Mode => ({ _tag: "RetryAndSkip", retries, schedule: options.schedule })

/**
 * Retry `retries` times (spaced by `schedule`, default: at once), then stop the shard.
 *
 * @example
 * ```ts
 * import { ErrorHandling } from "@effect-kinesis/consumer"
 *
 * const mode = ErrorHandling.retryAndStop(5)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const retryAndStop = (
  retries: number,
  options: { readonly schedule?: Schedule.Schedule<unknown, unknown> | undefined } = {}
): Mode => ({ _tag: "RetryAndStop", retries, schedule: options.schedule })

/**
 * A record given up on: processing failed after all retries, or it could not be decoded.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { ErrorHandling } from "@effect-kinesis/consumer"
 *
 * const deadLetter = (failure: ErrorHandling.Failure<string, Error>) =>
 *   failure._tag === "ProcessingFailed"
 *     ? Effect.logError(`giving up on ${failure.record.sequenceNumber}`, failure.error)
 *     : Effect.logError(`undecodable ${failure.error.record.sequenceNumber}`)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Failure<A, E> =
  | { readonly _tag: "ProcessingFailed"; readonly record: ConsumerRecord<A>; readonly error: E; readonly mode: Mode }
  | { readonly _tag: "DecodingFailed"; readonly error: RecordDecodeFailed; readonly mode: Mode }

/**
 * What became of one record in {@link processShard}.
 *
 * @since 0.1.0
 * @category models
 */
export type Handled<A, E> =
  | { readonly _tag: "Processed"; readonly record: ConsumerRecord<A> }
  | { readonly _tag: "Skipped"; readonly failure: Failure<A, E> }
  /** Older than `maxRecordAge` when due for an attempt: given to `onFailure`, not processed (again). */
  | { readonly _tag: "TooOld"; readonly record: ConsumerRecord<A> }

/**
 * Options of {@link processShard}.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ErrorHandling } from "@effect-kinesis/consumer"
 *
 * const options: ErrorHandling.Options<string, Error, never> = {
 *   mode: ErrorHandling.retryAndStop(3),
 *   onMaxRetryExceeded: (failure) => Effect.logError(failure._tag)
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<A, E, R> {
  /** The mode, or a function choosing one per record (e.g. by its data). */
  readonly mode: Mode | ((record: ConsumerRecord<A> | RecordDecodeFailed) => Mode)
  /** Called before a record is skipped or its shard stopped. Default: a warning is logged. */
  readonly onMaxRetryExceeded?: ((failure: Failure<A, E>) => Effect.Effect<void, never, R>) | undefined
  /**
   * A record older than this (by its `approximateArrivalTimestamp`) when due for its first
   * attempt or a retry is not processed: it goes to `onFailure` and is skipped, whatever the mode
   * (Lambda's `MaximumRecordAgeInSeconds`). Default: no limit.
   */
  readonly maxRecordAge?: Duration.Input | undefined
  /**
   * The on-failure destination of the records skipped: given up on under `RetryAndSkip`
   * (`RetriesExhausted`, or `Undecodable`), or too old. Under `RetryAndStop` a record given up on
   * is not skipped, so it does not go there (it is processed again after a restart). Records
   * are checkpointed past only once it has taken them (retried until it does). Called after
   * `onMaxRetryExceeded`. Default: none.
   */
  readonly onFailure?: FailureDestination<A, E, R> | undefined
}

/**
 * Processes a shard's records one at a time with `handler`, staging each processed or skipped
 * record on the shard's checkpointer, per the error handling mode. The stream ends (without
 * failing) when a shard is stopped. Follow it with `checkpointBatched`. A stop of the consumer
 * lets the record being handled finish (its `shutdownGracePeriod`).
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Consumer, ErrorHandling } from "@effect-kinesis/consumer"
 * import { Serde } from "@effect-kinesis/core"
 *
 * const program = Consumer.shardedStream({ stream: "orders", applicationName: "billing", deserializer: Serde.string }).pipe(
 *   Stream.flatMap((shard) =>
 *     ErrorHandling.processShard(shard, (record) => Effect.log(record.data), { mode: ErrorHandling.retryAndSkip(3) }).pipe(
 *       shard.checkpointer.checkpointBatched({ records: 500, interval: "5 seconds" })
 *     ), { concurrency: "unbounded" }),
 *   Stream.runDrain
 * )
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const processShard = <A, E, R, R2 = never>(
  shard: ShardStream<A>,
  handler: (record: ConsumerRecord<A>) => Effect.Effect<unknown, E, R>,
  options: Options<A, E, R2>
): Stream.Stream<Handled<A, E>, KinesisError.KinesisError | InvalidSetting.InvalidSetting, R | R2> => {
  const invalid = ValidateSettings.errorHandling(undefined, options)
  if (invalid !== undefined) return Stream.fail(invalid)
  const handle = RecordHandling.make(shard.shardId, handler, options)
  // A stop lets the record being handled (retries, dead-lettering) finish within the consumer's
  // `shutdownGracePeriod`.
  const finishing = letFinishFor(shard.checkpointer)
  return shard.results.pipe(
    // A pause waits before the record, outside the part a stop lets finish.
    Stream.mapEffect((result) =>
      Effect.andThen(
        whilePaused(shard.checkpointer, () => false),
        finishing(Effect.tap(handle(result), (outcome) =>
          outcome === RecordHandling.STOP
            ? Effect.void
            : shard.checkpointer.stage(RecordHandling.positionOf(outcome))))
      )
    ),
    Stream.takeWhile((outcome) => outcome !== RecordHandling.STOP),
    Stream.map((outcome) => outcome as Handled<A, E>)
  )
}
