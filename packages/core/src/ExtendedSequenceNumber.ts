/**
 * A position in a shard: a sequence number plus the index of a user record inside a KPL-aggregated record, or one
 * of the KCL sentinel positions.
 *
 * This is what a lease checkpoint stores (`checkpoint` + `checkpointSubSequenceNumber`) and what a consumer compares
 * records against to decide whether they are at or before the checkpoint. The total order is
 * `AT_TIMESTAMP < TRIM_HORIZON < LATEST < every real position < SHARD_END`; real positions order by
 * (sequence number, subsequence number).
 *
 * @since 0.1.0
 */
import * as equivalence from "effect/Equivalence"
import type * as order from "effect/Order"
import type { Ordering } from "effect/Ordering"
import * as SequenceNumber from "./SequenceNumber.ts"

/**
 * Start reading at a timestamp. Stored as a checkpoint before a consumer has processed anything.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * ExtendedSequenceNumber.make(ExtendedSequenceNumber.AT_TIMESTAMP)
 * ```
 *
 * @since 0.1.0
 * @category sentinels
 */
export const AT_TIMESTAMP = "AT_TIMESTAMP"

/**
 * Start reading at the oldest record still retained. The initial checkpoint of every child-shard lease.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * ExtendedSequenceNumber.make(ExtendedSequenceNumber.TRIM_HORIZON)
 * ```
 *
 * @since 0.1.0
 * @category sentinels
 */
export const TRIM_HORIZON = "TRIM_HORIZON"

/**
 * Start reading after the newest record.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * ExtendedSequenceNumber.make(ExtendedSequenceNumber.LATEST)
 * ```
 *
 * @since 0.1.0
 * @category sentinels
 */
export const LATEST = "LATEST"

/**
 * The shard is closed and was read to its end; its children may now be consumed.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * ExtendedSequenceNumber.make(ExtendedSequenceNumber.SHARD_END)
 * ```
 *
 * @since 0.1.0
 * @category sentinels
 */
export const SHARD_END = "SHARD_END"

/**
 * One of the sentinel positions, spelled as the KCL stores them in the lease table.
 *
 * @example
 * ```ts
 * import type { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * const initial: ExtendedSequenceNumber.Sentinel = "TRIM_HORIZON"
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Sentinel = typeof AT_TIMESTAMP | typeof TRIM_HORIZON | typeof LATEST | typeof SHARD_END

/**
 * A position in a shard. `sequenceNumber` is a {@link Sentinel} or a sequence number; `subSequenceNumber` is the
 * user record's index inside an aggregated record, `0` for plain records (ignored for sentinels).
 *
 * @example
 * ```ts
 * import type { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * const position: ExtendedSequenceNumber.ExtendedSequenceNumber = {
 *   sequenceNumber: "49590338271490256608559692538361571095921575989136588898",
 *   subSequenceNumber: 3
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ExtendedSequenceNumber {
  readonly sequenceNumber: Sentinel | SequenceNumber.SequenceNumber
  readonly subSequenceNumber: number
}

/**
 * Builds a position. The subsequence number defaults to `0`, the value for plain (non-aggregated) records.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * const plain = ExtendedSequenceNumber.make("42")
 * const third = ExtendedSequenceNumber.make("42", 2)
 * ExtendedSequenceNumber.compare(plain, third) // -1
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  sequenceNumber: Sentinel | SequenceNumber.SequenceNumber,
  subSequenceNumber = 0
): ExtendedSequenceNumber => ({ sequenceNumber, subSequenceNumber })

/**
 * The {@link AT_TIMESTAMP} position.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * ExtendedSequenceNumber.isSentinel(ExtendedSequenceNumber.atTimestamp) // true
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const atTimestamp: ExtendedSequenceNumber = make(AT_TIMESTAMP)

/**
 * The {@link TRIM_HORIZON} position.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * ExtendedSequenceNumber.isSentinel(ExtendedSequenceNumber.trimHorizon) // true
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const trimHorizon: ExtendedSequenceNumber = make(TRIM_HORIZON)

/**
 * The {@link LATEST} position.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * ExtendedSequenceNumber.isSentinel(ExtendedSequenceNumber.latest) // true
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const latest: ExtendedSequenceNumber = make(LATEST)

/**
 * The {@link SHARD_END} position, checkpointed when a closed shard has been read to its end.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * ExtendedSequenceNumber.isShardEnd(ExtendedSequenceNumber.shardEnd) // true
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const shardEnd: ExtendedSequenceNumber = make(SHARD_END)

// Rank in the total order; every real sequence number shares rank 3. Real sequence numbers start with a digit and
// sentinels with a letter, so the common case is decided by one character code.
const rank = (sequenceNumber: string): number => {
  const c = sequenceNumber.charCodeAt(0)
  if (c >= 48 && c <= 57) return 3
  switch (sequenceNumber) {
    case AT_TIMESTAMP:
      return 0
    case TRIM_HORIZON:
      return 1
    case LATEST:
      return 2
    case SHARD_END:
      return 4
    default:
      return 3
  }
}

/**
 * Whether `s` is one of the {@link Sentinel} strings.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * ExtendedSequenceNumber.isSentinelString("LATEST") // true
 * ExtendedSequenceNumber.isSentinelString("42") // false
 * ```
 *
 * @since 0.1.0
 * @category predicates
 */
export const isSentinelString = (s: string): s is Sentinel =>
  s === AT_TIMESTAMP || s === TRIM_HORIZON || s === LATEST || s === SHARD_END

/**
 * Whether the position is a sentinel rather than a real record position.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * ExtendedSequenceNumber.isSentinel(ExtendedSequenceNumber.trimHorizon) // true
 * ExtendedSequenceNumber.isSentinel(ExtendedSequenceNumber.make("42")) // false
 * ```
 *
 * @since 0.1.0
 * @category predicates
 */
export const isSentinel = (self: ExtendedSequenceNumber): boolean => isSentinelString(self.sequenceNumber)

/**
 * Whether the position is {@link SHARD_END}: the shard was fully consumed and its children may start.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * ExtendedSequenceNumber.isShardEnd(ExtendedSequenceNumber.shardEnd) // true
 * ```
 *
 * @since 0.1.0
 * @category predicates
 */
export const isShardEnd = (self: ExtendedSequenceNumber): boolean => self.sequenceNumber === SHARD_END

/**
 * Whether a position is well formed: a sentinel or a valid sequence number, with a non-negative integer
 * subsequence number. Use it on checkpoints read from storage.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * ExtendedSequenceNumber.isValid(ExtendedSequenceNumber.make("42", 1)) // true
 * ExtendedSequenceNumber.isValid(ExtendedSequenceNumber.make("NOT_A_POSITION")) // false
 * ExtendedSequenceNumber.isValid(ExtendedSequenceNumber.make("42", -1)) // false
 * ```
 *
 * @since 0.1.0
 * @category predicates
 */
export const isValid = (self: ExtendedSequenceNumber): boolean =>
  Number.isSafeInteger(self.subSequenceNumber) && self.subSequenceNumber >= 0 &&
  (isSentinelString(self.sequenceNumber) || SequenceNumber.isValid(self.sequenceNumber))

/**
 * Compares two positions in the total order
 * `AT_TIMESTAMP < TRIM_HORIZON < LATEST < real positions < SHARD_END`; real positions compare by sequence number,
 * then subsequence number. Subsequence numbers of sentinels are ignored. Allocation-free.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * const checkpoint = ExtendedSequenceNumber.make("100", 4)
 * // a record at or before the checkpoint was already processed
 * ExtendedSequenceNumber.compare(ExtendedSequenceNumber.make("100", 2), checkpoint) <= 0 // true
 * ExtendedSequenceNumber.compare(ExtendedSequenceNumber.latest, checkpoint) // -1
 * ```
 *
 * @since 0.1.0
 * @category ordering
 */
export const compare = (self: ExtendedSequenceNumber, that: ExtendedSequenceNumber): Ordering => {
  const r = rank(self.sequenceNumber)
  const s = rank(that.sequenceNumber)
  if (r !== s) return r < s ? -1 : 1
  if (r !== 3) return 0
  const bySequence = SequenceNumber.compare(self.sequenceNumber, that.sequenceNumber)
  if (bySequence !== 0) return bySequence
  const a = self.subSequenceNumber
  const b = that.subSequenceNumber
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * The total order of positions (see {@link compare}) as an effect `Order`.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * import { Order } from "effect"
 * const later = Order.max(ExtendedSequenceNumber.Order)
 * later(ExtendedSequenceNumber.make("7"), ExtendedSequenceNumber.shardEnd) // shardEnd
 * ```
 *
 * @since 0.1.0
 * @category ordering
 */
export const Order: order.Order<ExtendedSequenceNumber> = compare

/**
 * Equality consistent with {@link Order}: two positions are equivalent exactly when they compare as `0`.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * ExtendedSequenceNumber.Equivalence(ExtendedSequenceNumber.make("42"), ExtendedSequenceNumber.make("42", 0)) // true
 * ```
 *
 * @since 0.1.0
 * @category equivalence
 */
export const Equivalence: equivalence.Equivalence<ExtendedSequenceNumber> = equivalence.make((self, that) =>
  compare(self, that) === 0
)
