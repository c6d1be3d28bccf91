/**
 * A user record as the consumer delivers it: one Kinesis record, or one user record out of a KPL
 * aggregate, with its data decoded by the consumer's deserializer.
 *
 * @since 0.1.0
 */
import { ExtendedSequenceNumber } from "@effect-kinesis/core"

/**
 * One record. Records of a shard arrive in `(sequenceNumber, subSequenceNumber)` order.
 *
 * @example
 * ```ts
 * import type { ConsumerRecord } from "@effect-kinesis/consumer"
 *
 * const describe = (record: ConsumerRecord.ConsumerRecord<string>) =>
 *   `${record.shardId} ${record.partitionKey}: ${record.data}`
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ConsumerRecord<A> {
  readonly shardId: string
  /** The Kinesis record's sequence number (shared by all user records of one aggregate). */
  readonly sequenceNumber: string
  /** The index of this user record in its KPL aggregate; 0 for a plain record. */
  readonly subSequenceNumber: number
  /** Whether this record came out of a KPL aggregate. */
  readonly aggregated: boolean
  readonly partitionKey: string
  readonly explicitHashKey: string | undefined
  readonly approximateArrivalTimestamp: Date | undefined
  readonly data: A
}

/**
 * The position of a record, the unit of checkpoints: checkpointing it means "everything up to
 * and including this record is processed".
 *
 * @example
 * ```ts
 * import { ConsumerRecord } from "@effect-kinesis/consumer"
 *
 * declare const record: ConsumerRecord.ConsumerRecord<Uint8Array>
 * const where = ConsumerRecord.position(record)
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const position = (record: {
  readonly sequenceNumber: string
  readonly subSequenceNumber: number
}): ExtendedSequenceNumber.ExtendedSequenceNumber =>
  ExtendedSequenceNumber.make(record.sequenceNumber, record.subSequenceNumber)
