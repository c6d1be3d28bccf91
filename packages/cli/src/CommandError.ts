/**
 * What can make an `effect-kinesis` command fail, as one typed error whose message is one line
 * saying what to do. The CLI prints that line (no stack trace) and exits with status 1.
 *
 * @since 0.1.0
 */
import type { LeaseRepository } from "@effect-kinesis/consumer"
import type { InvalidSetting, KinesisError } from "@effect-kinesis/core"
import type { DynamoDBLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { Data, Predicate, Runtime } from "effect"
import { CliError } from "effect/cli"

/**
 * Why a command failed.
 *
 * - `StreamNotFound`, `LeaseTableNotFound`: the name does not exist where the CLI looked.
 * - `AccessDenied`: the credentials lack a permission (or are invalid or expired).
 * - `NoCredentials`: the AWS SDK's credential chain found none.
 * - `NoRegion`: neither `AWS_REGION` nor a profile names a region.
 * - `InvalidArgument`: an argument the parser accepted but the service or the CLI refused.
 * - `Unavailable`: the endpoint did not answer or answered with a server error.
 * - `Failed`: anything else, with the service's own message.
 *
 * @example
 * ```ts
 * import type { CommandError } from "@effect-kinesis/cli"
 *
 * const retryLater = (reason: CommandError.Reason) => reason === "Unavailable"
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Reason =
  | "StreamNotFound"
  | "LeaseTableNotFound"
  | "AccessDenied"
  | "NoCredentials"
  | "NoRegion"
  | "InvalidArgument"
  | "Unavailable"
  | "Failed"

/**
 * A command's failure. `message` is the one line the CLI prints; `cause` keeps the underlying
 * error for programs that run the commands in-process.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CommandError } from "@effect-kinesis/cli"
 *
 * const missing = new CommandError.CommandError({
 *   reason: "StreamNotFound",
 *   message: `stream "orders" not found: check the name, AWS_REGION and KINESIS_ENDPOINT`
 * })
 * const program = Effect.fail(missing).pipe(
 *   Effect.catchTag("CommandError", (error) => Effect.succeed(error.reason))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class CommandError extends Data.TaggedError("CommandError")<{
  readonly reason: Reason
  readonly message: string
  readonly cause?: unknown
}> {
  /** What Effect's CLI prints for a failed command, and nothing more. */
  override get [CliError.userMessage](): string {
    return this.message
  }
  override readonly [Runtime.errorExitCode] = 1
}

const errorName = (error: unknown): string =>
  Predicate.isObject(error) && "name" in error && Predicate.isString(error.name) ? error.name : ""

const errorMessage = (error: unknown): string =>
  Predicate.isObject(error) && "message" in error && Predicate.isString(error.message) ? error.message : String(error)

// The SDK reports a missing credential chain and a missing region as client-side errors, before any request.
const credentialsMissing = (error: unknown): boolean =>
  errorName(error) === "CredentialsProviderError" || /could not load credentials/i.test(errorMessage(error))
const regionMissing = (error: unknown): boolean => /region is missing/i.test(errorMessage(error))

const noCredentials = (cause: unknown) =>
  new CommandError({
    reason: "NoCredentials",
    message: "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    cause
  })

const noRegion = (cause: unknown) =>
  new CommandError({
    reason: "NoRegion",
    message: "no AWS region: set AWS_REGION (or a region in your AWS profile)",
    cause
  })

/**
 * The one-line failure for a Kinesis error met while working on `stream`.
 *
 * @example
 * ```ts
 * import { KinesisError } from "@effect-kinesis/core"
 * import { CommandError } from "@effect-kinesis/cli"
 *
 * const error = CommandError.fromKinesis(
 *   new KinesisError.StreamNotFound({ operation: "DescribeStreamSummary", message: "not found" }),
 *   "orders"
 * )
 * error.message // stream "orders" not found: …
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromKinesis = (error: KinesisError.KinesisError, stream: string): CommandError => {
  const cause = error.cause ?? error
  if (credentialsMissing(cause)) return noCredentials(error)
  if (regionMissing(cause)) return noRegion(error)
  switch (error._tag) {
    case "StreamNotFound":
      return new CommandError({
        reason: "StreamNotFound",
        message: `stream "${stream}" not found: check the name, AWS_REGION and KINESIS_ENDPOINT`,
        cause: error
      })
    case "AccessDenied":
      return new CommandError({
        reason: "AccessDenied",
        message:
          `access denied to kinesis:${error.operation} on stream "${stream}" (${error.reason}): grant it to these credentials, or check they are valid`,
        cause: error
      })
    case "ServiceUnavailable":
      return new CommandError({
        reason: "Unavailable",
        message:
          `Kinesis did not answer ${error.operation} (${error.code}): check KINESIS_ENDPOINT and the network, then try again`,
        cause: error
      })
    case "Throttled":
      return new CommandError({
        reason: "Unavailable",
        message: `Kinesis throttled ${error.operation} on stream "${stream}": try again in a moment`,
        cause: error
      })
    case "InvalidArgument":
      return new CommandError({
        reason: "InvalidArgument",
        message: `Kinesis refused ${error.operation} on stream "${stream}": ${error.message}`,
        cause: error
      })
    default:
      return new CommandError({
        reason: "Failed",
        message: `${error.operation} on stream "${stream}" failed: ${error.message}`,
        cause: error
      })
  }
}

/**
 * The one-line failure for an error of the DynamoDB lease table `table`.
 *
 * @example
 * ```ts
 * import { DynamoDBLeaseRepository } from "@effect-kinesis/lease-dynamodb"
 * import { CommandError } from "@effect-kinesis/cli"
 *
 * const error = CommandError.fromLeaseStore(
 *   new DynamoDBLeaseRepository.LeaseTableNotFound({ tableName: "billing" }),
 *   "billing"
 * )
 * error.reason // "LeaseTableNotFound"
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromLeaseStore = (
  error: LeaseRepository.LeaseStoreError | DynamoDBLeaseRepository.LeaseTableNotFound | InvalidSetting.InvalidSetting,
  table: string
): CommandError => {
  if (error._tag === "InvalidSetting") {
    return new CommandError({ reason: "InvalidArgument", message: error.message, cause: error })
  }
  if (error._tag === "LeaseTableNotFound") {
    return new CommandError({
      reason: "LeaseTableNotFound",
      message:
        `lease table "${table}" not found: check the application name (or --table), AWS_REGION and DYNAMODB_ENDPOINT`,
      cause: error
    })
  }
  const cause = error.cause
  if (credentialsMissing(cause)) return noCredentials(error)
  if (regionMissing(cause)) return noRegion(error)
  const name = errorName(cause)
  if (
    name === "AccessDeniedException" || name === "UnrecognizedClientException" ||
    name === "InvalidSignatureException" || name === "ExpiredTokenException"
  ) {
    return new CommandError({
      reason: "AccessDenied",
      message:
        `access denied to dynamodb:${error.operation} on table "${table}" (${name}): grant it to these credentials, or check they are valid`,
      cause: error
    })
  }
  if (error.retryable) {
    return new CommandError({
      reason: "Unavailable",
      message:
        `DynamoDB did not answer ${error.operation} on table "${table}" (${error.message}): check DYNAMODB_ENDPOINT and the network, then try again`,
      cause: error
    })
  }
  return new CommandError({
    reason: "Failed",
    message: `${error.operation} on table "${table}" failed: ${error.message}`,
    cause: error
  })
}

/**
 * Whether a value is a {@link CommandError}.
 *
 * @example
 * ```ts
 * import { CommandError } from "@effect-kinesis/cli"
 *
 * CommandError.isCommandError(new Error("x")) // false
 * ```
 *
 * @since 0.1.0
 * @category guards
 */
export const isCommandError = (u: unknown): u is CommandError => u instanceof CommandError
