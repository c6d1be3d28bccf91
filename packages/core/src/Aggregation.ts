/**
 * KPL record aggregation, both directions: pack many user records bound for one shard into one
 * Kinesis record, and unpack them again, byte-compatible with the Kinesis Producer Library and
 * the KCL.
 *
 * The format: `F3 89 9A C2` ‖ protobuf `AggregatedRecord` ‖ MD5 of the protobuf bytes.
 *
 * @since 0.1.0
 */
import { Result, Schema } from "effect"
import * as internal from "./internal/aggregation.ts"
import * as Protobuf from "./internal/protobuf.ts"

/**
 * A record as Kinesis stores it: what PutRecords takes, what GetRecords returns, and what the
 * {@link Aggregator} takes as a user record.
 *
 * @example
 * ```ts
 * import type { Aggregation } from "@effect-kinesis/core"
 *
 * const record: Aggregation.KinesisRecord = {
 *   partitionKey: "user-42",
 *   data: new TextEncoder().encode("hello")
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface KinesisRecord {
  readonly partitionKey: string
  /** Routes the record instead of `MD5(partitionKey)`: a decimal string below 2^128. */
  readonly explicitHashKey?: string | undefined
  readonly data: Uint8Array
}

/**
 * One user record unpacked from a Kinesis record. `subSequenceNumber` is its index in the
 * aggregate (0 for a plain record); with the Kinesis record's sequence number it orders and
 * checkpoints the user record.
 *
 * @example
 * ```ts
 * import { Aggregation } from "@effect-kinesis/core"
 * import { Result } from "effect"
 *
 * const records = Aggregation.deaggregate({ partitionKey: "k", data: new Uint8Array([1]) })
 * if (Result.isSuccess(records)) {
 *   const first: Aggregation.UserRecord = records.success[0]!
 *   first.subSequenceNumber // 0
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface UserRecord {
  readonly partitionKey: string
  readonly explicitHashKey: string | undefined
  /** A view into the Kinesis record's data, not a copy. */
  readonly data: Uint8Array
  readonly subSequenceNumber: number
}

/**
 * The largest Kinesis record by default: data plus the UTF-8 bytes of the partition key, 1 MiB.
 *
 * @example
 * ```ts
 * import { Aggregation } from "@effect-kinesis/core"
 *
 * Aggregation.DEFAULT_MAX_BYTES // 1048576
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_MAX_BYTES = 1_048_576

/**
 * A Kinesis record carried the KPL's magic and a valid MD5 but its protobuf is malformed. Only
 * that record is affected; `offset` is the byte in its data where decoding stopped.
 *
 * @example
 * ```ts
 * import { Aggregation } from "@effect-kinesis/core"
 * import { Result } from "effect"
 *
 * const result = Aggregation.deaggregate({ partitionKey: "k", data: new Uint8Array(0) })
 * if (Result.isFailure(result)) {
 *   const error: Aggregation.AggregationDecodeError = result.failure
 *   console.error(error.message, error.offset)
 * }
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class AggregationDecodeError extends Schema.TaggedError<AggregationDecodeError>()("AggregationDecodeError", {
  message: Schema.String,
  offset: Schema.Number
}) {}

/**
 * An incremental encoder for the user records bound for one shard. It keeps references to the
 * records' data until {@link Aggregator.build}; do not mutate them in between.
 *
 * Every size it reports is the exact byte count Kinesis charges for the record `build` returns
 * (its data plus the UTF-8 bytes of its partition key), computed, not estimated, in O(1) per
 * record.
 *
 * @example
 * ```ts
 * import { Aggregation } from "@effect-kinesis/core"
 *
 * const aggregator = Aggregation.makeAggregator({ explicitHashKey: "0", maxBytes: 51_200 })
 * const out: Array<Aggregation.KinesisRecord> = []
 * for (const record of [{ partitionKey: "a", data: new Uint8Array(10) }]) {
 *   if (!aggregator.add(record)) {
 *     out.push(aggregator.build()!)
 *     aggregator.reset()
 *     if (!aggregator.add(record)) throw new Error("record larger than maxBytes")
 *   }
 * }
 * const last = aggregator.build()
 * if (last !== undefined) out.push(last)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Aggregator {
  /** The explicit hash key of the aggregated records built (routes them to the shard). */
  readonly explicitHashKey: string
  /** The largest record `build` may return, in bytes. */
  readonly maxBytes: number
  /** User records held. */
  readonly count: number
  /** Exact size of the record `build` would return now (0 when empty). */
  readonly size: number
  /** Exact size of the record `build` would return with `record` added. */
  sizeWith(record: KinesisRecord): number
  /** Whether `record` can be added without going over `maxBytes`. */
  fits(record: KinesisRecord): boolean
  /**
   * Adds `record` if it fits and returns `true`; otherwise changes nothing and returns `false`.
   * On an empty aggregator `false` means the record alone is larger than `maxBytes`.
   */
  add(record: KinesisRecord): boolean
  /**
   * The Kinesis record holding everything added, or `undefined` when empty. One user record is
   * returned as itself (its own partition key, explicit hash key and data), as the KPL sends it;
   * more are aggregated under the first record's partition key and the aggregator's explicit
   * hash key. Does not reset the aggregator.
   */
  build(): KinesisRecord | undefined
  /** Empties the aggregator for the next record. */
  reset(): void
}

/**
 * Options for {@link makeAggregator}.
 *
 * @example
 * ```ts
 * import type { Aggregation } from "@effect-kinesis/core"
 *
 * const options: Aggregation.AggregatorOptions = { explicitHashKey: "0", maxBytes: 51_200 }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface AggregatorOptions {
  /**
   * Routes the aggregated record to the shard its user records belong to, e.g. the shard's
   * starting hash key as a decimal string. (The KCL drops a whole aggregate when a user record's
   * hash key is outside the shard it was read from, so only aggregate records of one shard.)
   */
  readonly explicitHashKey: string
  /**
   * The largest record to build: data plus partition key bytes. Defaults to
   * {@link DEFAULT_MAX_BYTES}; the KPL aims at 51,200 bytes.
   */
  readonly maxBytes?: number | undefined
}

/**
 * Creates an empty {@link Aggregator} for one shard.
 *
 * @example
 * ```ts
 * import { Aggregation } from "@effect-kinesis/core"
 *
 * const aggregator = Aggregation.makeAggregator({ explicitHashKey: "0" })
 * aggregator.add({ partitionKey: "a", data: new Uint8Array([1]) })
 * aggregator.add({ partitionKey: "b", data: new Uint8Array([2]) })
 * const record = aggregator.build()! // one Kinesis record holding both
 * Aggregation.isAggregated(record.data) // true
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeAggregator = (options: AggregatorOptions): Aggregator => {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES
  if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
    throw new RangeError(`maxBytes must be a positive integer, got ${maxBytes}`)
  }
  return new internal.AggregatorImpl(options.explicitHashKey, maxBytes)
}

/**
 * The bytes a record counts against the Kinesis record size limit: its data plus the UTF-8
 * bytes of its partition key.
 *
 * @example
 * ```ts
 * import { Aggregation } from "@effect-kinesis/core"
 *
 * Aggregation.recordSize({ partitionKey: "é", data: new Uint8Array(10) }) // 12
 * ```
 *
 * @since 0.1.0
 * @category sizes
 */
export const recordSize: (record: KinesisRecord) => number = internal.recordSize

/**
 * The UTF-8 bytes of a partition key, as Kinesis counts them (a lone surrogate as the 3 bytes
 * of U+FFFD), without encoding it.
 *
 * @example
 * ```ts
 * import { Aggregation } from "@effect-kinesis/core"
 *
 * Aggregation.partitionKeyBytes("clé") // 4
 * ```
 *
 * @since 0.1.0
 * @category sizes
 */
export const partitionKeyBytes: (partitionKey: string) => number = Protobuf.utf8Length

/**
 * Whether a Kinesis record's data is a KPL aggregate: it starts with the magic, is longer than
 * magic and digest, and ends with the MD5 of the bytes in between.
 *
 * @example
 * ```ts
 * import { Aggregation } from "@effect-kinesis/core"
 *
 * Aggregation.isAggregated(new TextEncoder().encode("plain")) // false
 * ```
 *
 * @since 0.1.0
 * @category decoding
 */
export const isAggregated: (data: Uint8Array) => boolean = internal.isFramedAggregate

/**
 * Unpacks one Kinesis record into its user records, with subsequence numbers 0..n−1 and views
 * into the record's data (no copies).
 *
 * A record that is not a KPL aggregate (no magic, too short, or a wrong MD5) is a plain record:
 * it comes back as the single user record `{ ...record, subSequenceNumber: 0 }` with its data
 * unchanged. An aggregate whose protobuf is malformed fails with an
 * {@link AggregationDecodeError}; decoding never throws and allocates nothing sized by a length
 * field it has not checked against the input.
 *
 * @example
 * ```ts
 * import { Aggregation } from "@effect-kinesis/core"
 * import { Result } from "effect"
 *
 * const aggregator = Aggregation.makeAggregator({ explicitHashKey: "0" })
 * aggregator.add({ partitionKey: "a", data: new Uint8Array([1]) })
 * aggregator.add({ partitionKey: "b", explicitHashKey: "7", data: new Uint8Array([2]) })
 * const records = Result.getOrThrow(Aggregation.deaggregate(aggregator.build()!))
 * records.map((r) => [r.partitionKey, r.explicitHashKey, r.subSequenceNumber])
 * // [["a", undefined, 0], ["b", "7", 1]]
 * ```
 *
 * @since 0.1.0
 * @category decoding
 */
export const deaggregate = (
  record: KinesisRecord
): Result.Result<ReadonlyArray<UserRecord>, AggregationDecodeError> => {
  const data = record.data
  if (!internal.isFramedAggregate(data)) {
    return Result.succeed([{
      partitionKey: record.partitionKey,
      explicitHashKey: record.explicitHashKey,
      data,
      subSequenceNumber: 0
    }])
  }
  try {
    return Result.succeed(
      Protobuf.decodeAggregatedRecord(data, internal.MAGIC.length, data.length - internal.MD5_LENGTH)
    )
  } catch (error) {
    if (error instanceof Protobuf.ProtobufDecodeFailure) {
      return Result.fail(new AggregationDecodeError({ message: error.reason, offset: error.offset }))
    }
    throw error
  }
}

/**
 * What {@link forEachUserRecord} calls per user record: its partition key, explicit hash key,
 * where its data starts and ends in the Kinesis record's data, and its sub-sequence number.
 *
 * @example
 * ```ts
 * import type { Aggregation } from "@effect-kinesis/core"
 *
 * const sizes: Array<number> = []
 * const visit: Aggregation.UserRecordVisitor = (_key, _hash, dataStart, dataEnd) => {
 *   sizes.push(dataEnd - dataStart)
 * }
 * ```
 *
 * @since 0.2.0
 * @category decoding
 */
export type UserRecordVisitor = (
  partitionKey: string,
  explicitHashKey: string | undefined,
  dataStart: number,
  dataEnd: number,
  subSequenceNumber: number
) => void

/**
 * Calls `visit` with every user record of one Kinesis record, in order: {@link deaggregate}
 * without an array, an object and a view per user record, for consumers that build their own
 * record objects (and may do so later, or never). A user record's data is
 * `record.data.subarray(dataStart, dataEnd)`; the other arguments are those of the
 * {@link UserRecord} `deaggregate` would return.
 *
 * A plain record (no magic, too short, or a wrong MD5) is visited once, as itself (its data is
 * all of `record.data`), and the result is `false`; an aggregate's user records are visited only
 * once all of them decoded, and the result is `true`. A malformed aggregate fails with an
 * {@link AggregationDecodeError} and visits nothing.
 *
 * @example
 * ```ts
 * import { Aggregation } from "@effect-kinesis/core"
 *
 * const aggregator = Aggregation.makeAggregator({ explicitHashKey: "0" })
 * aggregator.add({ partitionKey: "a", data: new Uint8Array([1]) })
 * aggregator.add({ partitionKey: "b", data: new Uint8Array([2, 3]) })
 * const record = aggregator.build()!
 * let bytes = 0
 * Aggregation.forEachUserRecord(record, (partitionKey, explicitHashKey, dataStart, dataEnd) => {
 *   bytes += dataEnd - dataStart // record.data.subarray(dataStart, dataEnd) holds the data
 * })
 * // bytes: 3; the result: Result.succeed(true)
 * ```
 *
 * @since 0.2.0
 * @category decoding
 */
export const forEachUserRecord = (
  record: KinesisRecord,
  visit: UserRecordVisitor
): Result.Result<boolean, AggregationDecodeError> => {
  const data = record.data
  if (!internal.isFramedAggregate(data)) {
    visit(record.partitionKey, record.explicitHashKey, 0, data.length, 0)
    return PLAIN
  }
  try {
    Protobuf.visitAggregatedRecord(data, internal.MAGIC.length, data.length - internal.MD5_LENGTH, visit)
    return AGGREGATED
  } catch (error) {
    if (error instanceof Protobuf.ProtobufDecodeFailure) {
      return Result.fail(new AggregationDecodeError({ message: error.reason, offset: error.offset }))
    }
    throw error
  }
}

const PLAIN: Result.Result<boolean, AggregationDecodeError> = Result.succeed(false)
const AGGREGATED: Result.Result<boolean, AggregationDecodeError> = Result.succeed(true)
