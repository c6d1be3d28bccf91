/**
 * Kinesis sequence numbers: decimal strings (the API allows `0|([1-9]\d{0,128})`; real ones are 56 digits today),
 * ordered as integers.
 *
 * Sequence numbers stay plain `string`s, exactly as the AWS SDK returns them, so records flow through the producer
 * and consumer without conversion. Never compare them with `<` on strings or as JS numbers: `"9" > "10"` as strings
 * and such values lose precision as numbers. Use {@link compare} / {@link Order}.
 *
 * @since 0.1.0
 */
import type * as order from "effect/Order"
import type { Ordering } from "effect/Ordering"

/**
 * A Kinesis sequence number: a canonical decimal string (no leading zeros) of at most 129 digits.
 *
 * A plain alias rather than a brand, so values from the SDK need no conversion on hot paths.
 *
 * @example
 * ```ts
 * import type { SequenceNumber } from "@effect-kinesis/core"
 * const seq: SequenceNumber.SequenceNumber = "49590338271490256608559692538361571095921575989136588898"
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type SequenceNumber = string

// The API's pattern for sequence numbers is 0|([1-9]\d{0,128}). Sequence numbers are not
// bounded by 2^128: AWS issues 56-digit ones.
const MAX_DIGITS = 129
const ZERO = 48 // "0"
const NINE = 57 // "9"

/**
 * Whether `s` is a valid sequence number: `0` or a decimal without leading zeros, at most 129 digits.
 *
 * Use it on untrusted input (a checkpoint read from a lease table, a user-supplied starting position) before
 * relying on {@link compare}.
 *
 * @example
 * ```ts
 * import { SequenceNumber } from "@effect-kinesis/core"
 * SequenceNumber.isValid("49590338271490256608559692538361571095921575989136588898") // true
 * SequenceNumber.isValid("007") // false
 * SequenceNumber.isValid("1".repeat(130)) // false: more than 129 digits
 * ```
 *
 * @since 0.1.0
 * @category predicates
 */
export const isValid = (s: string): boolean => {
  const n = s.length
  if (n === 0 || n > MAX_DIGITS) return false
  if (s.charCodeAt(0) === ZERO) return n === 1
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c < ZERO || c > NINE) return false
  }
  return true
}

/**
 * Compares two sequence numbers as unsigned integers.
 *
 * Allocation-free: canonical decimals compare by length, then lexicographically, which is the integer order.
 * Leading zeros are tolerated (skipped), so the result agrees with `BigInt` order for every string of decimal
 * digits. The result for strings that are not digits is unspecified; check with {@link isValid} first.
 *
 * @example
 * ```ts
 * import { SequenceNumber } from "@effect-kinesis/core"
 * SequenceNumber.compare("9", "10") // -1
 * SequenceNumber.compare("10", "10") // 0
 * ```
 *
 * @since 0.1.0
 * @category ordering
 */
export const compare = (self: string, that: string): Ordering => {
  if (self === that) return 0
  const i = skipLeadingZeros(self)
  const j = skipLeadingZeros(that)
  const n = self.length - i
  const m = that.length - j
  if (n !== m) return n < m ? -1 : 1
  if (i === 0 && j === 0) return self < that ? -1 : 1
  for (let k = 0; k < n; k++) {
    const a = self.charCodeAt(i + k)
    const b = that.charCodeAt(j + k)
    if (a !== b) return a < b ? -1 : 1
  }
  return 0
}

// Index of the first significant digit; keeps the last digit of an all-zero string so "000" reads as "0".
const skipLeadingZeros = (s: string): number => {
  let i = 0
  while (i < s.length - 1 && s.charCodeAt(i) === ZERO) i++
  return i
}

/**
 * The integer order of sequence numbers, for use with effect's `Order` and `Array` combinators.
 *
 * @example
 * ```ts
 * import { SequenceNumber } from "@effect-kinesis/core"
 * import { Array } from "effect"
 * Array.sort(["10", "9", "100"], SequenceNumber.Order) // ["9", "10", "100"]
 * ```
 *
 * @since 0.1.0
 * @category ordering
 */
export const Order: order.Order<SequenceNumber> = compare

/**
 * The integer value of a sequence number, for arithmetic or interop. Prefer {@link compare} for ordering: it does
 * not allocate.
 *
 * Expects a valid sequence number (see {@link isValid}); `BigInt` semantics apply to other input.
 *
 * @example
 * ```ts
 * import { SequenceNumber } from "@effect-kinesis/core"
 * SequenceNumber.toBigInt("49590338271490256608559692538361571095921575989136588898") // 4959…8898n
 * ```
 *
 * @since 0.1.0
 * @category conversions
 */
export const toBigInt = (self: SequenceNumber): bigint => BigInt(self)
