/**
 * The errors of the consumer. Each is a tagged class, so callers can `Effect.catchTag` them; the
 * Kinesis errors of `@effect-kinesis/core` and the lease store errors of `LeaseRepository` pass
 * through unchanged.
 *
 * @since 0.1.0
 */
import type { InvalidSetting, KinesisError, Serde, ShardMap } from "@effect-kinesis/core"
import { Data } from "effect"
import type { LeaseStoreError } from "./LeaseRepository.ts"

/**
 * This worker no longer holds the lease of `shardId`: another worker took it, it was released,
 * or this worker could not renew it within the expiry time (self-fencing). The shard must not be
 * processed or checkpointed any further here; the new owner resumes after the last checkpoint.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { ConsumerError } from "@effect-kinesis/consumer"
 *
 * declare const checkpoint: Effect.Effect<void, ConsumerError.ShardLeaseLost>
 * const quiet = checkpoint.pipe(Effect.catchTag("ShardLeaseLost", () => Effect.void))
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class ShardLeaseLost extends Data.TaggedError("ShardLeaseLost")<{
  readonly shardId: string
}> {
  override get message(): string {
    return `the lease of ${this.shardId} is no longer held by this worker`
  }
}

/**
 * A record could not be turned into a user record: the deserializer rejected its data. `record`
 * carries the raw bytes and the record's position, for a dead-letter queue. (A record with a KPL
 * aggregate's magic and MD5 whose contents are malformed is not one: it is delivered whole as a
 * plain record, as the KCL does, with an `AggregateMalformed` diagnostic event.)
 *
 * @example
 * ```ts
 * import type { ConsumerError } from "@effect-kinesis/consumer"
 *
 * const where = (e: ConsumerError.RecordDecodeFailed) =>
 *   `${e.record.shardId}/${e.record.sequenceNumber}/${e.record.subSequenceNumber}`
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class RecordDecodeFailed extends Data.TaggedError("RecordDecodeFailed")<{
  readonly record: {
    readonly shardId: string
    readonly sequenceNumber: string
    readonly subSequenceNumber: number
    readonly partitionKey: string
    readonly explicitHashKey: string | undefined
    readonly approximateArrivalTimestamp: Date | undefined
    readonly data: Uint8Array
  }
  readonly cause: Serde.DeserializationError
}> {
  override get message(): string {
    return `record ${this.record.sequenceNumber}/${this.record.subSequenceNumber} of ${this.record.shardId} could not be decoded: ${this.cause.message}`
  }
}

/**
 * Everything a consumer stream can fail with: a Kinesis error that retrying cannot fix (stream
 * deleted, access denied…), a lease store error, a malformed shard list, or an undecodable record
 * (only from `ShardStream.records` with `onDecodeFailure` answering `"fail"`; by default such a
 * record is skipped, and `ShardStream.results` delivers them as values).
 *
 * @example
 * ```ts
 * import type { ConsumerError } from "@effect-kinesis/consumer"
 *
 * const describe = (e: ConsumerError.ConsumerError) => e._tag
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export type ConsumerError =
  | KinesisError.KinesisError
  | LeaseStoreError
  | ShardMap.ShardMapInvalid
  | RecordDecodeFailed
  | InvalidSetting.InvalidSetting
