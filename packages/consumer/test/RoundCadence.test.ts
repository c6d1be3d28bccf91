/**
 * When a take round reads the whole lease table (`RoundCadence`): at once after a busy round or on request, when a
 * lease standing still would expire, and otherwise at a pace set by the table's size, never slower than the take
 * interval (jittered within 0.8-1.2 of it).
 */
import { describe, expect, it } from "@effect/vitest"
import type * as RoundCadenceModule from "../src/internal/roundCadence.ts"

// An internal module: loaded by path, as the other tests of internals do (a static import across the src and test
// projects does not compile).
const RoundCadence: typeof RoundCadenceModule = await import(
  new URL("../src/internal/roundCadence.ts", import.meta.url).href
)

const SCAN = 500
const TAKE = 10_000

describe("RoundCadence", () => {
  it("reads the table at the first round, and at once after a busy one", () => {
    const cadence = RoundCadence.make(SCAN, TAKE)
    expect(cadence.due(0)).toBe(true)
    cadence.done(0, 1000, true, Number.POSITIVE_INFINITY, 0.5)
    expect(cadence.due(1)).toBe(true)
  })

  it("a quiet large table is read once per take interval, jittered", () => {
    const cadence = RoundCadence.make(SCAN, TAKE)
    cadence.done(0, 1000, false, Number.POSITIVE_INFINITY, 0)
    expect(cadence.due(TAKE * 0.8 - 1)).toBe(false)
    expect(cadence.due(TAKE * 0.8)).toBe(true)
    cadence.done(0, 1000, false, Number.POSITIVE_INFINITY, 0.999)
    expect(cadence.due(TAKE * 1.19)).toBe(false)
    expect(cadence.due(TAKE * 1.2)).toBe(true)
  })

  it("a small table is read about once per scan interval: one read unit (16 leases) per scan interval", () => {
    const cadence = RoundCadence.make(SCAN, TAKE)
    cadence.done(0, 4, false, Number.POSITIVE_INFINITY, 0.5)
    expect(cadence.due(SCAN - 1)).toBe(false)
    expect(cadence.due(SCAN)).toBe(true)
    cadence.done(0, 64, false, Number.POSITIVE_INFINITY, 0.5)
    expect(cadence.due(4 * SCAN - 1)).toBe(false)
    expect(cadence.due(4 * SCAN)).toBe(true)
  })

  it("a lease standing still is looked at again when it would expire; a shard end wakes the next round", () => {
    const cadence = RoundCadence.make(SCAN, TAKE)
    cadence.done(0, 1000, false, 3_000, 0.5)
    expect(cadence.due(2_999)).toBe(false)
    expect(cadence.due(3_000)).toBe(true)
    cadence.done(3_000, 1000, false, Number.POSITIVE_INFINITY, 0.5)
    expect(cadence.due(3_001)).toBe(false)
    cadence.wake()
    expect(cadence.due(3_001)).toBe(true)
  })
})
