/**
 * One DynamoDB call as an Effect: interruption aborts the request, throttling and server errors are retried with
 * jittered exponential backoff within a bounded time budget, and the outcome is a typed error.
 *
 * @internal
 */
import { LeaseRepository } from "@effect-kinesis/consumer"
import { TransportFailure } from "@effect-kinesis/core"
import { Data, Duration, Effect, Schedule } from "effect"

/** @internal */
export interface RetryPolicy {
  /** Longest the whole call may take, retries included. */
  readonly budget: Duration.Duration
  /** Longest one attempt may take. */
  readonly attemptTimeout: Duration.Duration
  /** First backoff delay; doubles per retry, jittered. */
  readonly baseDelay: Duration.Duration
}

/** A `ConditionExpression` did not hold. @internal */
export class ConditionFailed extends Data.TaggedError("ConditionFailed")<{}> {}

/** @internal */
export const errorName = (error: unknown): string =>
  typeof error === "object" && error !== null && "name" in error && typeof error.name === "string"
    ? error.name
    : "Unknown"

const messageOf = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : "unknown error"

const retryableNames = new Set([
  "ProvisionedThroughputExceededException",
  "ThrottlingException",
  "RequestLimitExceeded",
  "LimitExceededException",
  "InternalServerError",
  "ServiceUnavailable"
])

/** Throttling, 5xx and transport failures (core's `TransportFailure`): trying again can help. @internal */
export const isRetryable = (error: unknown): boolean => {
  if (typeof error !== "object" || error === null) return false
  if (retryableNames.has(errorName(error))) return true
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode
  if (status !== undefined && status >= 500) return true
  if ((error as { $retryable?: unknown }).$retryable !== undefined) return true
  return TransportFailure.isTransient(error)
}

/** @internal */
export const storeError = (operation: string, error: unknown): LeaseRepository.LeaseStoreError =>
  new LeaseRepository.LeaseStoreError({
    operation,
    message: `${errorName(error)}: ${messageOf(error)}`,
    retryable: isRetryable(error),
    cause: error
  })

/**
 * Runs `send` under `policy`. A `ConditionalCheckFailedException` becomes {@link ConditionFailed}; every other
 * failure a `LeaseStoreError`. `ambiguous` (when given) is set once an attempt failed in a way that leaves open
 * whether the write was applied (a timeout, a 5xx, a dropped connection), so that a later condition failure may be
 * our own earlier write.
 *
 * @internal
 */
export const call = <A>(
  policy: RetryPolicy,
  operation: string,
  send: (signal: AbortSignal) => Promise<A>,
  ambiguous?: { value: boolean }
): Effect.Effect<A, ConditionFailed | LeaseRepository.LeaseStoreError> => {
  const attempt = Effect.tryPromise({
    try: send,
    catch: (error): ConditionFailed | LeaseRepository.LeaseStoreError => {
      if (errorName(error) === "ConditionalCheckFailedException") return new ConditionFailed()
      const failure = storeError(operation, error)
      if (ambiguous !== undefined && failure.retryable && !isThrottling(error)) ambiguous.value = true
      return failure
    }
  }).pipe(
    Effect.timeoutOrElse({
      duration: policy.attemptTimeout,
      orElse: () =>
        Effect.sync(() => {
          if (ambiguous !== undefined) ambiguous.value = true
        }).pipe(Effect.andThen(Effect.fail(
          new LeaseRepository.LeaseStoreError({
            operation,
            message: `no answer within ${Duration.format(policy.attemptTimeout)}`,
            retryable: true
          })
        )))
    })
  )
  return attempt.pipe(
    Effect.retry({
      schedule: Schedule.exponential(policy.baseDelay).pipe(
        Schedule.jittered,
        Schedule.upTo({ duration: policy.budget })
      ),
      while: (error) => error._tag === "LeaseStoreError" && error.retryable
    }),
    Effect.timeoutOrElse({
      duration: policy.budget,
      orElse: () =>
        Effect.fail(
          new LeaseRepository.LeaseStoreError({
            operation,
            message: `gave up after ${Duration.format(policy.budget)} of retries`,
            retryable: true
          })
        )
    })
  )
}

// DynamoDB rejects a throttled request before applying it, so a throttled attempt is never ambiguous.
const throttlingNames = new Set([
  "ProvisionedThroughputExceededException",
  "ThrottlingException",
  "RequestLimitExceeded",
  "LimitExceededException"
])
const isThrottling = (error: unknown): boolean => throttlingNames.has(errorName(error))
