/**
 * Why a record was not written. Every failure a producer reports is one of these tagged errors,
 * so callers can `Effect.catchTag` the ones they handle (retry `BufferFull` later, send
 * `RecordTooLarge` elsewhere…).
 *
 * @since 0.1.0
 */
import type { Serde } from "@effect-kinesis/core"
import { Data } from "effect"

/**
 * The buffer was full (`capacity` records, or `capacityBytes` bytes) and the producer was set to
 * reject rather than wait (`whenBufferFull: "fail"`). The record was not accepted.
 *
 * @example
 * ```ts
 * import { ProducerError } from "@effect-kinesis/producer"
 *
 * const error = new ProducerError.BufferFull({ capacity: 10_000, capacityBytes: 67_108_864 })
 * error._tag // "BufferFull"
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class BufferFull extends Data.TaggedError("BufferFull")<{
  readonly capacity: number
  readonly capacityBytes: number
}> {
  override get message(): string {
    return `the producer buffer is full (${this.capacity} records or ${this.capacityBytes} bytes)`
  }
}

/**
 * The record's data plus the UTF-8 bytes of its partition key exceed the record size limit.
 * Checked before buffering: only this record fails.
 *
 * @example
 * ```ts
 * import { ProducerError } from "@effect-kinesis/producer"
 *
 * const error = new ProducerError.RecordTooLarge({ size: 2_000_000, maxBytes: 1_048_576 })
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class RecordTooLarge extends Data.TaggedError("RecordTooLarge")<{
  readonly size: number
  readonly maxBytes: number
}> {
  override get message(): string {
    return `record of ${this.size} bytes (data + partition key) exceeds the limit of ${this.maxBytes} bytes`
  }
}

/**
 * The partition key is empty or longer than 256 UTF-16 code units (its JavaScript `length`, as
 * Kinesis and the KPL count it: an emoji counts two). Checked before buffering: only this
 * record fails.
 *
 * @example
 * ```ts
 * import { ProducerError } from "@effect-kinesis/producer"
 *
 * const error = new ProducerError.InvalidPartitionKey({ partitionKey: "", reason: "empty" })
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidPartitionKey extends Data.TaggedError("InvalidPartitionKey")<{
  readonly partitionKey: string
  readonly reason: "empty" | "too long"
}> {
  override get message(): string {
    return `invalid partition key (${this.reason})`
  }
}

/**
 * The explicit hash key is not a decimal integer in `[0, 2^128 − 1]`.
 *
 * @example
 * ```ts
 * import { ProducerError } from "@effect-kinesis/producer"
 *
 * const error = new ProducerError.InvalidExplicitHashKey({ explicitHashKey: "-1" })
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidExplicitHashKey extends Data.TaggedError("InvalidExplicitHashKey")<{
  readonly explicitHashKey: string
}> {
  override get message(): string {
    return `invalid explicit hash key ${JSON.stringify(this.explicitHashKey)}`
  }
}

/**
 * The producer is closing or closed: the record was offered after its scope began to close, or
 * was still unwritten when the close deadline passed. `written` tells which: `false` means
 * the record was never sent; `"unknown"` means a request carrying it was cut off, so it may
 * have landed.
 *
 * @example
 * ```ts
 * import { ProducerError } from "@effect-kinesis/producer"
 *
 * const error = new ProducerError.ProducerClosed({ written: false })
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class ProducerClosed extends Data.TaggedError("ProducerClosed")<{
  readonly written: false | "unknown"
}> {
  override get message(): string {
    return this.written === false
      ? "the producer is closed; the record was not written"
      : "the producer closed while the record was in flight; it may have been written"
  }
}

/**
 * The record could not be written within its time to live (setting `recordTtl`), typically
 * because the shard stayed throttled. `lastError` is the last error code Kinesis returned for
 * it, if any.
 *
 * @example
 * ```ts
 * import { ProducerError } from "@effect-kinesis/producer"
 *
 * const error = new ProducerError.RecordExpired({ attempts: 4, lastError: "ProvisionedThroughputExceededException" })
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class RecordExpired extends Data.TaggedError("RecordExpired")<{
  readonly attempts: number
  readonly lastError: string | undefined
}> {
  override get message(): string {
    return `record expired after ${this.attempts} attempts` +
      (this.lastError === undefined ? "" : ` (last error: ${this.lastError})`)
  }
}

/**
 * Kinesis refused the record with an error that a retry cannot fix (access denied, stream not
 * found, KMS key disabled…), or a retryable error persisted through `maxAttempts` attempts
 * (`retryable: true`). `code` is the Kinesis error code.
 *
 * @example
 * ```ts
 * import { ProducerError } from "@effect-kinesis/producer"
 *
 * const error = new ProducerError.PutFailed({
 *   code: "KMSAccessDeniedException",
 *   detail: "access denied",
 *   attempts: 1,
 *   retryable: false
 * })
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class PutFailed extends Data.TaggedError("PutFailed")<{
  readonly code: string
  readonly detail: string
  readonly attempts: number
  readonly retryable: boolean
  readonly cause?: unknown
}> {
  override get message(): string {
    return `PutRecords failed with ${this.code} after ${this.attempts} attempt(s): ${this.detail}`
  }
}

/**
 * Kinesis rejected a request holding this record as a whole, as invalid (`InvalidArgumentException`,
 * `ValidationException`), for a reason the producer's own checks did not predict. The producer
 * split the request until this record was sent alone and still rejected, so its neighbours were
 * written: this record, not the request, is what Kinesis refuses. Retrying it cannot help.
 * `code` is the Kinesis error, `detail` its message.
 *
 * @example
 * ```ts
 * import { ProducerError } from "@effect-kinesis/producer"
 *
 * const error = new ProducerError.RecordRejected({ code: "InvalidArgument", detail: "1 validation error detected" })
 * error._tag // "RecordRejected"
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class RecordRejected extends Data.TaggedError("RecordRejected")<{
  readonly code: string
  readonly detail: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `Kinesis rejected the record with ${this.code}: ${this.detail}`
  }
}

/**
 * Every way producing a record can fail.
 *
 * @example
 * ```ts
 * import type { ProducerError } from "@effect-kinesis/producer"
 *
 * const describe = (error: ProducerError.ProducerError): string => `${error._tag}: ${error.message}`
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type ProducerError =
  | BufferFull
  | RecordTooLarge
  | InvalidPartitionKey
  | InvalidExplicitHashKey
  | ProducerClosed
  | RecordExpired
  | PutFailed
  | RecordRejected
  | Serde.SerializationError
