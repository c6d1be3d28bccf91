import { LeaseRepository } from "@effect-kinesis/consumer"
import { AdminClient, Client } from "@effect-kinesis/core"
import { DynamoDbClient, DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { DynamoEmulator, StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Deferred, Effect, Layer, Stream } from "effect"
import {
  Env,
  eventually,
  fastLeases,
  leasesByKey,
  observer,
  perKey,
  put,
  startWorker,
  uniqueTable,
  type Worker
} from "./fixtures.ts"

const records = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ partitionKey: `key-${i % 12}`, data: `${prefix}${i}` }))

const dataOf = (workers: ReadonlyArray<Worker>) => new Set(workers.flatMap((w) => w.seen.map((r) => r.data)))
const counts = (workers: ReadonlyArray<Worker>) => workers.map((w) => w.held().size)

layer(Env, { excludeTestServices: true, timeout: "60 seconds" })("Consumer on the DynamoDB lease store", (it) => {
  describe("balancing", () => {
    it.effect("three workers started together converge to a fair share of the table's leases and consume everything", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 8 })
        const table = uniqueTable("fair-share")
        const leases = yield* observer(table)
        yield* put(streamName, records("a", 40))
        const workers = yield* Effect.forEach(
          ["w1", "w2", "w3"],
          (workerId) => startWorker({ stream: streamName, applicationName: table, workerId })
        )
        yield* eventually(
          Effect.sync(() =>
            counts(workers).reduce((a, b) => a + b, 0) === 8 && counts(workers).every((n) => n >= 2 && n <= 3)
          ),
          "30 seconds",
          "3 workers holding 3/3/2 of 8 shards"
        )
        yield* eventually(Effect.sync(() => dataOf(workers).size === 40), "20 seconds", "all 40 records")

        // The table agrees with what the workers believe they hold.
        const stored = yield* leases.list
        expect(stored).toHaveLength(8)
        for (const worker of workers) {
          expect(new Set(stored.filter((l) => l.leaseOwner === worker.workerId).map((l) => l.leaseKey))).toEqual(
            worker.held()
          )
        }
      }))
  })

  describe("hand-off", () => {
    it.effect("a worker shutting down releases its leases and another takes them without waiting for expiry", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 4 })
        const table = uniqueTable("hand-off")
        // Expiry far beyond the test: only a release can move a lease.
        const lease = { ...fastLeases, expiry: "5 minutes", renewInterval: "1 second" } as const
        const a = yield* startWorker({ stream: streamName, applicationName: table, workerId: "a", lease })
        yield* eventually(Effect.sync(() => a.held().size === 4), "20 seconds", "a holding all shards")
        const b = yield* startWorker({ stream: streamName, applicationName: table, workerId: "b", lease })
        yield* eventually(Effect.sync(() => a.held().size === 2 && b.held().size === 2), "20 seconds", "2 + 2")

        yield* put(streamName, records("x", 20))
        yield* eventually(Effect.sync(() => dataOf([a, b]).size === 20), "20 seconds", "first 20 records")
        // a released the 2 leases it handed over to b when b joined; these are the 2 it held.
        const beforeStop = a.events.length
        yield* a.stop
        expect(a.events.slice(beforeStop).filter((e) => e._tag === "LeaseReleased")).toHaveLength(2)

        yield* eventually(Effect.sync(() => b.held().size === 4), "10 seconds", "b holding all shards")
        const taken = b.events.filter((e) => e._tag === "LeaseAcquired").slice(2)
        expect(taken.map((e) => e._tag === "LeaseAcquired" && e.previousOwner)).toEqual([undefined, undefined])

        yield* put(streamName, records("y", 20))
        yield* eventually(
          Effect.sync(() => new Set(b.seen.map((r) => r.data).filter((d) => d.startsWith("y"))).size === 20),
          "20 seconds",
          "b processing every shard"
        )
        // a checkpointed what it processed before leaving: b did not process a's records again.
        const redone = b.seen.filter((r) => r.data.startsWith("x") && a.seen.some((s) => s.data === r.data))
        expect(redone).toEqual([])
      }))
  })

  describe("self-fencing", () => {
    it.effect("a worker that cannot renew stops its shards after expiry and checkpoints nothing more; another resumes after its last checkpoint", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const table = uniqueTable("zombie")
        const leases = yield* observer(table)
        let partitioned = false
        const unblock = yield* Deferred.make<void>()
        const unreachable = (operation: string) =>
          Effect.fail(new LeaseRepository.LeaseStoreError({ operation, message: "unreachable", retryable: true }))
        // The DynamoDB store, with renewals and takes failing while partitioned; checkpoints still reach the table,
        // so only the worker's own fencing can keep them out.
        const zombieStore = Layer.effect(
          LeaseRepository.LeaseRepository,
          Effect.map(
            DynamoDbLeaseRepository.make({ applicationName: table }),
            (store) =>
              LeaseRepository.LeaseRepository.of({
                ...store,
                renew: (lease) => partitioned ? unreachable("renew") : store.renew(lease),
                take: (lease, owner) => partitioned ? unreachable("take") : store.take(lease, owner)
              })
          )
        )
        const zombie = yield* startWorker({
          stream: streamName,
          applicationName: table,
          workerId: "zombie",
          store: zombieStore,
          handler: () => partitioned ? Deferred.await(unblock) : Effect.void
        })
        yield* put(streamName, records("z", 10))
        yield* eventually(Effect.sync(() => zombie.seen.length === 10), "20 seconds", "zombie consuming")
        yield* eventually(
          Effect.map(
            leases.list,
            (stored) =>
              stored.length === 2 && stored.every((l) =>
                l.checkpoint.sequenceNumber ===
                  zombie.seen.filter((r) => r.shardId === l.leaseKey).at(-1)?.sequenceNumber
              )
          ),
          "20 seconds",
          "zombie checkpointing everything it processed"
        )

        partitioned = true
        const fencedAt = zombie.events.length
        // A renewal already on its way when the partition began may still land.
        yield* Effect.sleep("200 millis")
        const before = yield* leases.list
        yield* put(streamName, records("late", 10))
        yield* eventually(
          Effect.sync(() => zombie.events.filter((e) => e._tag === "LeaseLost" && e.reason === "expired").length === 2),
          "10 seconds",
          "zombie fencing itself"
        )
        yield* Deferred.succeed(unblock, undefined)
        yield* eventually(
          Effect.sync(() => zombie.seen.length > 10),
          "10 seconds",
          "zombie finishing the records it was stuck on"
        )
        yield* Effect.sleep("500 millis")
        // It finished the record each shard was stuck on and processed nothing after it.
        expect(zombie.seen.length).toBeLessThanOrEqual(12)
        expect(zombie.events.slice(fencedAt).filter((e) => e._tag === "Checkpoint")).toEqual([])
        const after = leasesByKey(yield* leases.list)
        for (const lease of before) {
          expect(after.get(lease.leaseKey)?.checkpoint).toEqual(lease.checkpoint)
          // Still the zombie's name on it, but its counter has not moved since: any observer sees it expire.
          expect(after.get(lease.leaseKey)?.leaseCounter).toBe(lease.leaseCounter)
        }

        const healthy = yield* startWorker({ stream: streamName, applicationName: table, workerId: "healthy" })
        yield* eventually(Effect.sync(() => healthy.held().size === 2), "20 seconds", "healthy taking both shards")
        const takeovers = healthy.events.filter((e) => e._tag === "LeaseAcquired")
        expect(takeovers.map((e) => e._tag === "LeaseAcquired" && e.previousOwner)).toEqual(["zombie", "zombie"])
        yield* eventually(
          Effect.sync(() => new Set(healthy.seen.map((r) => r.data)).size === 10),
          "20 seconds",
          "healthy processing the records the zombie never checkpointed"
        )
        expect(healthy.seen.every((r) => r.data.startsWith("late"))).toBe(true)
        expect((yield* leases.list).map((l) => l.leaseOwner)).toEqual(["healthy", "healthy"])
      }))
  })

  describe("resharding", () => {
    it.effect("a split while consuming: the children start only after the parent ends, and per-key order holds", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const table = uniqueTable("split")
        const leases = yield* observer(table)
        const parent = shards[0]!.shardId
        const phase = (from: number, count: number) =>
          Array.from({ length: count }, (_, i) => {
            const n = from + i
            return { partitionKey: `key-${n % 8}`, data: String(Math.floor(n / 8)).padStart(3, "0") }
          })
        yield* put(streamName, phase(0, 64))
        // A slow processor keeps the parent's backlog around while the children already have records.
        const worker = yield* startWorker({
          stream: streamName,
          applicationName: table,
          workerId: "w",
          handler: () => Effect.sleep("10 millis")
        })
        yield* eventually(Effect.sync(() => worker.seen.length >= 5), "20 seconds", "consuming the parent")
        yield* admin.splitShard(streamName, parent)
        yield* put(streamName, phase(64, 64))
        yield* eventually(Effect.sync(() => worker.seen.length >= 128), "40 seconds", "all 128 records")

        expect(worker.seen).toHaveLength(128)
        for (const [, values] of perKey(worker.seen)) {
          expect(values).toEqual(Array.from({ length: 16 }, (_, i) => String(i).padStart(3, "0")))
        }
        const stored = yield* leases.list
        const children = stored.filter((l) => l.parentShardIds.includes(parent)).map((l) => l.leaseKey).sort()
        expect(children).toHaveLength(2)
        const order = worker.events.map((e) =>
          e._tag === "ShardEnded" ? `end ${e.shardId}` : e._tag === "LeaseAcquired" ? `take ${e.shardId}` : ""
        )
        for (const child of children) {
          expect(order.indexOf(`end ${parent}`)).toBeGreaterThanOrEqual(0)
          expect(order.indexOf(`end ${parent}`)).toBeLessThan(order.indexOf(`take ${child}`))
        }
        // No child record was delivered before the parent's last one.
        const lastOfParent = worker.seen.findLastIndex((r) => r.shardId === parent)
        const firstOfChildren = worker.seen.findIndex((r) => r.shardId !== parent)
        expect(lastOfParent).toBeLessThan(firstOfChildren)
        const ended = worker.events.find((e) => e._tag === "ShardEnded" && e.shardId === parent)
        expect(ended?._tag === "ShardEnded" ? [...ended.childShardIds].sort() : []).toEqual(children)
        // Once both children have started, the parent's finished lease is deleted from the table.
        // The worker reports the deletion after the store made it: wait for the event too.
        const deletedEvents = () => worker.events.filter((e) => e._tag === "LeaseDeleted").map((e) => e.shardId)
        yield* eventually(
          Effect.map(
            leases.list,
            (all) => all.length === 2 && all.every((l) => l.leaseKey !== parent) && deletedEvents().length > 0
          ),
          "10 seconds",
          "the parent's lease deleted"
        )
        expect(deletedEvents()).toEqual([parent])
      }))
  })

  describe("shutdown", () => {
    it.effect("workers stopping at the same moment leave no lease naming any of them, also when the table answers writes slowly", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 12 })
        const dynamo = yield* DynamoEmulator.DynamoEmulator
        // Every write is applied at once and answered 30 ms later, as over a slow network: a worker
        // interrupted meanwhile may own a lease without knowing it.
        const sdk = DynamoDbClient.makeSdkClient(dynamo.clientConfig)
        yield* Effect.addFinalizer(() => Effect.sync(() => sdk.destroy()))
        sdk.middlewareStack.add(
          (next, context) => async (args) => {
            const result = await next(args)
            if (context.commandName === "UpdateItemCommand") await new Promise((resolve) => setTimeout(resolve, 30))
            return result
          },
          { step: "initialize", name: "slowAnswers" }
        )
        const slowClient = Layer.succeed(DynamoDbClient.DynamoDbClient, DynamoDbClient.DynamoDbClient.of({ sdk }))
        // Scans every 20 ms: while one worker releases, the others' take rounds are taking.
        const lease = { ...fastLeases, scanInterval: "20 millis", takeInterval: "100 millis" } as const
        const left: Array<string> = []
        for (let trial = 0; trial < 4; trial++) {
          const table = uniqueTable("shutdown")
          const leases = yield* observer(table)
          const store = DynamoDbLeaseRepository.layer({ applicationName: table }).pipe(Layer.provide(slowClient))
          const workers = yield* Effect.forEach(
            ["a", "b", "c"],
            (workerId) => startWorker({ stream: streamName, applicationName: table, workerId, store, lease })
          )
          yield* eventually(
            Effect.map(leases.list, (all) => all.length === 12 && all.every((l) => l.leaseOwner !== undefined)),
            "30 seconds",
            "all 12 shards held"
          )
          yield* Effect.forEach(workers, (w) => w.stop, { concurrency: "unbounded", discard: true })
          for (const l of yield* leases.list) {
            if (l.leaseOwner !== undefined) left.push(`${table} ${l.leaseKey}: ${l.leaseOwner}`)
          }
        }
        expect(left).toEqual([])
      }))
  })

  describe("finished leases", () => {
    it.effect("split P into C1 and C2, records only on C1, split C1: the table ends with the open shards' leases, P's and C1's deleted parents first", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const client = yield* Client.Client
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const table = uniqueTable("cleanup")
        const leases = yield* observer(table)
        const keys = Effect.map(leases.list, (all) => all.map((l) => l.leaseKey).sort())
        // The children of `parent`, lower hash range first.
        const childrenOf = (parent: string) =>
          Effect.map(Stream.runCollect(client.listShards(streamName)), (all) =>
            all
              .filter((s) => s.ParentShardId === parent)
              .sort((a, b) =>
                BigInt(a.HashKeyRange!.StartingHashKey!) < BigInt(b.HashKeyRange!.StartingHashKey!) ? -1 : 1
              )
              .map((s) => ({ shardId: s.ShardId!, hashKey: s.HashKeyRange!.StartingHashKey! })))
        const on = (hashKey: string, prefix: string) =>
          records(prefix, 8).map((r) => ({ ...r, explicitHashKey: hashKey }))
        const p = shards[0]!.shardId
        const worker = yield* startWorker({ stream: streamName, applicationName: table, workerId: "w" })
        yield* put(streamName, records("p", 8))
        yield* eventually(Effect.sync(() => worker.seen.length >= 8), "30 seconds", "P's records")
        yield* admin.splitShard(streamName, p)
        const [c1, c2] = yield* childrenOf(p)
        yield* put(streamName, on(c1!.hashKey, "c1-"))
        yield* eventually(Effect.sync(() => worker.seen.length >= 16), "30 seconds", "C1's records")
        yield* admin.splitShard(streamName, c1!.shardId)
        const [d1, d2] = yield* childrenOf(c1!.shardId)
        yield* put(streamName, [...on(d1!.hashKey, "d1-"), ...on(d2!.hashKey, "d2-")])
        yield* eventually(Effect.sync(() => worker.seen.length >= 32), "30 seconds", "D1's and D2's records")

        const open = [c2!.shardId, d1!.shardId, d2!.shardId].sort()
        // The worker reports a deletion after the store made it: wait for the events too.
        yield* eventually(
          Effect.map(
            keys,
            (k) => k.join() === open.join() && worker.events.filter((e) => e._tag === "LeaseDeleted").length >= 2
          ),
          "15 seconds",
          "only the open shards' leases"
        )
        expect(worker.events.filter((e) => e._tag === "LeaseDeleted").map((e) => e.shardId)).toEqual([p, c1!.shardId])
        yield* put(streamName, on(c2!.hashKey, "c2-"))
        yield* eventually(Effect.sync(() => worker.seen.length >= 40), "30 seconds", "C2's records")
        yield* Effect.sleep("2500 millis")
        expect(yield* keys).toEqual(open)
        expect(worker.seen).toHaveLength(40)
        expect(dataOf([worker]).size).toBe(40)
      }))
  })

  describe("restart", () => {
    it.effect("a stopped worker's successor resumes after its checkpoints: nothing written meanwhile is lost, nothing is repeated", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 3 })
        const table = uniqueTable("restart")
        const leases = yield* observer(table)
        yield* put(streamName, records("a", 36))
        // Checkpoints are only ever written at shutdown: batches are larger and longer than the test.
        const first = yield* startWorker({
          stream: streamName,
          applicationName: table,
          workerId: "first",
          checkpointBatchSize: 100_000,
          checkpointInterval: "1 hour"
        })
        yield* eventually(Effect.sync(() => first.seen.length >= 36), "20 seconds", "36 records")
        yield* first.stop
        expect(first.seen.map((r) => r.data).sort()).toEqual(records("a", 36).map((r) => r.data).sort())
        const stored = leasesByKey(yield* leases.list)
        expect(stored.size).toBe(3)
        for (const [shardId, lease] of stored) {
          expect(lease.leaseOwner).toBeUndefined()
          expect(lease.checkpoint.sequenceNumber).toBe(
            first.seen.filter((r) => r.shardId === shardId).at(-1)
              ?.sequenceNumber
          )
        }

        yield* put(streamName, records("b", 36))
        const second = yield* startWorker({ stream: streamName, applicationName: table, workerId: "second" })
        yield* eventually(Effect.sync(() => second.seen.length >= 36), "20 seconds", "36 new records")
        // Give a wrongly re-delivered old record the chance to show up before comparing.
        yield* Effect.sleep("1 second")
        yield* second.stop
        expect(second.seen.map((r) => r.data).sort()).toEqual(records("b", 36).map((r) => r.data).sort())
        for (const [, values] of perKey(second.seen)) {
          expect(values).toEqual([...values].sort((x, y) => Number(x.slice(1)) - Number(y.slice(1))))
        }
      }))
  })
})
