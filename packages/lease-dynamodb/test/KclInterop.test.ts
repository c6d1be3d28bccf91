import { CreateTableCommand, DescribeTableCommand, UpdateItemCommand } from "@aws-sdk/client-dynamodb"
import { AdminClient, Aggregation, Client } from "@effect-kinesis/core"
import { DynamoDbClient, DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Fiber, Schedule, Stream } from "effect"
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

// The lease table as KCL 3.x leaves it: on-demand, with its LeaseOwnerToLeaseKeyIndex (leaseOwner, leaseKey; keys
// only). KCL 3.x adds the index with UpdateTable; dynalite only builds indexes given at CreateTable.
const createKcl3Table = (table: string) =>
  Effect.flatMap(Effect.service(DynamoDbClient.DynamoDbClient), ({ sdk }) =>
    Effect.promise((abortSignal) =>
      sdk.send(
        new CreateTableCommand({
          TableName: table,
          KeySchema: [{ AttributeName: "leaseKey", KeyType: "HASH" }],
          AttributeDefinitions: [
            { AttributeName: "leaseKey", AttributeType: "S" },
            { AttributeName: "leaseOwner", AttributeType: "S" }
          ],
          BillingMode: "PAY_PER_REQUEST",
          GlobalSecondaryIndexes: [{
            IndexName: "LeaseOwnerToLeaseKeyIndex",
            KeySchema: [{ AttributeName: "leaseOwner", KeyType: "HASH" }, {
              AttributeName: "leaseKey",
              KeyType: "RANGE"
            }],
            Projection: { ProjectionType: "KEYS_ONLY" }
          }]
        }),
        { abortSignal }
      )
    ))

// One UpdateItem as a KCL 3.x worker or leader sends it; false when its condition failed.
const kclUpdate = (
  table: string,
  leaseKey: string,
  update: string,
  condition: string,
  values: Record<string, Item[string]> = {}
) =>
  Effect.flatMap(
    Effect.service(DynamoDbClient.DynamoDbClient),
    ({ sdk }) =>
      Effect.tryPromise((abortSignal) =>
        sdk.send(
          new UpdateItemCommand({
            TableName: table,
            Key: { leaseKey: { S: leaseKey } },
            UpdateExpression: update,
            ConditionExpression: condition,
            ...(Object.keys(values).length === 0 ? {} : { ExpressionAttributeValues: values })
          }),
          { abortSignal }
        )
      ).pipe(Effect.as(true), Effect.orElseSucceed(() => false))
  )

// A KCL 3.x worker renewing a lease it processes (as owner, or as checkpoint owner during a hand-off).
const kclRenewing = (table: string, leaseKey: string, condition: string, values: Record<string, Item[string]>) =>
  kclUpdate(table, leaseKey, "ADD leaseCounter :one", condition, { ...values, ":one": { N: "1" } }).pipe(
    Effect.repeat(Schedule.spaced("300 millis")),
    Effect.forkScoped
  )

layer(Env, { excludeTestServices: true, timeout: "60 seconds" })("KCL interoperability", (it) => {
  describe("sharing a table with KCL 3.x workers", () => {
    it.effect("keeps their attributes and entities, waits for a hand-off their leader started toward us, and hands a lease over when their leader asks", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 3 })
        const table = uniqueTable("kcl3-app")
        yield* put(streamName, records("old", 36))
        const [s0, s1, s2] = [...shards].sort((x, y) => x.shardId.localeCompare(y.shardId))
        const in0 = yield* readShard(streamName, s0!.shardId)
        const in1 = yield* readShard(streamName, s1!.shardId)
        expect(in0.length).toBeGreaterThanOrEqual(4)
        expect(in1.length).toBeGreaterThanOrEqual(4)

        yield* createKcl3Table(table)
        const leases = yield* DynamoDbLeaseRepository.make({ applicationName: table, createTableIfMissing: false })
        // As DynamoDBLeaseSerializer.toDynamoRecord writes them (KCL 3.5): entityType LEASE, throughputKBps.
        const released = leaseItem(s0!, {
          checkpoint: { S: in0[1]!.sequenceNumber },
          throughputKBps: { N: "12.5" },
          entityType: { S: "LEASE" }
        })
        // The KCL leader moved s1 to us; kcl-worker-1 is still finishing it (and renewing it meanwhile).
        const handedToUs = leaseItem(s1!, {
          leaseOwner: { S: "effect-worker" },
          checkpointOwner: { S: "kcl-worker-1" },
          checkpoint: { S: in1[0]!.sequenceNumber },
          throughputKBps: { N: "3.25" },
          entityType: { S: "LEASE" }
        })
        const heldByKcl = leaseItem(s2!, {
          leaseOwner: { S: "kcl-worker-2" },
          checkpoint: { S: "TRIM_HORIZON" },
          throughputKBps: { N: "1.5" },
          entityType: { S: "LEASE" }
        })
        // KCL 3.5 keeps its worker metrics and coordinator state in the lease table too.
        const workerMetrics: Item = {
          leaseKey: { S: "kcl-worker-2" },
          entityType: { S: "WORKER_METRIC_STATS" },
          lut: { N: "1765000000" },
          sts: { M: { cpu: { L: [{ N: "12" }] } } }
        }
        const migration: Item = {
          leaseKey: { S: "Migration3.0" },
          entityType: { S: "CLIENT_VERSION_MIGRATION" },
          cv: { S: "CLIENT_VERSION_3X" },
          mb: { S: "kcl-worker-2" },
          mts: { N: "1765000000" }
        }
        for (const item of [released, handedToUs, heldByKcl, workerMetrics, migration]) yield* putRaw(table, item)
        // Their measured throughput reads as each lease's load (what balancing by throughput uses).
        expect((yield* leases.list).map((l) => [l.leaseKey, l.throughputKBps]).sort()).toEqual(
          [[s0!.shardId, 12.5], [s1!.shardId, 3.25], [s2!.shardId, 1.5]]
        )
        const kcl1 = yield* kclRenewing(table, s1!.shardId, "checkpointOwner = :me", { ":me": { S: "kcl-worker-1" } })
        yield* kclRenewing(table, s2!.shardId, "leaseOwner = :me", { ":me": { S: "kcl-worker-2" } })

        const worker = yield* startWorker({
          stream: streamName,
          applicationName: table,
          workerId: "effect-worker",
          store: DynamoDbLeaseRepository.layer({ applicationName: table, createTableIfMissing: false })
        })
        yield* put(streamName, records("new", 36))
        const all0 = yield* readShard(streamName, s0!.shardId)
        yield* eventually(
          Effect.sync(() => worker.seen.filter((r) => r.shardId === s0!.shardId).length === all0.length - 2),
          "20 seconds",
          "s0 from after the KCL's checkpoint"
        )
        // s1 waits for kcl-worker-1, and s2 stays with the live kcl-worker-2 (2 of 3 is our share).
        yield* Effect.sleep("2 seconds")
        expect(worker.seen.filter((r) => r.shardId !== s0!.shardId)).toEqual([])
        expect([...worker.held()]).toEqual([s0!.shardId])

        // kcl-worker-1 checkpoints what it processed and completes the hand-off (as LeaseGracefulShutdownHandler's
        // assignLease: leaseOwner kept, checkpointOwner removed, counter + 1).
        yield* Fiber.interrupt(kcl1)
        expect(
          yield* kclUpdate(
            table,
            s1!.shardId,
            "SET checkpoint = :cp ADD leaseCounter :one",
            "checkpointOwner = :me",
            { ":cp": { S: in1[2]!.sequenceNumber }, ":one": { N: "1" }, ":me": { S: "kcl-worker-1" } }
          )
        ).toBe(true)
        expect(
          yield* kclUpdate(
            table,
            s1!.shardId,
            "SET leaseOwner = :next REMOVE checkpointOwner ADD leaseCounter :one",
            "leaseOwner = :next AND checkpointOwner = :me",
            { ":next": { S: "effect-worker" }, ":one": { N: "1" }, ":me": { S: "kcl-worker-1" } }
          )
        ).toBe(true)
        const all1 = yield* readShard(streamName, s1!.shardId)
        yield* eventually(
          Effect.sync(() => worker.seen.filter((r) => r.shardId === s1!.shardId).length >= all1.length - 3),
          "20 seconds",
          "s1 from after kcl-worker-1's last checkpoint"
        )
        expect(worker.seen.filter((r) => r.shardId === s1!.shardId).map((r) => r.sequenceNumber)).toEqual(
          all1.slice(3).map((r) => r.sequenceNumber)
        )

        // The KCL leader moves s0 to kcl-worker-2 (initiateGracefulLeaseHandoff: counter unchanged).
        expect(
          yield* kclUpdate(
            table,
            s0!.shardId,
            "SET leaseOwner = :next, checkpointOwner = :current",
            "leaseOwner = :current AND attribute_not_exists(checkpointOwner)",
            { ":next": { S: "kcl-worker-2" }, ":current": { S: "effect-worker" } }
          )
        ).toBe(true)
        yield* eventually(
          Effect.map(rawItems(table), (items) => items.get(s0!.shardId)?.checkpointOwner === undefined),
          "10 seconds",
          "the hand-off of s0 completed by us"
        )
        const handedOver = (yield* rawItems(table)).get(s0!.shardId)!
        expect(handedOver.leaseOwner).toEqual({ S: "kcl-worker-2" })
        expect(handedOver.checkpoint).toEqual({ S: all0.at(-1)!.sequenceNumber })
        expect(worker.events.filter((e) => e._tag === "LeaseReleased").map((e) => e.shardId)).toEqual([s0!.shardId])
        expect(worker.events.filter((e) => e._tag === "LeaseLost")).toEqual([])

        // The owner index finds each worker's leases (KEYS_ONLY, then read consistently).
        expect((yield* leases.listOwnedBy!("kcl-worker-2")).map((l) => l.leaseKey).sort()).toEqual(
          [s0!.shardId, s2!.shardId].sort()
        )
        expect((yield* leases.listOwnedBy!("effect-worker")).map((l) => l.leaseKey)).toEqual([s1!.shardId])

        yield* worker.stop
        const items = yield* rawItems(table)
        // Their attributes are kept on every lease we wrote; their entities are untouched.
        for (const [seeded, shard] of [[released, s0!], [handedToUs, s1!], [heldByKcl, s2!]] as const) {
          const item = items.get(shard.shardId)!
          expect([item.entityType, item.throughputKBps]).toEqual([seeded.entityType, seeded.throughputKBps])
        }
        expect(items.get(s1!.shardId)?.leaseOwner).toBeUndefined()
        expect(items.get(s1!.shardId)?.checkpoint).toEqual({ S: all1.at(-1)!.sequenceNumber })
        expect(items.get(s2!.shardId)?.leaseOwner).toEqual({ S: "kcl-worker-2" })
        expect(items.get("kcl-worker-2")).toEqual(workerMetrics)
        expect(items.get("Migration3.0")).toEqual(migration)
      }))

    it.effect("creates the owner index with a new table when asked, and finds a worker's leases through it without a scan", () =>
      Effect.gen(function*() {
        const table = uniqueTable("kcl3-index")
        const repo = yield* DynamoDbLeaseRepository.make({ applicationName: table, leaseOwnerIndex: "create" })
        const { sdk } = yield* DynamoDbClient.DynamoDbClient
        const description = yield* Effect.promise(() => sdk.send(new DescribeTableCommand({ TableName: table })))
        const index = description.Table?.GlobalSecondaryIndexes?.find((i) =>
          i.IndexName === "LeaseOwnerToLeaseKeyIndex"
        )
        expect(index?.KeySchema).toEqual([
          { AttributeName: "leaseOwner", KeyType: "HASH" },
          { AttributeName: "leaseKey", KeyType: "RANGE" }
        ])
        expect(index?.Projection?.ProjectionType).toBe("KEYS_ONLY")

        const keys = ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"]
        for (const key of keys) {
          yield* putRaw(table, leaseItem({ shardId: key, startingHashKey: "0", endingHashKey: "1" }, {}))
        }
        const stored = yield* repo.list
        yield* repo.take(stored.find((l) => l.leaseKey === keys[0])!, "a")
        yield* repo.take(stored.find((l) => l.leaseKey === keys[2])!, "a")
        yield* repo.take(stored.find((l) => l.leaseKey === keys[1])!, "b")
        // An item of another owner that a scan cannot read: `list` fails on it, the index never reaches it.
        yield* putRaw(table, {
          leaseKey: { S: "shardId-000000000003" },
          leaseOwner: { S: "b" },
          leaseCounter: { N: "1.5" }
        })
        expect((yield* Effect.flip(repo.list))._tag).toBe("LeaseStoreError")
        expect((yield* repo.listOwnedBy!("a")).map((l) => l.leaseKey).sort()).toEqual([keys[0], keys[2]])
      }))
  })

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
