/**
 * Leader-based assignment (`lease.coordination: "leader"`) on the DynamoDB lease store with its owner index: one
 * worker holds the leader lock and assigns leases; the others only look up their own lease keys. Workers joining,
 * the leader stopping, and the leader cut off from DynamoDB.
 */
import { LeaseRepository, ShardAssignment } from "@effect-kinesis/consumer"
import { DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { StreamFixtures } from "@effect-kinesis/testing"
import { expect, layer } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import {
  Env,
  eventually,
  fastLeases,
  observer,
  produce,
  startWorker,
  tally,
  uniqueTable,
  type Worker
} from "./fixtures.ts"

// Slower than `fastLeases` (renewals every second, expiry in 4 s): on a loaded machine a renewal late by half a second
// would let a lease expire, and a lease taken over at expiry repeats records.
const lease = { ...fastLeases, expiry: "4 seconds", renewInterval: "1 second", coordination: "leader" } as const

/**
 * The table's store, whose every call (the leader lock's too) fails, as retryable, once `cut()` was called: the
 * worker is cut off from DynamoDB (it cannot renew, refresh the lock or release anything).
 */
const severable = (applicationName: string) => {
  let cut = false
  const fail = Effect.suspend(() =>
    Effect.fail(new LeaseRepository.LeaseStoreError({ operation: "cut", message: "unreachable", retryable: true }))
  )
  const gate = (value: unknown): unknown =>
    Effect.isEffect(value)
      ? Effect.suspend(() => cut ? fail : value)
      : typeof value === "function"
      ? (...args: Array<unknown>) =>
        Effect.suspend(() => cut ? fail : (value as (...a: Array<unknown>) => Effect.Effect<unknown>)(...args))
      : value
  const store = Layer.effect(
    LeaseRepository.LeaseRepository,
    Effect.map(Effect.service(LeaseRepository.LeaseRepository), (inner) => {
      const wrapped: Record<string, unknown> = {}
      for (const [key, value] of Object.entries(inner)) wrapped[key] = gate(value)
      const locks = inner.leaderLock!
      wrapped.leaderLock = {
        read: gate(locks.read),
        acquire: gate(locks.acquire),
        refresh: gate(locks.refresh),
        release: gate(locks.release)
      }
      return wrapped as unknown as LeaseRepository.LeaseStore
    })
  ).pipe(Layer.provide(DynamoDbLeaseRepository.layer({ applicationName, leaseOwnerIndex: "create" })))
  return {
    store,
    cut: () => {
      cut = true
    }
  }
}

const leaderOf = (table: string) =>
  Effect.flatMap(observer(table), (store) => Effect.map(store.leaderLock!.read, (lock) => lock?.owner))

const sizes = (workers: ReadonlyArray<Worker>) => workers.map((w) => w.held().size)

layer(Env, { excludeTestServices: true, timeout: "120 seconds" })("leader-based lease assignment", (it) => {
  it.effect("workers joining one that holds every lease are given an even share by the leader: every record once", () =>
    Effect.gen(function*() {
      const { streamName } = yield* StreamFixtures.stream({ shardCount: 6 })
      const table = uniqueTable("leader-share")
      const written = { count: 0 }
      const producer = yield* Effect.forkScoped(produce(streamName, written, "50 millis"))
      const options = {
        stream: streamName,
        applicationName: table,
        lease,
        // A worker holding nothing takes at most one lease toward its share by itself (then looks up its own
        // keys only): the rest of an even share can only come from the leader.
        shardAssignment: ShardAssignment.balanced({ maxStealsPerRound: 1 }),
        store: DynamoDbLeaseRepository.layer({ applicationName: table, leaseOwnerIndex: "create" })
      } as const
      const a = yield* startWorker({ ...options, workerId: "a" })
      yield* eventually(Effect.sync(() => a.held().size === 6), "30 seconds", "a holding all shards")
      yield* eventually(Effect.map(leaderOf(table), (owner) => owner === "a"), "20 seconds", "a leading")
      const b = yield* startWorker({ ...options, workerId: "b" })
      const c = yield* startWorker({ ...options, workerId: "c" })
      yield* eventually(
        Effect.sync(() => sizes([a, b, c]).join() === "2,2,2"),
        "40 seconds",
        "2 + 2 + 2"
      )
      yield* Fiber.interrupt(producer)
      const total = written.count
      yield* eventually(Effect.sync(() => tally([a, b, c], total).lost === 0), "30 seconds", `all ${total} records`)
      // Every move was a hand-off: no lease was taken from a live worker, no record processed twice.
      expect(tally([a, b, c], total)).toEqual({ duplicates: 0, lost: 0 })
      expect([a, b, c].flatMap((w) => w.events.filter((e) => e._tag === "LeaseLost"))).toEqual([])
      expect(yield* leaderOf(table)).toBe("a")
    }))

  it.effect("the leader stopping deletes the lock: another worker leads, and the stopped one's leases are reassigned", () =>
    Effect.gen(function*() {
      const { streamName } = yield* StreamFixtures.stream({ shardCount: 6 })
      const table = uniqueTable("leader-stop")
      const written = { count: 0 }
      const producer = yield* Effect.forkScoped(produce(streamName, written, "50 millis"))
      const options = {
        stream: streamName,
        applicationName: table,
        lease,
        store: DynamoDbLeaseRepository.layer({ applicationName: table, leaseOwnerIndex: "create" })
      } as const
      const a = yield* startWorker({ ...options, workerId: "a" })
      // (The table is a's to create, with its owner index: the observer's store would create it without.)
      yield* eventually(Effect.sync(() => a.held().size === 6), "30 seconds", "a holding all shards")
      yield* eventually(Effect.map(leaderOf(table), (owner) => owner === "a"), "20 seconds", "a leading")
      const b = yield* startWorker({ ...options, workerId: "b" })
      const c = yield* startWorker({ ...options, workerId: "c" })
      yield* eventually(Effect.sync(() => sizes([a, b, c]).join() === "2,2,2"), "40 seconds", "2 + 2 + 2")
      yield* a.stop
      // Deleted at the stop (not left to expire): gone, or already taken by another worker.
      expect(["b", "c", undefined]).toContain(yield* leaderOf(table))
      yield* eventually(
        Effect.map(leaderOf(table), (owner) => owner === "b" || owner === "c"),
        "20 seconds",
        "b or c leading"
      )
      yield* eventually(Effect.sync(() => sizes([b, c]).join() === "3,3"), "40 seconds", "3 + 3")
      yield* Fiber.interrupt(producer)
      const total = written.count
      yield* eventually(Effect.sync(() => tally([a, b, c], total).lost === 0), "30 seconds", `all ${total} records`)
      expect(tally([a, b, c], total)).toEqual({ duplicates: 0, lost: 0 })
    }))

  it.effect("a leader cut off from DynamoDB loses the lock only after its duration; its leases go to the others", () =>
    Effect.gen(function*() {
      const { streamName } = yield* StreamFixtures.stream({ shardCount: 6 })
      const table = uniqueTable("leader-cut")
      const written = { count: 0 }
      const producer = yield* Effect.forkScoped(produce(streamName, written, "50 millis"))
      const options = { stream: streamName, applicationName: table, lease } as const
      const cutA = severable(table)
      const a = yield* startWorker({ ...options, workerId: "a", store: cutA.store })
      // (The table is a's to create, with its owner index: the observer's store would create it without.)
      yield* eventually(Effect.sync(() => a.held().size === 6), "30 seconds", "a holding all shards")
      yield* eventually(Effect.map(leaderOf(table), (owner) => owner === "a"), "20 seconds", "a leading")
      const b = yield* startWorker({ ...options, workerId: "b", store: severable(table).store })
      const c = yield* startWorker({ ...options, workerId: "c", store: severable(table).store })
      yield* eventually(Effect.sync(() => sizes([a, b, c]).join() === "2,2,2"), "40 seconds", "2 + 2 + 2")
      const store = yield* observer(table)
      // The lock's versions as a's refreshes write them, watched until another worker holds it.
      // Cut right after a refresh was seen landing, so that the wait is timed from a's last refresh.
      const first = yield* store.leaderLock!.read
      let last = first
      while (last?.recordVersionNumber === first?.recordVersionNumber) {
        yield* Effect.sleep("10 millis")
        last = yield* store.leaderLock!.read
      }
      let lastChangeAt = Date.now()
      cutA.cut()
      while (last?.owner === "a") {
        yield* Effect.sleep("25 millis")
        const now = yield* store.leaderLock!.read
        if (now?.owner === "a" && now.recordVersionNumber !== last?.recordVersionNumber) lastChangeAt = Date.now()
        last = now
      }
      const heldFor = Date.now() - lastChangeAt
      // Lock duration: two expiries (8 s); it is taken once the version it stood at has stood still that long on
      // the taker's clock, from a read after it was written.
      expect(heldFor).toBeGreaterThanOrEqual(8_000 - 100)
      expect(["b", "c"]).toContain(last?.owner)
      yield* eventually(Effect.sync(() => sizes([b, c]).join() === "3,3"), "40 seconds", "3 + 3")
      yield* Fiber.interrupt(producer)
      const total = written.count
      // a processed up to its last checkpoint: what it did after is processed again by the next owner.
      yield* eventually(Effect.sync(() => tally([a, b, c], total).lost === 0), "30 seconds", `all ${total} records`)
      expect(b.events.concat(c.events).filter((e) => e._tag === "LeaseLost")).toEqual([])
    }))
})
