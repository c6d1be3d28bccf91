import { ExtendedSequenceNumber as ESN } from "@effect-kinesis/core"
import { describe, expect, it } from "@effect/vitest"
import { Array } from "effect"
import * as fc from "fast-check"

const MAX = (1n << 128n) - 1n

const real = fc.record({
  sequenceNumber: fc.bigInt({ min: 0n, max: MAX }).map((n) => n.toString()),
  subSequenceNumber: fc.nat({ max: 10_000 })
})
// Positions drawn from a few nearby values, so equal sequence numbers with different subsequences are common.
const nearby = fc.record({
  sequenceNumber: fc.bigInt({ min: 99n, max: 101n }).map((n) => n.toString()),
  subSequenceNumber: fc.nat({ max: 2 })
})
const sentinel = fc.constantFrom(ESN.atTimestamp, ESN.trimHorizon, ESN.latest, ESN.shardEnd)
const position = fc.oneof(real, nearby, sentinel)

const sign = (n: number) => Math.sign(n)

describe("ExtendedSequenceNumber", () => {
  it("orders AT_TIMESTAMP < TRIM_HORIZON < LATEST < any sequence number < SHARD_END", () => {
    const ascending = [
      ESN.make(ESN.AT_TIMESTAMP),
      ESN.make(ESN.TRIM_HORIZON),
      ESN.make(ESN.LATEST),
      ESN.make("0"),
      ESN.make("0", 1),
      ESN.make("9", 7),
      ESN.make("10"),
      ESN.make(MAX.toString(), 3),
      ESN.make(ESN.SHARD_END)
    ]
    ascending.forEach((a, i) =>
      ascending.forEach((b, j) => {
        expect(ESN.compare(a, b), `${a.sequenceNumber}/${a.subSequenceNumber} vs ${b.sequenceNumber}`).toBe(
          sign(i - j)
        )
      })
    )
    expect(Array.sort([...ascending].reverse(), ESN.Order)).toEqual(ascending)
  })

  it("places every real position strictly between LATEST and SHARD_END", () => {
    fc.assert(
      fc.property(real, (p) => {
        expect(ESN.compare(ESN.latest, p)).toBe(-1)
        expect(ESN.compare(ESN.trimHorizon, p)).toBe(-1)
        expect(ESN.compare(ESN.atTimestamp, p)).toBe(-1)
        expect(ESN.compare(p, ESN.shardEnd)).toBe(-1)
      })
    )
  })

  it("orders real positions by (sequence number as integer, subsequence number)", () => {
    fc.assert(
      fc.property(fc.oneof(fc.tuple(real, real), fc.tuple(nearby, nearby)), ([a, b]) => {
        const sa = BigInt(a.sequenceNumber)
        const sb = BigInt(b.sequenceNumber)
        const expected = sa !== sb
          ? (sa < sb ? -1 : 1)
          : sign(a.subSequenceNumber - b.subSequenceNumber)
        expect(ESN.compare(a, b)).toBe(expected)
      }),
      { numRuns: 1000 }
    )
  })

  it("is a total order whose Equivalence matches compare = 0", () => {
    fc.assert(
      fc.property(position, position, position, (a, b, c) => {
        expect(ESN.compare(a, b) + ESN.compare(b, a)).toBe(0)
        if (ESN.compare(a, b) <= 0 && ESN.compare(b, c) <= 0) expect(ESN.compare(a, c)).toBeLessThanOrEqual(0)
        expect(ESN.Equivalence(a, b)).toBe(ESN.compare(a, b) === 0)
      }),
      { numRuns: 1000 }
    )
  })

  it("defaults the subsequence number of a plain record to 0", () => {
    expect(ESN.make("42")).toEqual({ sequenceNumber: "42", subSequenceNumber: 0 })
    expect(ESN.Equivalence(ESN.make("42"), ESN.make("42", 0))).toBe(true)
    expect(ESN.Equivalence(ESN.make("42"), ESN.make("42", 1))).toBe(false)
  })

  it("decides whether a record is at or before a checkpoint inside an aggregated record", () => {
    const checkpoint = ESN.make("500", 2)
    const alreadyProcessed = (p: ESN.ExtendedSequenceNumber) => ESN.compare(p, checkpoint) <= 0
    expect([0, 1, 2, 3, 4].map((sub) => alreadyProcessed(ESN.make("500", sub)))).toEqual([
      true,
      true,
      true,
      false,
      false
    ])
    expect(alreadyProcessed(ESN.make("499", 9))).toBe(true)
    expect(alreadyProcessed(ESN.make("501"))).toBe(false)
    // Nothing is processed before a sentinel start position, and everything is once the shard ended.
    expect(alreadyProcessed(ESN.make("0"))).toBe(true)
    expect(ESN.compare(ESN.make("0"), ESN.trimHorizon)).toBe(1)
    expect(ESN.compare(ESN.make(MAX.toString()), ESN.shardEnd)).toBe(-1)
  })

  it("ignores the subsequence number of sentinels", () => {
    expect(ESN.compare(ESN.make(ESN.LATEST, 5), ESN.latest)).toBe(0)
    expect(ESN.compare(ESN.make(ESN.SHARD_END, 0), ESN.make(ESN.SHARD_END, 9))).toBe(0)
  })

  it("recognises sentinels and SHARD_END", () => {
    for (const s of [ESN.atTimestamp, ESN.trimHorizon, ESN.latest, ESN.shardEnd]) expect(ESN.isSentinel(s)).toBe(true)
    expect(ESN.isSentinel(ESN.make("42"))).toBe(false)
    expect(ESN.isShardEnd(ESN.shardEnd)).toBe(true)
    expect(ESN.isShardEnd(ESN.latest)).toBe(false)
    expect(ESN.isShardEnd(ESN.make("42"))).toBe(false)
    expect(ESN.isSentinelString("TRIM_HORIZON")).toBe(true)
    expect(ESN.isSentinelString("trim_horizon")).toBe(false)
  })

  it("validates positions read from storage", () => {
    fc.assert(fc.property(position, (p) => {
      expect(ESN.isValid(p)).toBe(true)
    }))
    expect(ESN.isValid(ESN.make("SOMEWHERE"))).toBe(false)
    expect(ESN.isValid(ESN.make("042"))).toBe(false)
    expect(ESN.isValid(ESN.make("1".repeat(130)))).toBe(false)
    expect(ESN.isValid(ESN.make("49590338271490256608559692538361571095921575989136588898", 3))).toBe(true)
    expect(ESN.isValid(ESN.make("42", -1))).toBe(false)
    expect(ESN.isValid(ESN.make("42", 1.5))).toBe(false)
    expect(ESN.isValid(ESN.make("42", Number.NaN))).toBe(false)
  })
})
