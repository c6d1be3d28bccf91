/**
 * One record through the user's handler under an error handling mode, without staging it: the
 * caller stages in its own order (one at a time, or the contiguous prefix of records processed
 * concurrently).
 *
 * @internal
 */
import { Clock, Duration, Effect, Result } from "effect"
import type { RecordDecodeFailed } from "../ConsumerError.ts"
import type { ConsumerRecord } from "../ConsumerRecord.ts"
import type { Failure, Handled, Mode, Options } from "../ErrorHandling.ts"
import * as Destination from "./failureDestination.ts"

/** @internal */
export const STOP = Symbol.for("@effect-kinesis/consumer/ErrorHandling/stop")

// The result of an attempt not made: the record was too old.
const TOO_OLD = Symbol.for("@effect-kinesis/consumer/ErrorHandling/tooOld")

/** The outcome of one record: handled (processed or skipped), or the shard must stop before it. */
export type Outcome<A, E> = Handled<A, E> | typeof STOP

/**
 * Returns the function that runs one record (or decode failure) through `handler`, retrying and
 * giving up per `options`. A record given up on is skipped (its outcome says so) or stops the
 * shard ({@link STOP}); either way `onMaxRetryExceeded` (or a warning) is told first, and a
 * skipped one then goes to `onFailure`. A record older than `maxRecordAge` when due for an attempt
 * goes to `onFailure` unprocessed.
 *
 * @internal
 */
export const make = <A, E, R, R2>(
  shardId: string,
  handler: (record: ConsumerRecord<A>) => Effect.Effect<unknown, E, R>,
  options: Options<A, E, R2>
): (result: Result.Result<ConsumerRecord<A>, RecordDecodeFailed>) => Effect.Effect<Outcome<A, E>, never, R | R2> => {
  const modeFor = typeof options.mode === "function" ? options.mode : () => options.mode as Mode
  const destination = options.onFailure
  const maxAge = options.maxRecordAge === undefined
    ? undefined
    : Duration.toMillis(Duration.fromInputUnsafe(options.maxRecordAge))
  const giveUp = (
    failure: Failure<A, E>,
    position: { sequenceNumber: string; subSequenceNumber: number },
    attempts: number
  ) =>
    Effect.gen(function*() {
      const stop = failure.mode._tag === "RetryAndStop"
      // Never silent: without a hook, the record given up on is at least logged.
      if (options.onMaxRetryExceeded !== undefined) yield* options.onMaxRetryExceeded(failure)
      else if (destination === undefined || stop) {
        yield* Effect.logWarning(
          `${
            stop ? "stopping the shard at" : "skipping"
          } record ${position.sequenceNumber}/${position.subSequenceNumber} of ${shardId}`,
          // Not the deserializer's message: it may quote the record's data.
          failure._tag === "DecodingFailed" ? "it could not be decoded" : failure.error
        )
      }
      if (stop) return STOP
      if (destination !== undefined) {
        yield* Destination.deliver(destination, [
          failure._tag === "DecodingFailed"
            ? Destination.undecodable(failure.error)
            : Destination.exhausted(failure.record, failure.error, attempts)
        ])
      }
      return { _tag: "Skipped", failure } as Outcome<A, E>
    })

  return (result) => {
    if (Result.isFailure(result)) {
      const error = result.failure
      return giveUp({ _tag: "DecodingFailed", error, mode: modeFor(error) }, error.record, 0)
    }
    const record = result.success
    const mode = modeFor(record)
    const arrived = record.approximateArrivalTimestamp?.getTime()
    let attempts = 0
    let lastError: E | undefined
    const once = Effect.suspend(() => {
      attempts++
      return handler(record)
    })
    // Checked before every attempt, retries included, as Lambda checks before every invocation.
    const attempt = maxAge === undefined || arrived === undefined ? once : Effect.flatMap(
      Clock.currentTimeMillis,
      (now) =>
        now - arrived > maxAge
          ? Effect.succeed(TOO_OLD)
          : Effect.tapError(once, (error) =>
            Effect.sync(() => {
              lastError = error
            }))
    )
    const run = attempt.pipe(
      Effect.retry(
        mode.schedule === undefined ? { times: mode.retries } : { times: mode.retries, schedule: mode.schedule }
      )
    )
    return Effect.matchEffect(run, {
      onSuccess: (value) =>
        value === TOO_OLD
          ? Effect.as(
            Destination.deliver(destination, [Destination.tooOld(record, lastError, attempts)]),
            { _tag: "TooOld", record } as Outcome<A, E>
          )
          : Effect.succeed({ _tag: "Processed", record } as Outcome<A, E>),
      onFailure: (error) => giveUp({ _tag: "ProcessingFailed", record, error, mode }, record, attempts)
    })
  }
}

/** The position an outcome stages (the record processed or skipped). */
export const positionOf = <A, E>(handled: Handled<A, E>): { sequenceNumber: string; subSequenceNumber: number } =>
  handled._tag === "Processed" || handled._tag === "TooOld"
    ? handled.record
    : handled.failure._tag === "ProcessingFailed"
    ? handled.failure.record
    : handled.failure.error.record
