/**
 * One batch of a shard through the user's batch handler with Lambda's failure semantics: the
 * checkpoint only ever covers the prefix of the batch that was processed or delivered to the
 * on-failure destination; the rest is retried, bisected, or given up on.
 *
 * @internal
 */
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import { Clock, Duration, Effect, Result } from "effect"
import type { BatchItemFailures, Handled, Options } from "../BatchProcessing.ts"
import type { Checkpointable } from "../Checkpointer.ts"
import type { RecordDecodeFailed } from "../ConsumerError.ts"
import type { ConsumerRecord } from "../ConsumerRecord.ts"
import type { FailedRecord } from "../FailureDestination.ts"
import * as Destination from "./failureDestination.ts"

/**
 * A contiguous part of the batch still to handle. `retries` counts the retries of its current
 * run of records; a bisected half inherits it (a split is not a retry, as in Lambda).
 */
interface Range {
  start: number
  end: number
  retries: number
  /** What the last attempt left failing, for giving up on it: `[start, runEnd)` was attempted. */
  failure:
    | { readonly runEnd: number; readonly whole: true; readonly error: unknown }
    | { readonly runEnd: number; readonly whole: false; readonly errors: ReadonlyMap<number, unknown> }
    | undefined
}

const RETRY = Symbol.for("@effect-kinesis/consumer/BatchProcessing/retry")
const STOPPED = Symbol.for("@effect-kinesis/consumer/BatchProcessing/stopped")

const isItemFailures = (u: unknown): u is BatchItemFailures<unknown> =>
  typeof u === "object" && u !== null && "_tag" in u && u._tag === "BatchItemFailures"

const key = (position: Checkpointable) => `${position.sequenceNumber}/${position.subSequenceNumber}`

/**
 * Returns the function handling one batch: it stages on `stage` as it goes and returns what
 * became of each record handled. It stops early (nothing more staged) once `stopped()` holds,
 * checked before every call of the handler.
 *
 * @internal
 */
export const make = <A, E, R, R2>(
  handler: (records: ReadonlyArray<ConsumerRecord<A>>) => Effect.Effect<void | BatchItemFailures<E>, E, R>,
  options: Options<A, E, R2>,
  stage: (position: Checkpointable, count: number) => Effect.Effect<void>,
  whilePaused: (stopped: () => boolean) => Effect.Effect<void> = () => Effect.void
): (
  items: ReadonlyArray<Result.Result<ConsumerRecord<A>, RecordDecodeFailed>>,
  stopped: () => boolean
) => Effect.Effect<Array<Handled<A, E>>, never, R | R2> => {
  const maxRetries = options.maxRetryAttempts ?? Infinity
  const maxAge = options.maxRecordAge === undefined
    ? undefined
    : Duration.toMillis(Duration.fromInputUnsafe(options.maxRecordAge))
  const bisect = options.bisectOnError ?? false
  const retryOptions = {
    schedule: options.retrySchedule ?? Destination.backoff,
    while: (e: unknown) => e === RETRY
  }

  return (items, stopped) =>
    Effect.gen(function*() {
      const n = items.length
      const records: Array<ConsumerRecord<A> | undefined> = items.map((item) =>
        Result.isSuccess(item) ? item.success : undefined
      )
      const positionAt = (i: number): Checkpointable => {
        const item = items[i]!
        return Result.isSuccess(item) ? item.success : item.failure.record
      }
      const attempts = new Array<number>(n).fill(0)
      const lastError = new Array<unknown>(n)
      const handled: Array<Handled<A, E>> = []
      let now = 0
      const tooOld = (record: ConsumerRecord<A>) =>
        maxAge !== undefined && record.approximateArrivalTimestamp !== undefined &&
        now - record.approximateArrivalTimestamp.getTime() > maxAge

      const processed = (from: number, to: number) => {
        for (let i = from; i < to; i++) handled.push({ _tag: "Processed", record: records[i]! })
      }
      // `[from, through]` is done once `failed` reached the destination.
      const failedRecords = (failed: Array<FailedRecord<A, E>>, from: number, through: number) =>
        Effect.gen(function*() {
          yield* Destination.deliver(options.onFailure, failed)
          for (const f of failed) handled.push({ _tag: "Failed", failed: f })
          yield* stage(positionAt(through), through - from + 1)
        })
      const exhausted = (i: number, error: unknown): FailedRecord<A, E> =>
        Destination.exhausted(records[i]!, error as E, attempts[i]!)

      // The last attempt's failures go to the destination; records it reported processed count
      // as processed (a whole failure reports none).
      const giveUp = (range: Range) =>
        Effect.suspend(() => {
          const failure = range.failure!
          range.failure = undefined
          range.retries = 0
          const failed: Array<FailedRecord<A, E>> = []
          const from = range.start
          range.start = failure.runEnd
          for (let i = from; i < failure.runEnd; i++) {
            if (failure.whole) failed.push(exhausted(i, failure.error))
            else if (failure.errors.has(i)) failed.push(exhausted(i, failure.errors.get(i)))
            else handled.push({ _tag: "Processed", record: records[i]! })
          }
          return failedRecords(failed, from, failure.runEnd - 1)
        })

      // Attempts the range's records once more; fails with RETRY for the caller's schedule, or
      // returns the ranges a bisection split it into.
      const step = (range: Range) =>
        Effect.gen(function*() {
          while (range.start < range.end) {
            if (maxAge !== undefined) now = yield* Clock.currentTimeMillis
            // Undecodable and too old records at the front go to the destination unprocessed.
            const skipped: Array<FailedRecord<A, E>> = []
            let i = range.start
            for (; i < range.end; i++) {
              const item = items[i]!
              if (Result.isFailure(item)) skipped.push(Destination.undecodable(item.failure))
              else if (tooOld(item.success)) {
                skipped.push(Destination.tooOld(item.success, lastError[i] as E | undefined, attempts[i]!))
              } else break
            }
            if (skipped.length > 0) {
              if (range.failure !== undefined && range.failure.runEnd <= i) range.failure = undefined
              const from = range.start
              range.start = i
              yield* failedRecords(skipped, from, i - 1)
              continue
            }
            yield* whilePaused(stopped)
            if (stopped()) return STOPPED
            let j = i
            while (j < range.end && records[j] !== undefined && !tooOld(records[j]!)) j++
            for (let k = i; k < j; k++) attempts[k]!++
            const batch = records.slice(i, j) as Array<ConsumerRecord<A>>
            // One span per call of the handler, as `consumeWith` has per batch.
            const result = yield* Effect.result(handler(batch)).pipe(Effect.withSpan("kinesis.consumer.process", {
              attributes: {
                "kinesis.shard_id": batch[0]!.shardId,
                "kinesis.user_records": batch.length,
                "kinesis.first_sequence_number": batch[0]!.sequenceNumber,
                "kinesis.last_sequence_number": batch[batch.length - 1]!.sequenceNumber,
                "kinesis.attempt": attempts[i]!
              }
            }))

            let firstFailed = j
            let errors: Map<number, unknown> | undefined
            let wholeError: unknown = undefined
            let whole = Result.isFailure(result)
            if (whole) wholeError = (result as Result.Failure<unknown, E>).failure
            else {
              const reported = (result as Result.Success<void | BatchItemFailures<E>, E>).success
              if (isItemFailures(reported) && reported.failures.length > 0) {
                const index = new Map<string, number>()
                for (let k = i; k < j; k++) index.set(key(records[k]!), k)
                errors = new Map()
                for (const failure of reported.failures) {
                  const k = index.get(key(failure.record))
                  // As Lambda: a failure naming no record of the batch fails the whole batch.
                  if (k === undefined) {
                    yield* Effect.logWarning(
                      `the batch handler reported a failure of ${
                        key(failure.record)
                      }, not in the batch: the whole batch failed`
                    )
                    whole = true
                    wholeError = failure.error
                    break
                  }
                  if (!errors.has(k)) errors.set(k, failure.error)
                  if (k < firstFailed) firstFailed = k
                }
              }
            }

            if (!whole && errors === undefined) {
              processed(i, j)
              range.start = j
              range.failure = undefined
              range.retries = 0
              yield* stage(positionAt(j - 1), j - i)
              continue
            }
            if (whole) {
              for (let k = i; k < j; k++) lastError[k] = wholeError
              if (bisect && j - i > 1) {
                const mid = i + Math.floor((j - i) / 2)
                const halves: Array<Range> = [
                  { start: i, end: mid, retries: range.retries, failure: undefined },
                  { start: mid, end: j, retries: range.retries, failure: undefined }
                ]
                range.start = j
                range.failure = undefined
                return halves
              }
              range.failure = { runEnd: j, whole: true, error: wholeError }
            } else {
              for (const [k, error] of errors!) lastError[k] = error
              processed(i, firstFailed)
              if (firstFailed > i) yield* stage(positionAt(firstFailed - 1), firstFailed - i)
              range.start = firstFailed
              range.failure = { runEnd: j, whole: false, errors: errors! }
            }
            if (range.retries >= maxRetries) {
              yield* giveUp(range)
              continue
            }
            range.retries++
            return yield* Effect.fail(RETRY)
          }
          return undefined
        })

      // Ranges in shard order, the next on top.
      const stack: Array<Range> = [{ start: 0, end: n, retries: 0, failure: undefined }]
      while (stack.length > 0) {
        const range = stack[stack.length - 1]!
        const outcome = yield* Effect.retry(step(range), retryOptions).pipe(
          // The user's schedule ended before `maxRetryAttempts`: give up as well.
          Effect.catch(() => Effect.as(giveUp(range), undefined))
        )
        if (outcome === STOPPED) break
        if (range.start >= range.end) stack.pop()
        if (Array.isArray(outcome)) stack.push(outcome[1]!, outcome[0]!)
      }
      return handled
    })
}

/** @internal */
export const positionOf = <A, E>(handled: Handled<A, E>): ExtendedSequenceNumber.ExtendedSequenceNumber => {
  const where = handled._tag === "Processed" ? handled.record : handled.failed
  return ExtendedSequenceNumber.make(where.sequenceNumber, where.subSequenceNumber)
}
