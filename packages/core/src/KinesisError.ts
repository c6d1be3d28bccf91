/**
 * Typed failures of Kinesis calls.
 *
 * Every AWS SDK failure is mapped to one of a small set of tagged errors so callers can
 * `Effect.catchTag` the cases they handle and retry only what can succeed later: each error
 * carries `retryable`.
 *
 * @since 0.1.0
 */
import { Data, Predicate } from "effect"
import * as TransportFailure from "./TransportFailure.ts"

interface Common {
  /** The Kinesis operation that failed, e.g. `"PutRecords"`. */
  readonly operation: string
  /** The message Kinesis (or the HTTP layer) gave. */
  readonly message: string
  /** The original SDK error, kept for diagnostics. */
  readonly cause?: unknown
}

/**
 * The stream (or stream consumer) does not exist: `ResourceNotFoundException`. Retrying cannot
 * help, so callers fail at once instead of looping.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Client } from "@effect-kinesis/core"
 *
 * const exists = (stream: string) =>
 *   Effect.gen(function*() {
 *     const client = yield* Client.Client
 *     return yield* client.describeStreamSummary(stream).pipe(
 *       Effect.as(true),
 *       Effect.catchTag("StreamNotFound", () => Effect.succeed(false))
 *     )
 *   })
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class StreamNotFound extends Data.TaggedError("StreamNotFound")<Common> {
  readonly retryable = false
}

/**
 * Kinesis refused the call for capacity reasons: `ProvisionedThroughputExceededException`
 * (data plane), `LimitExceededException` (control plane) or `KMSThrottlingException`.
 * Retrying after a backoff helps.
 *
 * @example
 * ```ts
 * import { KinesisError } from "@effect-kinesis/core"
 *
 * const describe = (e: KinesisError.Throttled) => `${e.operation} throttled (${e.reason})`
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class Throttled extends Data.TaggedError("Throttled")<
  Common & { readonly reason: "ProvisionedThroughputExceeded" | "LimitExceeded" | "KMSThrottling" }
> {
  readonly retryable = true
}

/**
 * A shard iterator is older than five minutes: `ExpiredIteratorException`. The same iterator
 * never works again; get a new one after the last record delivered.
 *
 * @example
 * ```ts
 * import { KinesisError } from "@effect-kinesis/core"
 *
 * const isExpired = (e: KinesisError.KinesisError) => e._tag === "ExpiredIterator"
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class ExpiredIterator extends Data.TaggedError("ExpiredIterator")<Common> {
  readonly retryable = false
}

/**
 * The request itself is wrong (`InvalidArgumentException`, `ValidationException`,
 * `ExpiredNextTokenException`): retrying the same request cannot succeed.
 *
 * @example
 * ```ts
 * import { KinesisError } from "@effect-kinesis/core"
 *
 * const text = (e: KinesisError.InvalidArgument) => `${e.reason}: ${e.message}`
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidArgument extends Data.TaggedError("InvalidArgument")<
  Common & { readonly reason: "InvalidArgument" | "Validation" | "ExpiredNextToken" }
> {
  readonly retryable = false
}

/**
 * The resource is busy or in the wrong state for the call (`ResourceInUseException`): the stream
 * is still CREATING/UPDATING, a stream of that name exists already, or an enhanced fan-out
 * subscription was renewed within 5 seconds. Often succeeds later.
 *
 * @example
 * ```ts
 * import { KinesisError } from "@effect-kinesis/core"
 *
 * const busy = (e: KinesisError.KinesisError) => e._tag === "ResourceInUse"
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class ResourceInUse extends Data.TaggedError("ResourceInUse")<Common> {
  readonly retryable = true
}

/**
 * The caller may not do this: missing IAM permission, unknown or expired credentials, a bad
 * signature, or a KMS key that cannot be used. Retrying cannot help.
 *
 * @example
 * ```ts
 * import { KinesisError } from "@effect-kinesis/core"
 *
 * const text = (e: KinesisError.AccessDenied) => `${e.reason}: ${e.message}`
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class AccessDenied extends Data.TaggedError("AccessDenied")<
  Common & { readonly reason: string }
> {
  readonly retryable = false
}

/**
 * Kinesis or the network failed transiently: `InternalFailure`, `ServiceUnavailable`, any
 * HTTP 5xx, or a transport failure on either HTTP handler (refused or reset connection, cancelled
 * HTTP/2 stream, GOAWAY, timeout; also when nested as a `cause`, see `TransportFailure`). `code`
 * is the outermost error's. The request may or may not have been applied.
 *
 * @example
 * ```ts
 * import { KinesisError } from "@effect-kinesis/core"
 *
 * const text = (e: KinesisError.ServiceUnavailable) => `${e.code} (${e.statusCode ?? "no status"})`
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class ServiceUnavailable extends Data.TaggedError("ServiceUnavailable")<
  Common & { readonly code: string; readonly statusCode: number | undefined }
> {
  readonly retryable = true
}

/**
 * Anything else. Keeps the SDK error as `cause`; `retryable` follows the SDK's own judgement.
 *
 * @example
 * ```ts
 * import { KinesisError } from "@effect-kinesis/core"
 *
 * const text = (e: KinesisError.UnknownKinesisError) => `${e.operation}: ${e.code}`
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class UnknownKinesisError extends Data.TaggedError("UnknownKinesisError")<
  Common & { readonly code: string; readonly statusCode: number | undefined; readonly retryable: boolean }
> {}

/**
 * Every failure a Kinesis call can produce.
 *
 * @since 0.1.0
 * @category models
 */
export type KinesisError =
  | StreamNotFound
  | Throttled
  | ExpiredIterator
  | InvalidArgument
  | ResourceInUse
  | AccessDenied
  | ServiceUnavailable
  | UnknownKinesisError

/**
 * Whether retrying the failed call can succeed.
 *
 * @example
 * ```ts
 * import { Effect, Schedule } from "effect"
 * import { KinesisError } from "@effect-kinesis/core"
 *
 * const retried = <A>(call: Effect.Effect<A, KinesisError.KinesisError>) =>
 *   call.pipe(Effect.retry({ while: KinesisError.isRetryable, schedule: Schedule.exponential("100 millis") }))
 * ```
 *
 * @since 0.1.0
 * @category predicates
 */
export const isRetryable = (error: KinesisError): boolean => error.retryable

const accessCodes = new Set([
  "AccessDeniedException",
  "UnrecognizedClientException",
  "InvalidSignatureException",
  "ExpiredTokenException",
  "IncompleteSignature",
  "MissingAuthenticationToken",
  "InvalidClientTokenId",
  "KMSAccessDeniedException",
  "KMSDisabledException",
  "KMSNotFoundException",
  "KMSInvalidStateException",
  "KMSOptInRequired",
  "CredentialsProviderError"
])

// Kinesis' own transient answers; network failures are TransportFailure's.
const serviceTransientCodes = new Set([
  "InternalFailure",
  "InternalFailureException",
  "ServiceUnavailable",
  "ServiceUnavailableException"
])

const errorCode = (e: Record<string, unknown>): string => {
  for (const key of ["name", "code", "__type"] as const) {
    const value = e[key]
    if (Predicate.isString(value) && value !== "Error") {
      // Some SDK paths report "namespace#Code".
      const hash = value.lastIndexOf("#")
      return hash >= 0 ? value.slice(hash + 1) : value
    }
  }
  return "Unknown"
}

const statusOf = (e: Record<string, unknown>): number | undefined => {
  const metadata = e["$metadata"]
  if (Predicate.isObject(metadata)) {
    const status = (metadata as Record<string, unknown>)["httpStatusCode"]
    if (Predicate.isNumber(status)) return status
  }
  const response = e["$response"]
  if (Predicate.isObject(response)) {
    const status = (response as Record<string, unknown>)["statusCode"]
    if (Predicate.isNumber(status)) return status
  }
  return undefined
}

/**
 * Maps anything an AWS SDK Kinesis call throws to a {@link KinesisError}.
 *
 * @example
 * ```ts
 * import { KinesisError } from "@effect-kinesis/core"
 *
 * const error = KinesisError.fromSdkError("GetRecords", { name: "ExpiredIteratorException", message: "expired" })
 * error._tag // "ExpiredIterator"
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromSdkError = (operation: string, error: unknown): KinesisError => {
  if (!Predicate.isObject(error)) {
    return new UnknownKinesisError({
      operation,
      message: String(error),
      cause: error,
      code: "Unknown",
      statusCode: undefined,
      retryable: false
    })
  }
  const e = error as Record<string, unknown>
  const code = errorCode(e)
  const message = Predicate.isString(e["message"]) && e["message"] !== "" ? e["message"] : code
  const common = { operation, message, cause: error }
  switch (code) {
    case "ResourceNotFoundException":
      return new StreamNotFound(common)
    case "ProvisionedThroughputExceededException":
      return new Throttled({ ...common, reason: "ProvisionedThroughputExceeded" })
    case "LimitExceededException":
    case "ThrottlingException":
      return new Throttled({ ...common, reason: "LimitExceeded" })
    case "KMSThrottlingException":
      return new Throttled({ ...common, reason: "KMSThrottling" })
    case "ExpiredIteratorException":
      return new ExpiredIterator(common)
    case "InvalidArgumentException":
      return new InvalidArgument({ ...common, reason: "InvalidArgument" })
    case "ValidationException":
      return new InvalidArgument({ ...common, reason: "Validation" })
    case "ExpiredNextTokenException":
      return new InvalidArgument({ ...common, reason: "ExpiredNextToken" })
    case "ResourceInUseException":
      return new ResourceInUse(common)
  }
  const statusCode = statusOf(e)
  if (accessCodes.has(code) || statusCode === 403) {
    return new AccessDenied({ ...common, reason: code })
  }
  if (
    serviceTransientCodes.has(code) || (statusCode !== undefined && statusCode >= 500) ||
    TransportFailure.isTransient(error)
  ) {
    return new ServiceUnavailable({ ...common, code, statusCode })
  }
  const retryable = Predicate.isObject(e["$retryable"])
  return new UnknownKinesisError({ ...common, code, statusCode, retryable })
}
