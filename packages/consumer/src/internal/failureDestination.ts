/**
 * Handing records given up on to the user's on-failure destination, retried until it takes them:
 * the caller stages a record only after this returns, so a record is never checkpointed past
 * unless it was processed or delivered.
 *
 * @internal
 */
import { Duration, Effect, Schedule, Sink, Stream } from "effect"
import type { RecordDecodeFailed } from "../ConsumerError.ts"
import type { ConsumerRecord } from "../ConsumerRecord.ts"
import type {
  FailedRecord,
  FailureDestination,
  RecordTooOld,
  RetriesExhausted,
  Undecodable
} from "../FailureDestination.ts"

/**
 * From 100 ms, capped at 10 s, jittered: the destination's retries, and a failing batch's by
 * default ("with backoff", as Lambda says).
 *
 * @internal
 */
export const backoff: Schedule.Schedule<unknown, unknown> = Schedule.exponential("100 millis").pipe(
  Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(10)))),
  Schedule.jittered
)

const positionOf = (
  record: { readonly shardId: string; readonly sequenceNumber: string; readonly subSequenceNumber: number }
) => ({
  shardId: record.shardId,
  sequenceNumber: record.sequenceNumber,
  subSequenceNumber: record.subSequenceNumber
})

/** @internal */
export const undecodable = (error: RecordDecodeFailed): Undecodable => ({
  _tag: "Undecodable",
  ...positionOf(error.record),
  error,
  attempts: 0
})

/** @internal */
export const exhausted = <A, E>(record: ConsumerRecord<A>, error: E, attempts: number): RetriesExhausted<A, E> => ({
  _tag: "RetriesExhausted",
  ...positionOf(record),
  record,
  error,
  attempts
})

/** @internal */
export const tooOld = <A, E>(
  record: ConsumerRecord<A>,
  error: E | undefined,
  attempts: number
): RecordTooOld<A, E> => ({
  _tag: "RecordTooOld",
  ...positionOf(record),
  record,
  error,
  attempts
})

const retried = <R>(effect: Effect.Effect<unknown, unknown, R>, what: string): Effect.Effect<void, never, R> =>
  effect.pipe(
    Effect.tapError((error) =>
      Effect.logWarning(`the on-failure destination failed for ${what}, retrying`, errorOf(error))
    ),
    Effect.retry(backoff),
    // The schedule recurs forever: a failure cannot come out of it.
    Effect.orDie,
    Effect.asVoid
  )

// Not the error object itself when it is a deserializer's: its message may quote the data.
const errorOf = (error: unknown) =>
  typeof error === "object" && error !== null && "_tag" in error && error._tag === "RecordDecodeFailed"
    ? "RecordDecodeFailed"
    : error

const where = (failed: FailedRecord<unknown, unknown>) =>
  `${failed.shardId} ${failed.sequenceNumber}/${failed.subSequenceNumber}`

/**
 * Delivers `failed` (in shard order) to `destination`, or logs a warning for each when there is
 * none (never silent).
 *
 * @internal
 */
export const deliver = <A, E, R>(
  destination: FailureDestination<A, E, R> | undefined,
  failed: ReadonlyArray<FailedRecord<A, E>>
): Effect.Effect<void, never, R> => {
  if (failed.length === 0) return Effect.void
  if (destination === undefined) {
    return Effect.forEach(failed, (f) =>
      Effect.logWarning(
        `giving up on record ${f.sequenceNumber}/${f.subSequenceNumber} of ${f.shardId} (${f._tag}, ${f.attempts} attempts)`,
        f._tag === "Undecodable" ? "it could not be decoded" : f.error
      ), { discard: true })
  }
  if (Sink.isSink(destination)) {
    const sink = destination as Sink.Sink<unknown, FailedRecord<A, E>, unknown, unknown, R>
    return retried(
      Stream.run(Stream.fromArray(failed), sink),
      failed.length === 1 ? where(failed[0]!) : `${failed.length} records from ${where(failed[0]!)}`
    )
  }
  const send = destination as (failed: FailedRecord<A, E>) => Effect.Effect<unknown, unknown, R>
  // One at a time, so that a retry never sends a record the destination already took.
  return Effect.forEach(failed, (f) => retried(Effect.suspend(() => send(f)), where(f)), { discard: true })
}
