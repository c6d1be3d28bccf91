/**
 * The streams of a multi-stream consumer share their scans of the lease table, without ever answering a caller with
 * a scan that started before it asked (it would miss the caller's own writes).
 */
import { type Lease, LeaseRepository } from "@effect-kinesis/consumer"
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import type * as MultiStreamLeases from "../src/internal/multiStreamLeases.ts"

// An internal module (the package does not export it): loaded by path, as in PartitionKeyRange.test.ts.
const { shareScans }: typeof MultiStreamLeases = await import(
  new URL("../src/internal/multiStreamLeases.ts", import.meta.url).href
)

const lease = (leaseKey: string): Lease.Lease => ({
  leaseKey,
  leaseOwner: undefined,
  leaseCounter: 0,
  checkpoint: ExtendedSequenceNumber.trimHorizon,
  pendingCheckpoint: undefined,
  ownerSwitchesSinceCheckpoint: 0,
  parentShardIds: [],
  childShardIds: [],
  hashKeyRange: undefined
})

describe("shared scans of a multi-stream table", () => {
  it.effect("callers within the window share one scan that sees what they wrote; a caller once the scan has started gets the next", () =>
    Effect.gen(function*() {
      let scans = 0
      const memory = yield* LeaseRepository.makeMemory({
        fault: (operation) => (operation === "list" && scans++, undefined)
      })
      // A scan reads the table as it starts, and answers 20 ms later.
      const slow = { ...memory, list: Effect.tap(memory.list, () => Effect.sleep("20 millis")) }
      const shared = shareScans(slow, Duration.millis(50))
      const first = yield* Effect.forkChild(shared.list)
      yield* TestClock.adjust("10 millis")
      // Written before asking, inside the window: the shared scan must see it.
      yield* memory.create(lease("a"))
      const second = yield* Effect.forkChild(shared.list)
      yield* TestClock.adjust("50 millis")
      // The scan has started: written and asked for now, answered by a scan of its own.
      yield* memory.create(lease("b"))
      const third = yield* Effect.forkChild(shared.list)
      yield* TestClock.adjust("10 millis")
      const [one, two] = [yield* Fiber.join(first), yield* Fiber.join(second)]
      expect(scans).toBe(1)
      expect(one.map((l) => l.leaseKey)).toEqual(["a"])
      expect(two).toBe(one)
      yield* TestClock.adjust("100 millis")
      expect((yield* Fiber.join(third)).map((l) => l.leaseKey).sort()).toEqual(["a", "b"])
      expect(scans).toBe(2)
    }))

  it.effect("a caller just after a scan reuses it while nothing was written through the store since it started", () =>
    Effect.gen(function*() {
      let scans = 0
      const memory = yield* LeaseRepository.makeMemory({
        leases: [lease("a")],
        fault: (operation) => (operation === "list" && scans++, undefined)
      })
      const shared = shareScans(memory, Duration.millis(50))
      const listed = Effect.map(shared.list, (leases) => leases.map((l) => l.leaseKey).sort())
      const ask = Effect.gen(function*() {
        const fiber = yield* Effect.forkChild(listed)
        yield* TestClock.adjust("50 millis")
        return yield* Fiber.join(fiber)
      })
      expect(yield* ask).toEqual(["a"])
      expect(scans).toBe(1)
      // Asked 10 ms after that scan started: answered by it.
      yield* TestClock.adjust("10 millis")
      expect(yield* listed).toEqual(["a"])
      expect(scans).toBe(1)
      // A write through the store: the next caller must see it, so it gets a scan of its own.
      yield* shared.create(lease("b"))
      expect(yield* ask).toEqual(["a", "b"])
      expect(scans).toBe(2)
      // Past the window, a scan again though nothing was written.
      yield* TestClock.adjust("60 millis")
      expect(yield* ask).toEqual(["a", "b"])
      expect(scans).toBe(3)
    }))

  it.effect("an interrupted first caller does not leave the others waiting", () =>
    Effect.gen(function*() {
      const memory = yield* LeaseRepository.makeMemory({ leases: [lease("a")] })
      const shared = shareScans(memory, Duration.millis(50))
      const first = yield* Effect.forkChild(shared.list)
      yield* TestClock.adjust("10 millis")
      const second = yield* Effect.forkChild(shared.list)
      yield* TestClock.adjust("10 millis")
      yield* Fiber.interrupt(first)
      yield* TestClock.adjust("100 millis")
      expect((yield* Fiber.join(second)).map((l) => l.leaseKey)).toEqual(["a"])
    }))
})
