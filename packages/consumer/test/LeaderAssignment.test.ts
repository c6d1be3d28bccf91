import type { Lease as LeaseModule } from "@effect-kinesis/consumer"
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import type * as LeaderAssignment from "../src/internal/leaderAssignment.ts"

// An internal module (the package does not export it): loaded by path, which the compiler leaves
// as is, where a static import across the src and test projects does not compile.
const { decide }: typeof LeaderAssignment = await import(
  new URL("../src/internal/leaderAssignment.ts", import.meta.url).href
)

type Lease = LeaseModule.Lease

const MIN_MOVE = 60_000

const lease = (leaseKey: string, fields: Partial<Lease> = {}): Lease => ({
  leaseKey,
  leaseOwner: undefined,
  leaseCounter: 1,
  checkpoint: ExtendedSequenceNumber.make("49590338271490256608559692538361571095921575989136588898"),
  pendingCheckpoint: undefined,
  ownerSwitchesSinceCheckpoint: 0,
  parentShardIds: [],
  childShardIds: [],
  hashKeyRange: undefined,
  ...fields
})

const input = (
  leases: ReadonlyArray<Lease>,
  workers: ReadonlyArray<string>,
  options: Partial<LeaderAssignment.Input> = {}
): LeaderAssignment.Input => ({
  leases,
  workers: new Set(workers),
  expired: () => false,
  existingShards: new Set(leases.map((l) => l.leaseKey)),
  lastMovedAt: () => undefined,
  now: 1_000_000,
  minMoveMillis: MIN_MOVE,
  balance: { _tag: "count" },
  maxTakes: 1_000,
  maxMoves: 1_000,
  ...options
})

const countsOf = (leases: ReadonlyArray<Lease>, workers: ReadonlyArray<string>) => {
  const counts = new Map(workers.map((w) => [w, 0]))
  for (const l of leases) {
    if (l.leaseOwner !== undefined && counts.has(l.leaseOwner)) {
      counts.set(l.leaseOwner, counts.get(l.leaseOwner)! + 1)
    }
  }
  return counts
}

const spread = (counts: ReadonlyMap<string, number>) => Math.max(...counts.values()) - Math.min(...counts.values())

/** Applies a round as if every write succeeded and every hand-off completed at once. */
const apply = (leases: ReadonlyArray<Lease>, round: LeaderAssignment.Assignment): Array<Lease> => {
  const to = new Map([...round.takes, ...round.handOffs].map((m) => [m.lease.leaseKey, m.to]))
  return leases.map((l) =>
    to.has(l.leaseKey) ? { ...l, leaseOwner: to.get(l.leaseKey), leaseCounter: l.leaseCounter + 1 } : l
  )
}

describe("leader assignment: the decision", () => {
  it("gives every orphan out, least loaded worker first, then evens the counts out by hand-offs", () => {
    const leases = [
      ...Array.from({ length: 6 }, (_, i) => lease(`a${i}`, { leaseOwner: "a" })),
      lease("free1"),
      lease("free2"),
      lease("dead", { leaseOwner: "gone" })
    ]
    const round = decide(input(leases, ["a", "b", "c"], { expired: (l) => l.leaseOwner === "gone" }))
    assert.deepStrictEqual(round.takes.map((m) => [m.lease.leaseKey, m.to]), [["free1", "b"], ["free2", "c"], [
      "dead",
      "b"
    ]])
    // a 6, b 2, c 1 → 3, 3, 3.
    assert.deepStrictEqual(round.handOffs.map((m) => m.to).sort(), ["b", "c", "c"])
    assert.deepStrictEqual(spread(countsOf(apply(leases, round), ["a", "b", "c"])), 0)
  })

  it("moves nothing while the counts are within one", () => {
    const leases = [lease("1", { leaseOwner: "a" }), lease("2", { leaseOwner: "a" }), lease("3", { leaseOwner: "b" })]
    assert.deepStrictEqual(decide(input(leases, ["a", "b"])), { takes: [], handOffs: [] })
  })

  it("a child waits for its parents: given out once each parent is at SHARD_END or gone", () => {
    const parent = lease("p", { leaseOwner: "a" })
    const child = lease("c", { parentShardIds: ["p"], checkpoint: ExtendedSequenceNumber.trimHorizon })
    assert.deepStrictEqual(decide(input([parent, child], ["a", "b"])).takes, [])
    const ended = { ...parent, checkpoint: ExtendedSequenceNumber.shardEnd }
    assert.deepStrictEqual(decide(input([ended, child], ["a", "b"])).takes.map((m) => m.lease.leaseKey), ["c"])
    // A parent shard that exists without a lease: its lease is about to be created.
    assert.deepStrictEqual(decide(input([child], ["a"], { existingShards: new Set(["p", "c"]) })).takes, [])
    assert.deepStrictEqual(decide(input([child], ["a"], { existingShards: new Set(["c"]) })).takes.length, 1)
  })

  it("a lease under hand-off, or moved within minMoveInterval, stays; its owner keeps it", () => {
    const leases = [
      lease("1", { leaseOwner: "a" }),
      lease("2", { leaseOwner: "a", checkpointOwner: "c" }),
      lease("3", { leaseOwner: "a" })
    ]
    const recent = (key: string) => key === "1" ? 1_000_000 - MIN_MOVE + 1 : undefined
    assert.deepStrictEqual(
      decide(input(leases, ["a", "b"], { lastMovedAt: recent })).handOffs.map((m) => m.lease.leaseKey),
      ["3"]
    )
    const all = (key: string) => key === "3" ? 1_000_000 - 5 : recent(key)
    assert.deepStrictEqual(decide(input(leases, ["a", "b"], { lastMovedAt: all })).handOffs, [])
  })

  it("a worker not among the live ones keeps its unexpired leases and gets none", () => {
    const leases = [lease("1", { leaseOwner: "stopping" }), lease("2", { leaseOwner: "stopping" }), lease("3")]
    const round = decide(input(leases, ["a"]))
    assert.deepStrictEqual(round.takes.map((m) => [m.lease.leaseKey, m.to]), [["3", "a"]])
    assert.deepStrictEqual(round.handOffs, [])
  })

  it("by throughput: the hot leases are spread, the cold ones follow, within the tolerance", () => {
    const kbps = [900, 800, 100, 100, 100, 100, 50, 50, 50, 50]
    const leases = kbps.map((t, i) => lease(`l${i}`, { leaseOwner: "a", throughputKBps: t }))
    const round = decide(input(leases, ["a", "b", "c"], { balance: { _tag: "throughput", tolerance: 0.2 } }))
    const after = apply(leases, round)
    const loads = new Map<string, number>()
    for (const l of after) loads.set(l.leaseOwner!, (loads.get(l.leaseOwner!) ?? 0) + l.throughputKBps!)
    // Mean 766.7: the two hot leases apart, the cold ones to the third worker; the busiest (900)
    // ends within 20 % of the mean. c stays at 600: no lease fits its gap without reversing roles.
    assert.deepStrictEqual(Object.fromEntries([...loads].sort()), { a: 800, b: 900, c: 600 })
    assert.isAtMost(Math.max(...loads.values()), 1.2 * (2300 / 3))
  })
})

// --- properties ----------------------------------------------------------------------------------

const WORKERS = ["w0", "w1", "w2", "w3", "w4", "w5"]

interface Spec {
  readonly owner: number // index into the workers; -1 unowned; 99 a worker not among the live ones
  readonly expired: boolean
  readonly kbps: number | undefined
  readonly handingTo: boolean
  readonly movedAgo: number | undefined
  readonly parent: number | undefined // index of an earlier lease
  readonly ended: boolean
}

const specArb = fc.record<Spec>({
  owner: fc.oneof(fc.integer({ min: -1, max: 5 }), fc.constant(99)),
  expired: fc.boolean(),
  kbps: fc.option(fc.integer({ min: 0, max: 1000 }), { nil: undefined }),
  handingTo: fc.boolean(),
  movedAgo: fc.option(fc.integer({ min: 0, max: 2 * MIN_MOVE }), { nil: undefined }),
  parent: fc.option(fc.nat(), { nil: undefined }),
  ended: fc.boolean()
})

const build = (n: number, specs: ReadonlyArray<Spec>) => {
  const workers = WORKERS.slice(0, n)
  const leases = specs.map((s, i): Lease =>
    lease(`l${String(i).padStart(2, "0")}`, {
      leaseOwner: s.owner === -1 ? undefined : s.owner === 99 ? "outsider" : workers[s.owner % n],
      checkpointOwner: s.handingTo && s.owner !== -1 ? "previous" : undefined,
      throughputKBps: s.kbps,
      parentShardIds: s.parent !== undefined && i > 0 ? [`l${String(s.parent % i).padStart(2, "0")}`] : [],
      checkpoint: s.ended ? ExtendedSequenceNumber.shardEnd : ExtendedSequenceNumber.trimHorizon
    })
  )
  const expired = new Set(specs.flatMap((s, i) => s.expired ? [leases[i]!.leaseKey] : []))
  const now = 1_000_000
  const movedAt = new Map(
    specs.flatMap((s, i) => s.movedAgo === undefined ? [] : [[leases[i]!.leaseKey, now - s.movedAgo]])
  )
  return { workers, leases, expired, movedAt, now }
}

const balanceArb = fc.oneof(
  fc.constant<LeaderAssignment.Balance>({ _tag: "count" }),
  fc.constant<LeaderAssignment.Balance>({ _tag: "throughput", tolerance: 0.1 })
)

describe("leader assignment: properties", () => {
  it("one round: bounded, every move to a live worker, no lease twice, and none that must stay", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.array(specArb, { maxLength: 40 }),
        balanceArb,
        fc.integer({ min: 0, max: 8 }),
        fc.integer({ min: 0, max: 8 }),
        (n, specs, balance, maxTakes, maxMoves) => {
          const { expired, leases, movedAt, now, workers } = build(n, specs)
          const round = decide(input(leases, workers, {
            expired: (l) => expired.has(l.leaseKey),
            lastMovedAt: (key) => movedAt.get(key),
            now,
            balance,
            maxTakes,
            maxMoves
          }))
          // Ready, judged here from the specs: not at SHARD_END, every parent at SHARD_END.
          const byKey = new Map(leases.map((l) => [l.leaseKey, l]))
          const ended = (l: Lease) => ExtendedSequenceNumber.isShardEnd(l.checkpoint)
          const ready = new Set(
            leases.filter((l) => !ended(l) && l.parentShardIds.every((p) => ended(byKey.get(p)!))).map((l) =>
              l.leaseKey
            )
          )
          assert.isAtMost(round.takes.length, maxTakes)
          assert.isAtMost(round.handOffs.length, maxMoves)
          const keys = [...round.takes, ...round.handOffs].map((m) => m.lease.leaseKey)
          assert.deepStrictEqual(new Set(keys).size, keys.length)
          for (const m of [...round.takes, ...round.handOffs]) {
            assert.include(workers, m.to)
            // Children wait for their parents; leases read to their end are not given out.
            assert.isTrue(ready.has(m.lease.leaseKey), m.lease.leaseKey)
          }
          for (const m of round.takes) {
            assert.isTrue(m.lease.leaseOwner === undefined || expired.has(m.lease.leaseKey))
          }
          for (const m of round.handOffs) {
            const l = m.lease
            assert.isTrue(l.leaseOwner !== undefined && workers.includes(l.leaseOwner) && l.leaseOwner !== m.to)
            assert.isFalse(expired.has(l.leaseKey))
            assert.isUndefined(l.checkpointOwner)
            const at = movedAt.get(l.leaseKey)
            assert.isTrue(at === undefined || now - at >= MIN_MOVE)
          }
          // Every ready orphan is given out when the bound allows.
          const orphans = leases.filter((l) =>
            ready.has(l.leaseKey) && (l.leaseOwner === undefined || expired.has(l.leaseKey))
          )
          if (maxTakes >= orphans.length) assert.deepStrictEqual(round.takes.length, orphans.length)
        }
      ),
      { numRuns: 1_000 }
    )
  })

  it("rounds over time: every lease ends assigned, counts within one (by count), no lease moved twice within minMoveInterval, then nothing moves", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.array(specArb, { maxLength: 40 }),
        balanceArb,
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 8 }),
        (n, specs, balance, maxTakes, maxMoves) => {
          // Live owners or none, no hand-off under way, no lineage: every lease may end anywhere.
          const clean = specs.map((s) => ({
            ...s,
            owner: s.owner === 99 ? -1 : s.owner,
            handingTo: false,
            parent: undefined,
            ended: false
          }))
          const built = build(n, clean)
          const { workers } = built
          let { leases, now } = built
          const expired = new Set(built.expired)
          const movedAt = new Map(built.movedAt)
          const step = MIN_MOVE / 3
          let last: LeaderAssignment.Assignment = { takes: [], handOffs: [] }
          for (let r = 0; r < 150; r++) {
            last = decide(input(leases, workers, {
              expired: (l) => expired.has(l.leaseKey),
              lastMovedAt: (key) => movedAt.get(key),
              now,
              balance,
              maxTakes,
              maxMoves
            }))
            for (const m of last.handOffs) {
              const at = movedAt.get(m.lease.leaseKey)
              assert.isTrue(at === undefined || now - at >= MIN_MOVE, "moved twice within minMoveInterval")
              movedAt.set(m.lease.leaseKey, now)
            }
            // A take of an expired lease is a change of owner too (the leader's tracking sees it so).
            for (const m of last.takes) {
              if (m.lease.leaseOwner !== undefined) movedAt.set(m.lease.leaseKey, now)
              expired.delete(m.lease.leaseKey)
            }
            leases = apply(leases, last)
            now += step
          }
          assert.deepStrictEqual(last, { takes: [], handOffs: [] })
          for (const l of leases) assert.include(workers, l.leaseOwner)
          if (balance._tag === "count") assert.isAtMost(spread(countsOf(leases, workers)), 1)
        }
      ),
      { numRuns: 300 }
    )
  })
})
