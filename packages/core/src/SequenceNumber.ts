/**
 * Compares two sequence numbers.
 *
 * @example
 * ```ts
 * import { SequenceNumber } from "@effect-kinesis/core"
 * SequenceNumber.compare("1", "2") // -1
 * ```
 */
export const compare = (a: string, b: string): -1 | 0 | 1 => {
  const x = BigInt(a)
  const y = BigInt(b)
  return x < y ? -1 : x > y ? 1 : 0
}
