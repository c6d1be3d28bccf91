import type { Lease } from "@effect-kinesis/consumer"
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import type * as ThroughputBalance from "../src/internal/throughputBalance.ts"

// An internal module (the package does not export it): loaded by path, which the compiler leaves
// as is, where a static import across the src and test projects does not compile.
const { decide, meter, moves }: typeof ThroughputBalance = await import(
  new URL("../src/internal/throughputBalance.ts", import.meta.url).href
)

type Load = ThroughputBalance.LeaseLoad

// Leases as `owner: [kbps, …]`, keys `<owner>-<i>`, all movable.
const fleet = (held: Record<string, ReadonlyArray<number | undefined>>): Array<Load> =>
  Object.entries(held).flatMap(([owner, loads]) =>
    loads.map((throughputKBps, i) => ({ leaseKey: `${owner}-${i}`, owner, throughputKBps, movable: true }))
  )

const run = (self: string, leases: ReadonlyArray<Load>, options: { tolerance?: number; maxMoves?: number } = {}) =>
  decide({
    self,
    workers: new Set(leases.map((l) => l.owner)).add(self),
    leases,
    tolerance: options.tolerance ?? 0.1,
    maxMoves: options.maxMoves ?? 64
  })

const loadsOf = (leases: ReadonlyArray<Load>, workers: ReadonlyArray<string>) => {
  const loads = new Map(workers.map((w) => [w, 0]))
  for (const l of leases) loads.set(l.owner, loads.get(l.owner)! + (l.throughputKBps ?? 0))
  return loads
}

const sumOfSquares = (loads: ReadonlyMap<string, number>) => [...loads.values()].reduce((s, x) => s + x * x, 0)

const moveTo = (leases: ReadonlyArray<Load>, keys: ReadonlyArray<string>, owner: string): Array<Load> =>
  leases.map((l) => keys.includes(l.leaseKey) ? { ...l, owner } : l)

describe("balancing by throughput: the decision", () => {
  it("a worker with nothing takes one hot lease and cold ones from the worker holding them all", () => {
    // 14 KB/s over two workers: 7 each; the hot lease (4) and three cold ones get there.
    const leases = fleet({ a: [4, 4, 1, 1, 1, 1, 1, 1] })
    const taken = run("b", leases)
    assert.deepStrictEqual(taken.length, 4)
    const after = loadsOf(moveTo(leases, taken, "b"), ["a", "b"])
    assert.deepStrictEqual([after.get("a"), after.get("b")], [7, 7])
    assert.deepStrictEqual(taken.filter((key) => key === "a-0" || key === "a-1").length, 1)
  })

  it("nothing moves while every worker is within the tolerance of the mean", () => {
    // Mean 10: 10.9 and 9.1 are inside ±10 %, though a lease of 0.5 would bring them closer.
    const leases = fleet({ a: [5, 5.4, 0.5], b: [4.6, 4.5], c: [5, 5] })
    for (const self of ["a", "b", "c"]) assert.deepStrictEqual(run(self, leases), [])
  })

  it("only the least loaded worker moves leases (ties broken by worker id), so workers reading one table agree", () => {
    const leases = fleet({ a: [10, 1, 1], b: [2], c: [2] })
    assert.deepStrictEqual(run("c", leases), [])
    assert.deepStrictEqual(run("a", leases), [])
    assert.deepStrictEqual(run("b", leases).length > 0, true)
  })

  it("a move never swaps the roles of the two workers: one lease bigger than their gap stays", () => {
    // Moving the single lease would only make b the busy one; the move back would follow.
    assert.deepStrictEqual(run("b", fleet({ a: [10] })), [])
    // One slightly smaller than the gap less the margin (0.1 × 5) moves: b ends 0.5 above a at most.
    assert.deepStrictEqual(run("b", fleet({ a: [5.2, 4.8] })), ["a-1"])
  })

  it("many small leases move one by one until the loads are close, not only large ones", () => {
    let leases = fleet({ a: Array.from({ length: 100 }, () => 1) })
    for (let round = 0; round < 10; round++) {
      const taken = run("b", leases, { maxMoves: 16 })
      if (taken.length === 0) break
      leases = moveTo(leases, taken, "b")
    }
    const after = loadsOf(leases, ["a", "b"])
    assert.isAtMost(Math.abs(after.get("a")! - after.get("b")!), 10)
  })

  it("takes at most maxMoves leases in one round, and none that are not movable", () => {
    const leases = fleet({ a: [1, 1, 1, 1, 1, 1, 1, 1] })
    assert.deepStrictEqual(run("b", leases, { maxMoves: 2 }).length, 2)
    const pinned = leases.map((l) => l.leaseKey === "a-0" ? l : { ...l, movable: false })
    assert.deepStrictEqual(run("b", pinned), ["a-0"])
  })

  it("leases without a measurement count at the mean of the measured ones", () => {
    // a: 2 + (unknown = 2) + 2 = 6, b: 0 → b takes one lease.
    const leases = fleet({ a: [2, undefined, 2] })
    assert.deepStrictEqual(run("b", leases).length, 1)
    // Nothing measured at all: nothing to balance by.
    assert.deepStrictEqual(run("b", fleet({ a: [undefined, undefined] })), [])
  })

  it("hysteresis: after a move, measurements that wander by less than the margin never send a lease back", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 5 }),
        fc.array(fc.record({ load: fc.integer({ min: 1, max: 10_000 }).map((x) => x / 100), owner: fc.nat() }), {
          minLength: 1,
          maxLength: 24
        }),
        fc.array(fc.double({ min: -1, max: 1, noNaN: true }), { minLength: 24, maxLength: 24 }),
        (n, spec, jitter) => {
          const workers = Array.from({ length: n }, (_, i) => `w${i}`)
          const leases: Array<Load> = spec.map((s, i) => ({
            leaseKey: `l${i}`,
            owner: workers[s.owner % n]!,
            throughputKBps: s.load,
            movable: true
          }))
          const tolerance = 0.1
          const loads = loadsOf(leases, workers)
          const least = [...loads].sort(([w1, x], [w2, y]) => x - y || (w1 < w2 ? -1 : 1))[0]![0]
          const taken = decide({ self: least, workers, leases, tolerance, maxMoves: 1 })
          if (taken.length === 0) return
          const from = leases.find((l) => l.leaseKey === taken[0])!.owner
          // Each lease measured up to tolerance / (4n) off (relative) from what it was.
          const delta = tolerance / (4 * n)
          const after = moveTo(leases, taken, least).map((l, i) => ({
            ...l,
            throughputKBps: l.throughputKBps! * (1 + delta * jitter[i]!)
          }))
          for (const self of workers) {
            const back = decide({ self, workers, leases: after, tolerance, maxMoves: 64 })
            if (self === from) assert.notInclude(back, taken[0]!)
          }
        }
      ),
      { numRuns: 500 }
    )
  })

  it("a fleet whose loads stand still stops moving leases: every move lowers the sum of squared loads, and the busiest ends near the mean", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 6 }),
        fc.array(fc.record({ load: fc.integer({ min: 0, max: 5_000 }).map((x) => x / 100), owner: fc.nat() }), {
          minLength: 1,
          maxLength: 40
        }),
        (n, spec) => {
          const workers = Array.from({ length: n }, (_, i) => `w${i}`)
          let leases: Array<Load> = spec.map((s, i) => ({
            leaseKey: `l${i}`,
            owner: workers[s.owner % n]!,
            throughputKBps: s.load,
            movable: true
          }))
          const tolerance = 0.1
          let rounds = 0
          let moved = true
          while (moved) {
            moved = false
            assert.isBelow(rounds++, 1000, "still moving leases after 1000 rounds")
            for (const self of workers) {
              const before = sumOfSquares(loadsOf(leases, workers))
              const taken = decide({ self, workers, leases, tolerance, maxMoves: 64 })
              if (taken.length === 0) continue
              moved = true
              leases = moveTo(leases, taken, self)
              assert.isBelow(sumOfSquares(loadsOf(leases, workers)), before)
            }
          }
          // Settled: a worker is within the tolerance of the mean, or above the least loaded by no more than its
          // smallest lease (with a load) and half the margin: none of its leases could move without swapping roles.
          const loads = loadsOf(leases, workers)
          const mean = [...loads.values()].reduce((a, b) => a + b, 0) / n
          const margin = tolerance * mean
          const least = Math.min(...loads.values())
          for (const [worker, load] of loads) {
            if (load <= mean + margin + 1e-9) continue
            const smallest = Math.min(
              ...leases.filter((l) => l.owner === worker && l.throughputKBps! > 0).map((l) => l.throughputKBps!)
            )
            assert.isAtMost(load - least, smallest + margin / 2 + 1e-9)
          }
        }
      ),
      { numRuns: 300 }
    )
  })

  it("skewed shards (2 hot with most of the bytes among 8) end within 20 % of the mean on 2 and 3 workers, from any start", () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 3 }), fc.array(fc.nat(), { minLength: 8, maxLength: 8 }), (n, start) => {
        const workers = Array.from({ length: n }, (_, i) => `w${i}`)
        const load = [8, 8, 1, 1, 1, 1, 1, 1]
        let leases: Array<Load> = load.map((throughputKBps, i) => ({
          leaseKey: `l${i}`,
          owner: workers[start[i]! % n]!,
          throughputKBps,
          movable: true
        }))
        const moved = new Map<string, number>()
        for (let round = 0; round < 20; round++) {
          for (const self of workers) {
            const taken = decide({ self, workers, leases, tolerance: 0.1, maxMoves: 64 })
            for (const key of taken) moved.set(key, (moved.get(key) ?? 0) + 1)
            leases = moveTo(leases, taken, self)
          }
        }
        const loads = loadsOf(leases, workers)
        const mean = 22 / n
        assert.isAtMost(Math.max(...loads.values()), 1.2 * mean)
      }),
      { numRuns: 300 }
    )
  })
})

describe("balancing by throughput: leases moved recently", () => {
  const lease = (leaseKey: string, leaseOwner: string | undefined): Lease.Lease => ({
    leaseKey,
    leaseOwner,
    leaseCounter: 1,
    checkpoint: ExtendedSequenceNumber.trimHorizon,
    pendingCheckpoint: undefined,
    ownerSwitchesSinceCheckpoint: 0,
    parentShardIds: [],
    childShardIds: [],
    hashKeyRange: undefined
  })

  it("a lease that went from one worker to another is not movable for minMoveInterval; a free lease taken is", () => {
    const tracker = moves(60_000)
    tracker.observe([lease("s0", "a"), lease("s1", undefined)], 0)
    assert.deepStrictEqual([tracker.movable("s0", 0), tracker.movable("s1", 0)], [true, true])
    tracker.observe([lease("s0", "b"), lease("s1", "b")], 1_000)
    assert.deepStrictEqual([tracker.movable("s0", 1_000), tracker.movable("s1", 1_000)], [false, true])
    assert.deepStrictEqual(tracker.movable("s0", 60_999), false)
    assert.deepStrictEqual(tracker.movable("s0", 61_000), true)
    // Released and taken again (a shutdown): not a move.
    tracker.observe([lease("s1", undefined)], 2_000)
    tracker.observe([lease("s1", "c")], 3_000)
    assert.deepStrictEqual(tracker.movable("s1", 3_000), true)
    // Asked for by this worker: moved then, whether or not the owner lets it go.
    tracker.moved("s1", 4_000)
    tracker.observe([lease("s1", "c")], 5_000)
    assert.deepStrictEqual(tracker.movable("s1", 5_000), false)
    assert.deepStrictEqual(tracker.movable("s1", 64_000), true)
  })
})

describe("balancing by throughput: the measurement", () => {
  const owned = (throughputKBps: number | undefined) => ({
    lease: { leaseKey: "s0", throughputKBps } as Lease.Lease,
    fetchedBytes: 0
  })

  it("KB/s (1024 bytes) since the last renewal, smoothed by half; the first renewal after a take keeps the stored value", () => {
    const measure = meter()
    const o = owned(4)
    o.fetchedBytes = 999
    assert.deepStrictEqual(measure(o, 10_000), 4)
    o.fetchedBytes = 4096
    assert.deepStrictEqual(measure(o, 12_000), 0.5 * 2 + 0.5 * 4)
    assert.deepStrictEqual(o.fetchedBytes, 0)
    assert.deepStrictEqual(measure(o, 13_000), 1.5)

    const fresh = owned(undefined)
    assert.deepStrictEqual(measure(fresh, 0), undefined)
    fresh.fetchedBytes = 1000
    assert.deepStrictEqual(measure(fresh, 3_000), Math.round(1000 / 1024 / 3 * 1e6) / 1e6)
  })
})
