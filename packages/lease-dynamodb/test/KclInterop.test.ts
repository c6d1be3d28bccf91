import { AdminClient, Aggregation, Client } from "@effect-kinesis/core"
import { DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Stream } from "effect"
import {
  attributeTypes,
  createKclTable,
  Env,
  eventually,
  type Item,
  perKey,
  put,
  putRaw,
  rawItems,
  readShard,
  startWorker,
  uniqueTable
} from "./fixtures.ts"

const records = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ partitionKey: `key-${i % 12}`, data: `${prefix}${i}` }))

const sequenceNumber = /^\d+$/

const encoder = new TextEncoder()

// KPL-aggregated Kinesis records of ten user records each ("a<aggregate>u<user>"), routed to one shard.
const putAggregates = (stream: string, explicitHashKey: string, count: number) =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    const aggregator = Aggregation.makeAggregator({ explicitHashKey })
    for (let a = 0; a < count; a++) {
      aggregator.reset()
      for (let u = 0; u < 10; u++) aggregator.add({ partitionKey: `key-${u % 4}`, data: encoder.encode(`a${a}u${u}`) })
      const record = aggregator.build()!
      yield* client.putRecords(stream, [{
        PartitionKey: record.partitionKey,
        ExplicitHashKey: record.explicitHashKey,
        Data: record.data
      }])
    }
  })

const leaseItem = (
  shard: { readonly shardId: string; readonly startingHashKey: string; readonly endingHashKey: string },
  fields: Item
): Item => ({
  leaseKey: { S: shard.shardId },
  leaseCounter: { N: "5" },
  checkpointSubSequenceNumber: { N: "0" },
  ownerSwitchesSinceCheckpoint: { N: "0" },
  startingHashKey: { S: shard.startingHashKey },
  endingHashKey: { S: shard.endingHashKey },
  ...fields
})

layer(Env, { excludeTestServices: true, timeout: "60 seconds" })("KCL interoperability", (it) => {
  describe("taking over from a KCL 2.x worker", () => {
    it.effect("resumes after the checkpoints a KCL worker left, waits for its live lease to expire, and leaves other entities alone", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const table = uniqueTable("kcl-app")
        yield* put(streamName, records("old", 24))
        const [a, b] = [...shards].sort((x, y) => x.shardId.localeCompare(y.shardId))
        const inA = yield* readShard(streamName, a!.shardId)
        const inB = yield* readShard(streamName, b!.shardId)
        expect(inA.length).toBeGreaterThanOrEqual(2)
        expect(inB.length).toBeGreaterThanOrEqual(2)
        expect(inA.length + inB.length).toBe(24)
        // The KCL processed a's first half and b's first record.
        const checkpointA = inA[Math.floor(inA.length / 2) - 1]!
        const checkpointB = inB[0]!

        yield* createKclTable(table)
        // Waits until the table is ACTIVE; also our view of it.
        const leases = yield* DynamoDbLeaseRepository.make({ applicationName: table, createTableIfMissing: false })
        const released: Item = {
          leaseKey: { S: a!.shardId },
          leaseCounter: { N: "7" },
          checkpoint: { S: checkpointA.sequenceNumber },
          checkpointSubSequenceNumber: { N: "0" },
          ownerSwitchesSinceCheckpoint: { N: "2" },
          startingHashKey: { S: a!.startingHashKey },
          endingHashKey: { S: a!.endingHashKey }
        }
        // Still owned by a KCL worker that has since gone away: its counter no longer moves.
        const owned: Item = {
          leaseKey: { S: b!.shardId },
          leaseOwner: { S: "kcl-worker-1" },
          leaseCounter: { N: "12" },
          checkpoint: { S: checkpointB.sequenceNumber },
          checkpointSubSequenceNumber: { N: "0" },
          ownerSwitchesSinceCheckpoint: { N: "0" },
          startingHashKey: { S: b!.startingHashKey },
          endingHashKey: { S: b!.endingHashKey }
        }
        const workerMetrics: Item = {
          leaseKey: { S: "kcl-worker-1" },
          entityType: { S: "WORKER_METRICS_STATS" },
          leaseCounter: { N: "0" },
          lastUpdateTime: { N: "1700000000" }
        }
        for (const item of [released, owned, workerMetrics]) yield* putRaw(table, item)

        const worker = yield* startWorker({
          stream: streamName,
          applicationName: table,
          workerId: "effect-worker",
          store: DynamoDbLeaseRepository.layer({ applicationName: table, createTableIfMissing: false })
        })
        yield* put(streamName, records("new", 24))
        const expected = [
          ...inA.slice(Math.floor(inA.length / 2)).map((r) => r.data),
          ...inB.slice(1).map((r) => r.data),
          ...records("new", 24).map((r) => r.data)
        ].sort()
        yield* eventually(Effect.sync(() => worker.seen.length >= expected.length), "20 seconds", "every later record")
        // Give a wrongly re-delivered old record the chance to show up before comparing.
        yield* Effect.sleep("1 second")
        yield* worker.stop

        expect(worker.seen.map((r) => r.data).sort()).toEqual(expected)
        for (const [, values] of perKey(worker.seen)) {
          const numbers = values.map((v) => (v.startsWith("old") ? 0 : 1000) + Number(v.replace(/\D/g, "")))
          expect(numbers).toEqual([...numbers].sort((x, y) => x - y))
        }
        const acquired = worker.events.flatMap((e) => e._tag === "LeaseAcquired" ? [e] : [])
        expect(acquired.map((e) => [e.shardId, e.previousOwner, e.checkpoint.sequenceNumber]).sort()).toEqual(
          [
            [a!.shardId, undefined, checkpointA.sequenceNumber],
            [b!.shardId, "kcl-worker-1", checkpointB.sequenceNumber]
          ].sort()
        )

        // What a KCL worker starting next finds: its own attributes, released, checkpointed at the last record.
        const items = yield* rawItems(table)
        expect([...items.keys()].sort()).toEqual([a!.shardId, b!.shardId, "kcl-worker-1"].sort())
        for (const [seeded, shard] of [[released, a!], [owned, b!]] as const) {
          const item = items.get(shard.shardId)!
          expect(attributeTypes(item)).toEqual({
            checkpoint: "S",
            checkpointSubSequenceNumber: "N",
            endingHashKey: "S",
            leaseCounter: "N",
            leaseKey: "S",
            ownerSwitchesSinceCheckpoint: "N",
            startingHashKey: "S"
          })
          const last = worker.seen.filter((r) => r.shardId === shard.shardId).at(-1)!
          expect(item.checkpoint).toEqual({ S: last.sequenceNumber })
          expect(item.checkpointSubSequenceNumber).toEqual({ N: "0" })
          expect(item.ownerSwitchesSinceCheckpoint).toEqual({ N: "0" })
          expect(Number(item.leaseCounter!.N)).toBeGreaterThan(Number(seeded.leaseCounter!.N))
          expect([item.startingHashKey, item.endingHashKey]).toEqual([seeded.startingHashKey, seeded.endingHashKey])
        }
        expect(items.get("kcl-worker-1")).toEqual(workerMetrics)
        expect((yield* leases.list).map((l) => l.leaseKey).sort()).toEqual([a!.shardId, b!.shardId].sort())
      }))
    it.effect("resumes inside a KPL aggregate at the subsequence number after the KCL's checkpointSubSequenceNumber", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const shard = shards[0]!
        const table = uniqueTable("kcl-aggregated")
        yield* putAggregates(streamName, shard.startingHashKey, 3)
        const stored = yield* readShard(streamName, shard.shardId)
        expect(stored).toHaveLength(3)
        yield* createKclTable(table)
        yield* DynamoDbLeaseRepository.make({ applicationName: table, createTableIfMissing: false })
        // The KCL processed the first aggregate and user records 0–4 of the second.
        yield* putRaw(
          table,
          leaseItem(shard, {
            checkpoint: { S: stored[1]!.sequenceNumber },
            checkpointSubSequenceNumber: { N: "4" }
          })
        )

        const worker = yield* startWorker({ stream: streamName, applicationName: table, workerId: "effect-worker" })
        yield* eventually(Effect.sync(() => worker.seen.length >= 15), "20 seconds", "15 user records")
        yield* Effect.sleep("500 millis")
        yield* worker.stop
        expect(worker.seen.map((r) => r.data)).toEqual([
          ...Array.from({ length: 5 }, (_, u) => `a1u${u + 5}`),
          ...Array.from({ length: 10 }, (_, u) => `a2u${u}`)
        ])
        const item = (yield* rawItems(table)).get(shard.shardId)!
        expect([item.checkpoint, item.checkpointSubSequenceNumber]).toEqual([
          { S: stored[2]!.sequenceNumber },
          { N: "9" }
        ])
      }))

    it.effect("continues a resharding the KCL was in the middle of: an ended parent is not read again, its children resume", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const table = uniqueTable("kcl-reshard")
        const parent = shards[0]!
        yield* put(streamName, records("p", 12))
        yield* admin.splitShard(streamName, parent.shardId)
        yield* put(streamName, records("c", 24))
        const client = yield* Client.Client
        const children = (yield* Stream.runCollect(
          client.listShards(streamName, { shardFilter: { Type: "AT_LATEST" } })
        )).map((s) => ({
          shardId: s.ShardId!,
          startingHashKey: s.HashKeyRange!.StartingHashKey!,
          endingHashKey: s.HashKeyRange!.EndingHashKey!
        }))
        expect(children).toHaveLength(2)
        const [first, second] = children
        const inFirst = yield* readShard(streamName, first!.shardId)
        const inSecond = yield* readShard(streamName, second!.shardId)
        expect(inFirst.length).toBeGreaterThanOrEqual(1)

        yield* createKclTable(table)
        yield* DynamoDbLeaseRepository.make({ applicationName: table, createTableIfMissing: false })
        const childIds = { SS: children.map((c) => c.shardId) }
        yield* putRaw(table, leaseItem(parent, { checkpoint: { S: "SHARD_END" }, childShardIds: childIds }))
        yield* putRaw(
          table,
          leaseItem(first!, {
            checkpoint: { S: inFirst[0]!.sequenceNumber },
            parentShardId: { SS: [parent.shardId] }
          })
        )
        yield* putRaw(
          table,
          leaseItem(second!, { checkpoint: { S: "TRIM_HORIZON" }, parentShardId: { SS: [parent.shardId] } })
        )

        const worker = yield* startWorker({ stream: streamName, applicationName: table, workerId: "effect-worker" })
        const expected = [...inFirst.slice(1), ...inSecond].map((r) => r.data).sort()
        yield* eventually(
          Effect.sync(() => worker.seen.length >= expected.length),
          "20 seconds",
          "the children's records"
        )
        // A stop could cut the shard sync between the delete and its event: wait for the event.
        yield* eventually(
          Effect.sync(() => worker.events.some((e) => e._tag === "LeaseDeleted")),
          "10 seconds",
          "the parent's lease deleted"
        )
        yield* Effect.sleep("500 millis")
        yield* worker.stop
        expect(worker.seen.map((r) => r.data).sort()).toEqual(expected)
        // A child had started: the parent's finished lease goes at the first shard sync (the other
        // child keeps its lease), and the parent is neither leased nor read again.
        const items = yield* rawItems(table)
        expect([...items.keys()].sort()).toEqual(children.map((c) => c.shardId).sort())
        expect(worker.events.filter((e) => e._tag === "LeaseDeleted").map((e) => e.shardId)).toEqual([parent.shardId])
        expect(
          worker.events.filter((e) =>
            (e._tag === "LeaseAcquired" || e._tag === "NewShardDetected") && e.shardId === parent.shardId
          )
        ).toEqual([])
      }))
  })

  describe("the table a run leaves", () => {
    it.effect("holds the KCL's attribute names and types: parentShardId on children, childShardIds on the ended parent, no owner after shutdown", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const table = uniqueTable("kcl-layout")
        const parent = shards[0]!.shardId
        yield* put(streamName, records("p", 12))
        yield* admin.splitShard(streamName, parent)
        yield* put(streamName, records("c", 24))
        const worker = yield* startWorker({ stream: streamName, applicationName: table, workerId: "w" })
        yield* eventually(Effect.sync(() => worker.seen.length >= 36), "30 seconds", "all 36 records")
        yield* worker.stop

        const items = yield* rawItems(table)
        expect(items.size).toBe(3)
        const children = [...items.keys()].filter((key) => key !== parent).sort()
        const parentItem = items.get(parent)!
        expect(attributeTypes(parentItem)).toEqual({
          checkpoint: "S",
          checkpointSubSequenceNumber: "N",
          childShardIds: "SS",
          endingHashKey: "S",
          leaseCounter: "N",
          leaseKey: "S",
          ownerSwitchesSinceCheckpoint: "N",
          startingHashKey: "S"
        })
        expect(parentItem.checkpoint).toEqual({ S: "SHARD_END" })
        expect([...parentItem.childShardIds!.SS!].sort()).toEqual(children)
        for (const child of children) {
          const item = items.get(child)!
          expect(attributeTypes(item)).toEqual({
            checkpoint: "S",
            checkpointSubSequenceNumber: "N",
            endingHashKey: "S",
            leaseCounter: "N",
            leaseKey: "S",
            ownerSwitchesSinceCheckpoint: "N",
            parentShardId: "SS",
            startingHashKey: "S"
          })
          expect(item.parentShardId!.SS).toEqual([parent])
          expect(item.checkpoint!.S).toMatch(sequenceNumber)
          expect(item.checkpoint!.S).toBe(worker.seen.filter((r) => r.shardId === child).at(-1)?.sequenceNumber)
          expect(Number(item.leaseCounter!.N)).toBeGreaterThan(0)
        }
      }))
  })
})
