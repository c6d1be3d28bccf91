/**
 * Handing records given up on to the user's on-failure destination, retried until it takes them:
 * the caller stages a record only after this returns, so a record is never checkpointed past
 * unless it was processed or delivered.
 *
 * @internal
 */
import { Duration, Effect, Schedule, Sink, Stream } from "effect"
import type { FailedRecord, FailureDestination } from "../FailureDestination.ts"

const retrySchedule = Schedule.exponential("100 millis").pipe(
  Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(10)))),
  Schedule.jittered
)

const retried = <R>(effect: Effect.Effect<unknown, unknown, R>, what: string): Effect.Effect<void, never, R> =>
  effect.pipe(
    Effect.tapError((error) =>
      Effect.logWarning(`the on-failure destination failed for ${what}, retrying`, errorOf(error))
    ),
    Effect.retry(retrySchedule),
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
