/**
 * One application over two streams with one DynamoDB lease table, in the KCL's multi-stream format (lease key
 * `account:streamName:creationEpoch:shardId`, attributes `streamName` and `shardId`): two workers share both streams,
 * a split in one goes on while the other continues, a table a KCL multi-stream application wrote is continued at its
 * checkpoints, and a single-stream consumer's table keeps plain shard ids.
 */
import { type Consumer, type ConsumerRecord, type Lease, MultiStream } from "@effect-kinesis/consumer"
import { AdminClient, Client, Serde } from "@effect-kinesis/core"
import { DynamoDbClient, DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { DynamoEmulator, StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Fiber, Layer, Stream } from "effect"
import {
  createKclTable,
  Env,
  eventually,
  fastLeases,
  type Item,
  observer,
  put,
  putRaw,
  rawItems,
  readShard,
  startWorker,
  uniqueTable
} from "./fixtures.ts"

interface Seen {
  readonly stream: string
  readonly shardId: string
  readonly data: string
}

// A worker of a multi-stream application in the background, recording every record with the stream the handler was
// told it came from.
const startMulti = (options: {
  readonly streams: ReadonlyArray<MultiStream.StreamSpec>
  readonly applicationName: string
  readonly workerId: string
  readonly lease?: Consumer.LeaseSettings | undefined
}) =>
  Effect.gen(function*() {
    const seen: Array<Seen> = []
    const events: Array<string> = []
    const fiber = yield* MultiStream.consumeWith(
      (record: ConsumerRecord.ConsumerRecord<string>, stream) =>
        Effect.sync(() => seen.push({ stream: stream.streamName, shardId: record.shardId, data: record.data })),
      {
        streams: options.streams,
        applicationName: options.applicationName,
        workerId: options.workerId,
        deserializer: Serde.string,
        fetch: { pollInterval: "100 millis" },
        lease: options.lease ?? fastLeases,
        checkpoint: { records: 1000, interval: "200 millis" },
        onDiagnostic: (event, stream) =>
          Effect.sync(() => {
            if (event._tag === "LeaseLost") events.push(`${stream.streamName}/${event.shardId} ${event.reason}`)
          })
      }
    ).pipe(
      Effect.provide(DynamoDbLeaseRepository.layer({ applicationName: options.applicationName })),
      Effect.forkScoped
    )
    return { seen, events, fiber, stop: Fiber.interrupt(fiber) }
  })

const lost = (...workers: ReadonlyArray<{ readonly events: ReadonlyArray<string> }>) => workers.flatMap((w) => w.events)

const records = (prefix: string, from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({ partitionKey: `key-${(from + i) % 16}`, data: `${prefix}${from + i}` }))

// How often each record id was handled, over all workers.
const tally = (seen: ReadonlyArray<Seen>, ids: ReadonlyArray<string>) => {
  const counts = new Map<string, number>()
  for (const r of seen) counts.set(r.data, (counts.get(r.data) ?? 0) + 1)
  let duplicates = 0
  let lost = 0
  for (const id of ids) {
    const n = counts.get(id) ?? 0
    if (n === 0) lost++
    else duplicates += n - 1
  }
  return { duplicates, lost }
}

const identity = (streamName: string) =>
  Effect.gen(function*() {
    const summary = yield* (yield* Client.Client).describeStreamSummary(streamName)
    return {
      accountId: summary.StreamARN!.split(":")[4]!,
      created: summary.StreamCreationTimestamp!.getTime()
    }
  })

// The last record's sequence number of every shard of a stream, as read straight from Kinesis.
const lastSequenceNumbers = (streamName: string, shardIds: ReadonlyArray<string>) =>
  Effect.map(
    Effect.forEach(shardIds, (shardId) => readShard(streamName, shardId)),
    (shards) => new Map(shards.flatMap((rs) => rs.length === 0 ? [] : [[rs[0]!.shardId, rs.at(-1)!.sequenceNumber]]))
  )

layer(Env, { excludeTestServices: true, timeout: "120 seconds" })("Many streams, one application", (it) => {
  describe("two streams, two workers, one lease table", () => {
    it.effect("every record of both streams is processed once, checkpoints are per stream in the KCL's multi-stream keys, and a split in one stream goes on while the other continues", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const orders = yield* StreamFixtures.stream({ prefix: "orders", shardCount: 2 })
        const payments = yield* StreamFixtures.stream({ prefix: "payments", shardCount: 2 })
        const table = uniqueTable("multi")
        const leases = yield* observer(table)
        const ids: Array<string> = []
        const write = (stream: string, prefix: string, from: number, n: number) =>
          Effect.andThen(
            put(stream, records(prefix, from, n)),
            Effect.sync(() => ids.push(...records(prefix, from, n).map((r) => r.data)))
          )
        yield* write(orders.streamName, "o", 0, 60)
        yield* write(payments.streamName, "p", 0, 60)

        const streams = [orders.streamName, payments.streamName]
        // A renewal a loaded machine delays past a 2 s expiry would move a lease without a hand-off.
        const lease = { ...fastLeases, expiry: "10 seconds" } as const
        const a = yield* startMulti({ streams, applicationName: table, workerId: "a", lease })
        yield* eventually(
          Effect.map(leases.list, (all) => all.length === 4 && all.every((l) => l.leaseOwner === "a")),
          "30 seconds",
          "a holding all four leases"
        )
        const b = yield* startMulti({ streams, applicationName: table, workerId: "b", lease })
        // Per stream balance: each worker ends with one shard of each stream.
        const ownersOf = (all: ReadonlyArray<Lease.Lease>, stream: string) =>
          all.filter((l) => l.leaseKey.includes(`:${stream}:`)).map((l) => l.leaseOwner).sort()
        yield* eventually(
          Effect.map(
            leases.list,
            (all) =>
              JSON.stringify(ownersOf(all, orders.streamName)) === JSON.stringify(["a", "b"]) &&
              JSON.stringify(ownersOf(all, payments.streamName)) === JSON.stringify(["a", "b"])
          ),
          "30 seconds",
          "one shard of each stream per worker"
        )

        // Orders reshards while both streams keep getting records.
        const parent = orders.shards[0]!.shardId
        yield* admin.splitShard(orders.streamName, parent)
        yield* write(orders.streamName, "o", 60, 60)
        yield* write(payments.streamName, "p", 60, 60)
        const seen = () => [...a.seen, ...b.seen]
        yield* eventually(Effect.sync(() => tally(seen(), ids).lost === 0), "60 seconds", `all ${ids.length} records`)
        // Leases moved by hand-off: none lost (a lost lease is taken over at its last checkpoint, repeating records).
        expect(lost(a, b)).toEqual([])
        expect(tally(seen(), ids)).toEqual({ duplicates: 0, lost: 0 })
        // The handler is told the stream each record came from.
        for (const r of seen()) expect(r.stream).toBe(r.data.startsWith("o") ? orders.streamName : payments.streamName)

        // Both children of the split have leases; once every record is checkpointed, each open shard's checkpoint is
        // its last record, in its own stream's lease.
        const { accountId: ordersAccount, created: ordersCreated } = yield* identity(orders.streamName)
        const { created: paymentsCreated } = yield* identity(payments.streamName)
        const ordersPrefix = `${ordersAccount}:${orders.streamName}:${ordersCreated}:`
        const paymentsPrefix = `${ordersAccount}:${payments.streamName}:${paymentsCreated}:`
        yield* eventually(
          Effect.map(
            leases.list,
            (all) =>
              all.filter((l) => l.leaseKey.startsWith(ordersPrefix) && l.parentShardIds.includes(parent)).length === 2
          ),
          "20 seconds",
          "the children's leases"
        )
        const children = (yield* leases.list).filter((l) => l.parentShardIds.includes(parent)).map((l) => l.shardId!)
        const expected = new Map<string, string>()
        for (
          const [shardId, sn] of yield* lastSequenceNumbers(orders.streamName, [orders.shards[1]!.shardId, ...children])
        ) {
          expected.set(ordersPrefix + shardId, sn)
        }
        for (
          const [shardId, sn] of yield* lastSequenceNumbers(
            payments.streamName,
            payments.shards.map((s) => s.shardId)
          )
        ) {
          expected.set(paymentsPrefix + shardId, sn)
        }
        yield* eventually(
          Effect.map(leases.list, (all) => {
            const byKey = new Map(all.map((l) => [l.leaseKey, l.checkpoint.sequenceNumber]))
            return [...expected].every(([key, sn]) => byKey.get(key) === sn)
          }),
          "20 seconds",
          "every open shard checkpointed at its last record"
        )
        yield* a.stop
        yield* b.stop

        // The items are the KCL's multi-stream leases: key, streamName (the whole identifier), shardId; parents as
        // plain shard ids. Nothing in the single-stream format.
        const items = yield* rawItems(table)
        for (const [key, item] of items) {
          const stream = key.startsWith(ordersPrefix)
            ? ordersPrefix
            : key.startsWith(paymentsPrefix)
            ? paymentsPrefix
            : ""
          expect(stream, key).not.toBe("")
          expect(item.streamName?.S).toBe(stream.slice(0, -1))
          expect(item.shardId?.S).toBe(key.slice(stream.length))
          expect(item.shardId?.S).toMatch(/^shardId-\d{12}$/)
        }
        for (const child of children) {
          expect(items.get(ordersPrefix + child)?.parentShardId?.SS).toEqual([parent])
        }
      }))
  })

  describe("a KCL multi-stream application's table", () => {
    it.effect("is taken over and continued at its checkpoints, a resharding in one stream included: the epoch a KCL application chose is used when given, one in seconds of the creation time is found by itself", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const client = yield* Client.Client
        const orders = yield* StreamFixtures.stream({ prefix: "orders", shardCount: 2 })
        const payments = yield* StreamFixtures.stream({ prefix: "payments", shardCount: 1 })
        const table = uniqueTable("kcl-multi")
        yield* createKclTable(table)
        yield* put(orders.streamName, records("o", 0, 40))
        // Payments was split while the KCL application ran: the parent checkpointed part-way, its children's leases
        // created, not started.
        const parent = payments.shards[0]!
        yield* put(payments.streamName, records("p", 0, 12))
        yield* admin.splitShard(payments.streamName, parent.shardId)
        yield* put(payments.streamName, records("p", 12, 24))
        const children = (yield* Stream.runCollect(
          client.listShards(payments.streamName, { shardFilter: { Type: "AT_LATEST" } })
        )).map((s) => ({
          shardId: s.ShardId!,
          startingHashKey: s.HashKeyRange!.StartingHashKey!,
          endingHashKey: s.HashKeyRange!.EndingHashKey!
        }))
        expect(children).toHaveLength(2)

        // The KCL application named orders with an epoch of its own choosing, payments with its creation time in
        // seconds. Its worker is gone: its leases expire.
        const { accountId, created } = yield* identity(payments.streamName)
        const ordersId = `${accountId}:${orders.streamName}:1700000000`
        const paymentsId = `${accountId}:${payments.streamName}:${Math.floor(created / 1000)}`
        const before = new Set<string>()
        const after = new Set<string>()
        // An item as `DynamoDBMultiStreamLeaseSerializer.toDynamoRecord` writes it.
        const kclLease = (
          id: string,
          shard: { readonly shardId: string; readonly startingHashKey: string; readonly endingHashKey: string },
          fields: Item
        ): Item => ({
          leaseKey: { S: `${id}:${shard.shardId}` },
          leaseOwner: { S: "kcl-worker-1" },
          leaseCounter: { N: "42" },
          ownerSwitchesSinceCheckpoint: { N: "0" },
          checkpointSubSequenceNumber: { N: "0" },
          startingHashKey: { S: shard.startingHashKey },
          endingHashKey: { S: shard.endingHashKey },
          entityType: { S: "LEASE" },
          streamName: { S: id },
          shardId: { S: shard.shardId },
          ...fields
        })
        // Checkpointed at its `at`th record (none: not started).
        const checkpointedAt = (
          id: string,
          streamName: string,
          shard: { readonly shardId: string; readonly startingHashKey: string; readonly endingHashKey: string },
          at: number | undefined,
          fields: Item = {}
        ) =>
          Effect.gen(function*() {
            const stored = yield* readShard(streamName, shard.shardId)
            const from = at === undefined ? 0 : at + 1
            expect(stored.length).toBeGreaterThan(from)
            stored.forEach((r, i) => (i < from ? before : after).add(r.data))
            const checkpoint = at === undefined ? "TRIM_HORIZON" : stored[at]!.sequenceNumber
            yield* putRaw(table, kclLease(id, shard, { checkpoint: { S: checkpoint }, ...fields }))
          })
        for (const shard of orders.shards) yield* checkpointedAt(ordersId, orders.streamName, shard, 4)
        const parentShardId = { parentShardId: { SS: [parent.shardId] } }
        yield* checkpointedAt(paymentsId, payments.streamName, parent, 3)
        yield* checkpointedAt(paymentsId, payments.streamName, children[0]!, undefined, parentShardId)
        yield* checkpointedAt(paymentsId, payments.streamName, children[1]!, undefined, parentShardId)
        const keys = [...(yield* rawItems(table)).keys()].sort()

        const worker = yield* startMulti({
          streams: [{ stream: orders.streamName, creationEpoch: 1700000000 }, payments.streamName],
          applicationName: table,
          workerId: "ours"
        })
        yield* eventually(
          Effect.sync(() => [...after].every((d) => worker.seen.some((r) => r.data === d))),
          "30 seconds",
          `the ${after.size} records after the checkpoints`
        )
        // Nothing at or before a checkpoint again (nor the ended parent), nothing twice; the KCL's leases continued,
        // none created.
        expect(worker.seen.filter((r) => before.has(r.data))).toEqual([])
        expect(worker.seen).toHaveLength(after.size)
        // The parent's rest before any record of its children.
        const fromParent = worker.seen.findLastIndex((r) => r.shardId === parent.shardId)
        const fromChildren = worker.seen.findIndex((r) =>
          r.stream === payments.streamName && r.shardId !== parent.shardId
        )
        expect(fromParent).toBeGreaterThanOrEqual(0)
        expect(fromParent).toBeLessThan(fromChildren)
        const leases = yield* observer(table)
        yield* eventually(
          Effect.map(
            leases.list,
            (all) => all.every((l) => l.shardId === parent.shardId || (l.leaseOwner === "ours" && l.leaseCounter > 42))
          ),
          "10 seconds",
          "every open shard's lease taken over"
        )
        yield* worker.stop
        const items = yield* rawItems(table)
        // The parent's lease may be gone (a child started, so it is finished and cleaned up, as the KCL does).
        expect([...items.keys()].filter((k) => !k.endsWith(parent.shardId)).sort()).toEqual(
          keys.filter((k) => !k.endsWith(parent.shardId))
        )
        for (const shard of orders.shards) {
          const last = (yield* readShard(orders.streamName, shard.shardId)).at(-1)!.sequenceNumber
          expect(items.get(`${ordersId}:${shard.shardId}`)?.checkpoint?.S).toBe(last)
        }
        for (const child of children) {
          const last = (yield* readShard(payments.streamName, child.shardId)).at(-1)!.sequenceNumber
          const item = items.get(`${paymentsId}:${child.shardId}`)
          expect(item?.checkpoint?.S).toBe(last)
          expect(item?.streamName?.S).toBe(paymentsId)
          expect(item?.parentShardId?.SS).toEqual([parent.shardId])
        }
      }))
  })

  describe("the cost of many streams", () => {
    it.effect("the streams' coordinators share their scans of the table: three streams cost about the scans of one", () =>
      Effect.gen(function*() {
        const dynamo = yield* DynamoEmulator.DynamoEmulator
        const streams = yield* Effect.forEach([1, 2, 3], () => StreamFixtures.stream({ shardCount: 2 }))
        // Scans a worker makes in 5 s once it holds every lease, over `n` streams.
        const scansOver = (n: number) =>
          Effect.scoped(Effect.gen(function*() {
            const table = uniqueTable("scans")
            const sdk = DynamoDbClient.makeSdkClient(dynamo.clientConfig)
            yield* Effect.addFinalizer(() => Effect.sync(() => sdk.destroy()))
            const counting = { on: false, scans: 0 }
            sdk.middlewareStack.add(
              (next, context) => (args) => {
                if (counting.on && context.commandName === "ScanCommand") counting.scans++
                return next(args)
              },
              { step: "initialize", name: "countScans" }
            )
            const client = Layer.succeed(DynamoDbClient.DynamoDbClient, DynamoDbClient.DynamoDbClient.of({ sdk }))
            const fiber = yield* MultiStream.consumeWith(() => Effect.void, {
              streams: streams.slice(0, n).map((s) => s.streamName),
              applicationName: table,
              workerId: "w",
              deserializer: Serde.string,
              lease: fastLeases
            }).pipe(
              Effect.provide(DynamoDbLeaseRepository.layer({ applicationName: table }).pipe(Layer.provide(client))),
              Effect.forkScoped
            )
            const leases = yield* observer(table)
            yield* eventually(
              Effect.map(leases.list, (all) => all.length === 2 * n && all.every((l) => l.leaseOwner === "w")),
              "30 seconds",
              `${2 * n} leases held`
            )
            counting.on = true
            yield* Effect.sleep("5 seconds")
            counting.on = false
            yield* Fiber.interrupt(fiber)
            return counting.scans
          }))
        const one = yield* scansOver(1)
        const three = yield* scansOver(3)
        // A coordinator per stream, each scanning on its own, makes about 3x the scans of one (52 vs 16 in a
        // run without sharing); shared, 1.4-1.9x (the rounds are jittered apart, so not every scan is shared).
        expect(one).toBeGreaterThan(5)
        expect(three).toBeLessThan(one * 2.2)
      }))
  })

  describe("single-stream consumers", () => {
    it.effect("keep plain shard ids as lease keys, without the multi-stream attributes", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const table = uniqueTable("single")
        yield* put(streamName, records("s", 0, 10))
        const worker = yield* startWorker({ stream: streamName, applicationName: table, workerId: "w" })
        yield* eventually(Effect.sync(() => worker.seen.length === 10), "30 seconds", "10 records")
        yield* worker.stop
        const items = yield* rawItems(table)
        expect([...items.keys()].sort()).toEqual(shards.map((s) => s.shardId).sort())
        for (const item of items.values()) {
          expect(item.streamName).toBeUndefined()
          expect(item.shardId).toBeUndefined()
        }
      }))
  })
})
