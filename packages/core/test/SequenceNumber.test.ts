import { SequenceNumber } from "@effect-kinesis/core"
import { describe, expect, it } from "@effect/vitest"
import { Array } from "effect"
import * as fc from "fast-check"

const MAX = 10n ** 129n - 1n // the largest 129-digit decimal

// Canonical decimals of 1..129 digits (real sequence numbers have 56); the leading digit is never 0 unless the number is 0.
const decimal = fc.integer({ min: 1, max: 129 }).chain((length) =>
  length === 1
    ? fc.stringMatching(/^[0-9]$/)
    : fc.tuple(
      fc.stringMatching(/^[1-9]$/),
      fc.string({ unit: fc.constantFrom(..."0123456789"), minLength: length - 1, maxLength: length - 1 })
    )
      .map(([head, tail]) => head + tail)
)

// Pairs sharing a long prefix, so equal lengths and late differences are common rather than rare.
const closePair = fc.tuple(decimal, fc.stringMatching(/^[0-9]{0,3}$/), fc.stringMatching(/^[0-9]{0,3}$/))
  .map(([prefix, a, b]) => [prefix + a, prefix + b] as const)

const bigIntCompare = (a: string, b: string) => (BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0)

describe("SequenceNumber", () => {
  it("orders by integer value, not by string", () => {
    expect(SequenceNumber.compare("9", "10")).toBe(-1)
    expect(SequenceNumber.compare("10", "9")).toBe(1)
    expect(SequenceNumber.compare("100", "100")).toBe(0)
    expect(
      SequenceNumber.compare(
        "49590338271490256608559692538361571095921575989136588898",
        "49590338271490256608559692538361571095921575989136588899"
      )
    ).toBe(-1)
    expect(Array.sort(["10", "9", "100", "0", "11"], SequenceNumber.Order)).toEqual(["0", "9", "10", "11", "100"])
  })

  it("agrees with BigInt order for random 1..129-digit numbers", () => {
    fc.assert(
      fc.property(fc.oneof(fc.tuple(decimal, decimal), closePair), ([a, b]) => {
        expect(SequenceNumber.compare(a, b)).toBe(bigIntCompare(a, b))
        expect(SequenceNumber.Order(a, b)).toBe(bigIntCompare(a, b))
      }),
      { numRuns: 2000 }
    )
  })

  it("agrees with BigInt order even when inputs carry leading zeros", () => {
    const padded = fc.tuple(fc.stringMatching(/^0{0,3}$/), decimal).map(([zeros, digits]) => zeros + digits)
    fc.assert(
      fc.property(padded, padded, (a, b) => {
        expect(SequenceNumber.compare(a, b)).toBe(bigIntCompare(a, b))
      })
    )
    expect(SequenceNumber.compare("000", "0")).toBe(0)
    expect(SequenceNumber.compare("007", "7")).toBe(0)
    expect(SequenceNumber.compare("010", "9")).toBe(1)
  })

  it("is antisymmetric", () => {
    fc.assert(
      fc.property(fc.oneof(fc.tuple(decimal, decimal), closePair), ([a, b]) => {
        expect(SequenceNumber.compare(a, b) + SequenceNumber.compare(b, a)).toBe(0)
      })
    )
  })

  it("accepts exactly the canonical decimals of up to 129 digits, like the Kinesis API", () => {
    expect(SequenceNumber.isValid("49590338271490256608559692538361571095921575989136588898")).toBe(true)
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: MAX }), (n) => {
        expect(SequenceNumber.isValid(n.toString())).toBe(true)
        expect(SequenceNumber.toBigInt(n.toString())).toBe(n)
      })
    )
    fc.assert(
      fc.property(fc.bigInt({ min: MAX + 1n, max: 10n ** 140n }), (n) => {
        expect(SequenceNumber.isValid(n.toString())).toBe(false)
      })
    )
    expect(SequenceNumber.isValid(MAX.toString())).toBe(true)
    expect(SequenceNumber.isValid((MAX + 1n).toString())).toBe(false)
    for (const invalid of ["", "01", "00", "-1", "+1", " 1", "1 ", "1.0", "1e3", "0x10", "abc", "TRIM_HORIZON"]) {
      expect(SequenceNumber.isValid(invalid), invalid).toBe(false)
    }
  })
})
