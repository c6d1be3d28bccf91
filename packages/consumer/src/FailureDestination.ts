/**
 * Where the consumer sends the records it gives up on — Lambda's on-failure destination, as any
 * Effect sink: a function returning an effect (write to a queue, a table, another stream through
 * a `Producer`) or an `effect` `Sink`. Each {@link FailedRecord} says why (retries exhausted, too
 * old, undecodable), where (shard, sequence and sub-sequence number), how many attempts it had,
 * and carries the record and the last error.
 *
 * Used by `BatchProcessing` (`onFailure`) and by `ErrorHandling` (`onFailure`, for the records it
 * skips). A record is checkpointed past only once the destination has taken it: a destination
 * that fails is retried (backoff from 100 ms to 10 s, a warning logged each time) for as long as
 * it takes, and the shard waits meanwhile.
 *
 * @since 0.2.0
 */
import type { Effect, Sink } from "effect"
import type { RecordDecodeFailed } from "./ConsumerError.ts"
import type { ConsumerRecord } from "./ConsumerRecord.ts"

/**
 * A record whose processing failed on every attempt allowed (`maxRetryAttempts`, or the `retries`
 * of an `ErrorHandling` mode).
 *
 * @example
 * ```ts
 * import type { FailureDestination } from "@effect-kinesis/consumer"
 *
 * const where = (failed: FailureDestination.RetriesExhausted<string, Error>) =>
 *   `${failed.shardId}/${failed.sequenceNumber}/${failed.subSequenceNumber} after ${failed.attempts}: ${failed.error.message}`
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface RetriesExhausted<A, E> {
  readonly _tag: "RetriesExhausted"
  readonly shardId: string
  readonly sequenceNumber: string
  readonly subSequenceNumber: number
  readonly record: ConsumerRecord<A>
  /** The failure of its last attempt. */
  readonly error: E
  /** How many times the handler was called with this record. */
  readonly attempts: number
}

/**
 * A record older than `maxRecordAge` (by its `approximateArrivalTimestamp`) when it was due for a
 * first attempt or a retry: it is not processed (again).
 *
 * @example
 * ```ts
 * import type { FailureDestination } from "@effect-kinesis/consumer"
 *
 * const neverTried = (failed: FailureDestination.RecordTooOld<string, Error>) => failed.attempts === 0
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface RecordTooOld<A, E> {
  readonly _tag: "RecordTooOld"
  readonly shardId: string
  readonly sequenceNumber: string
  readonly subSequenceNumber: number
  readonly record: ConsumerRecord<A>
  /** The failure of its last attempt; `undefined` when it was never attempted. */
  readonly error: E | undefined
  readonly attempts: number
}

/**
 * A record the deserializer rejected; `error.record` has its raw bytes.
 *
 * @example
 * ```ts
 * import type { FailureDestination } from "@effect-kinesis/consumer"
 *
 * const rawBytes = (failed: FailureDestination.Undecodable) => failed.error.record.data
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Undecodable {
  readonly _tag: "Undecodable"
  readonly shardId: string
  readonly sequenceNumber: string
  readonly subSequenceNumber: number
  readonly error: RecordDecodeFailed
  readonly attempts: 0
}

/**
 * A record given up on, with the reason in its `_tag`.
 *
 * @example
 * ```ts
 * import type { FailureDestination } from "@effect-kinesis/consumer"
 *
 * const reason = (failed: FailureDestination.FailedRecord<string, Error>) => failed._tag
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export type FailedRecord<A, E> = RetriesExhausted<A, E> | RecordTooOld<A, E> | Undecodable

/**
 * An on-failure destination: an effect per failed record, or a `Sink` run over the records given
 * up on together (one batch's, in shard order). Failures of the effect or the sink are retried;
 * a sink is then run again over the same records, so it should tolerate a record twice.
 *
 * @example
 * ```ts
 * import { Effect, Queue } from "effect"
 * import type { FailureDestination } from "@effect-kinesis/consumer"
 *
 * const toQueue = Effect.map(
 *   Queue.unbounded<FailureDestination.FailedRecord<string, Error>>(),
 *   (queue): FailureDestination.FailureDestination<string, Error> => (failed) => Queue.offer(queue, failed)
 * )
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export type FailureDestination<A, E, R = never> =
  | ((failed: FailedRecord<A, E>) => Effect.Effect<unknown, unknown, R>)
  | Sink.Sink<unknown, FailedRecord<A, E>, unknown, unknown, R>

/**
 * The metadata of a failed record as plain JSON values, for a destination that writes text (a
 * queue message, a line of a file, a record of another stream), like the document Lambda sends to
 * its on-failure destination. It holds no record data and no deserializer message (either may
 * hold personal data): add `record.data` yourself if the destination may keep it.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { FailureDestination } from "@effect-kinesis/consumer"
 *
 * const logIt: FailureDestination.FailureDestination<string, Error> = (failed) =>
 *   Effect.logError(JSON.stringify(FailureDestination.describe(failed)))
 * ```
 *
 * @since 0.2.0
 * @category utils
 */
export const describe = (failed: FailedRecord<unknown, unknown>): {
  readonly reason: FailedRecord<unknown, unknown>["_tag"]
  readonly shardId: string
  readonly sequenceNumber: string
  readonly subSequenceNumber: number
  readonly partitionKey: string
  readonly approximateArrivalTimestamp: string | undefined
  readonly attempts: number
  readonly error: string | undefined
} => {
  const record = failed._tag === "Undecodable" ? failed.error.record : failed.record
  return {
    reason: failed._tag,
    shardId: failed.shardId,
    sequenceNumber: failed.sequenceNumber,
    subSequenceNumber: failed.subSequenceNumber,
    partitionKey: record.partitionKey,
    approximateArrivalTimestamp: record.approximateArrivalTimestamp?.toISOString(),
    attempts: failed.attempts,
    error: failed._tag === "Undecodable" ? "the deserializer rejected the record" : errorText(failed.error)
  }
}

const errorText = (error: unknown): string | undefined => {
  if (error === undefined) return undefined
  if (typeof error === "object" && error !== null) {
    const tag = "_tag" in error && typeof error._tag === "string" ? error._tag : undefined
    const message = "message" in error && typeof error.message === "string" ? error.message : undefined
    if (tag !== undefined && message !== undefined && message !== "") return `${tag}: ${message}`
    if (tag !== undefined || message !== undefined) return tag ?? message
  }
  return String(error)
}
