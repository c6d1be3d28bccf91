import { Lease, LeaseRepository } from "@effect-kinesis/consumer"
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"

const lease = (
  leaseKey: string,
  checkpoint: ExtendedSequenceNumber.ExtendedSequenceNumber,
  parentShardIds: ReadonlyArray<string> = [],
  childShardIds: ReadonlyArray<string> = []
): Lease.Lease => ({
  leaseKey,
  leaseOwner: undefined,
  leaseCounter: 1,
  checkpoint,
  pendingCheckpoint: undefined,
  ownerSwitchesSinceCheckpoint: 0,
  parentShardIds,
  childShardIds,
  hashKeyRange: undefined
})

const end = ExtendedSequenceNumber.shardEnd
const trim = ExtendedSequenceNumber.trimHorizon
const at = (n: number) => ExtendedSequenceNumber.make(String(n))

// Deletes the finished leases of a store holding `leases`; returns what was deleted and what is left.
const cleanup = (leases: ReadonlyArray<Lease.Lease>, listed: ReadonlyArray<Lease.Lease> = leases) =>
  Effect.gen(function*() {
    const repo = yield* LeaseRepository.makeMemory({ leases })
    const deleted = yield* LeaseRepository.deleteFinished(repo, listed)
    const left = (yield* repo.list).map((l) => l.leaseKey).sort()
    return { deleted, left }
  })

describe("finished leases", () => {
  it.effect("parents are deleted before their children, in one pass, whatever order they are listed in", () =>
    Effect.gen(function*() {
      const leases = [
        lease("D2", at(9), ["C1"]),
        lease("D1", at(8), ["C1"]),
        lease("C1", end, ["P"], ["D1", "D2"]),
        lease("C2", at(5), ["P"]),
        lease("P", end, [], ["C1", "C2"])
      ]
      assert.deepStrictEqual(yield* cleanup(leases), { deleted: ["P", "C1"], left: ["C2", "D1", "D2"] })
    }))

  it.effect("a finished child stays while its parent's lease exists", () =>
    Effect.gen(function*() {
      // C2's lease was never created (the parent's end was cut short): P must stay, and so C1.
      const leases = [
        lease("P", end, [], ["C1", "C2"]),
        lease("C1", end, ["P"], ["D1"]),
        lease("D1", at(8), ["C1"])
      ]
      assert.deepStrictEqual(yield* cleanup(leases), { deleted: [], left: ["C1", "D1", "P"] })
    }))

  it.effect("a parent goes once one child has started, while the other child, without records, keeps its lease", () =>
    Effect.gen(function*() {
      const started = [lease("P", end, [], ["C1", "C2"]), lease("C1", at(3), ["P"]), lease("C2", trim, ["P"])]
      assert.deepStrictEqual(yield* cleanup(started), { deleted: ["P"], left: ["C1", "C2"] })
      const none = [lease("P", end, [], ["C1", "C2"]), lease("C1", trim, ["P"]), lease("C2", trim, ["P"])]
      assert.deepStrictEqual(yield* cleanup(none), { deleted: [], left: ["C1", "C2", "P"] })
    }))

  it.effect("a child whose lease was deleted first counts as consumed when a lease naming it as parent has started", () =>
    Effect.gen(function*() {
      const repaired = [lease("P", end, [], ["C1", "C2"]), lease("C2", trim, ["P"]), lease("D1", at(4), ["C1"])]
      assert.deepStrictEqual(yield* cleanup(repaired), { deleted: ["P"], left: ["C2", "D1"] })
      // A missing child with no started descendant may just not be created yet: P stays.
      const pending = [lease("P", end, [], ["C1", "C2"]), lease("C2", at(2), ["P"]), lease("D1", trim, ["C1"])]
      assert.deepStrictEqual(yield* cleanup(pending), { deleted: [], left: ["C2", "D1", "P"] })
    }))

  it.effect("a parent whose delete conflicts stays, and so do its children, until the next pass", () =>
    Effect.gen(function*() {
      const stored = [
        lease("P", end, [], ["C1"]),
        lease("C1", end, ["P"], ["D1"]),
        lease("D1", at(8), ["C1"])
      ]
      // P changed since it was listed.
      const listed = [{ ...stored[0]!, leaseCounter: 0 }, stored[1]!, stored[2]!]
      assert.deepStrictEqual(yield* cleanup(stored, listed), { deleted: [], left: ["C1", "D1", "P"] })
    }))

  it("isFinished answers the same for an array and a map of the leases", () => {
    const leases = [
      lease("P", end, [], ["C1", "C2"]),
      lease("C1", end, ["P"], ["D1"]),
      lease("C2", trim, ["P"]),
      lease("D1", at(8), ["C1"])
    ]
    const byKey = new Map(leases.map((l) => [l.leaseKey, l]))
    assert.deepStrictEqual(leases.map((l) => Lease.isFinished(l, leases)), [true, false, false, false])
    assert.deepStrictEqual(leases.map((l) => Lease.isFinished(l, byKey)), [true, false, false, false])
  })
})
