/**
 * MultiStream on the in-memory lease store: two streams, two workers sharing one store through `shardedStream`; the
 * leases in the KCL's multi-stream format; leases of a stream the application does not consume, and single-stream
 * leases, left alone.
 */
import { type Lease, LeaseRepository, MultiStream } from "@effect-kinesis/consumer"
import { Client, ExtendedSequenceNumber, MetricsCollector, Serde } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import { eventually, fastLeases, KinesisLive, put } from "./fixtures.ts"

const records = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ partitionKey: `key-${i % 8}`, data: `${prefix}${i}` }))

const unowned = (leaseKey: string, extra: Partial<Lease.Lease> = {}): Lease.Lease => ({
  leaseKey,
  leaseOwner: "someone",
  leaseCounter: 3,
  checkpoint: ExtendedSequenceNumber.trimHorizon,
  pendingCheckpoint: undefined,
  ownerSwitchesSinceCheckpoint: 0,
  parentShardIds: [],
  childShardIds: [],
  hashKeyRange: undefined,
  ...extra
})

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("MultiStream on the in-memory store", (it) => {
  describe("two streams, two workers", () => {
    it.effect("every record of both streams is delivered with its stream, the leases are the KCL's multi-stream ones, other streams' leases are left alone", () =>
      Effect.gen(function*() {
        const orders = yield* StreamFixtures.stream({ prefix: "orders", shardCount: 2 })
        const payments = yield* StreamFixtures.stream({ prefix: "payments", shardCount: 2 })
        yield* put(orders.streamName, records("o", 40))
        yield* put(payments.streamName, records("p", 40))
        // A stream this application no longer consumes, and a single-stream lease: neither is touched.
        const former = unowned("123456789012:retired:1600000000:shardId-000000000000", {
          streamName: "123456789012:retired:1600000000",
          shardId: "shardId-000000000000"
        })
        const plain = unowned("shardId-000000000000")
        const repository = yield* LeaseRepository.makeMemory({ leases: [former, plain] })

        const seen: Array<{ readonly stream: string; readonly shardId: string; readonly data: string }> = []
        const acquired: Array<string> = []
        const collector = yield* MetricsCollector.make
        const run = (workerId: string) =>
          MultiStream.shardedStream({
            streams: [orders.streamName, payments.streamName],
            applicationName: "app",
            workerId,
            deserializer: Serde.string,
            fetch: { pollInterval: "100 millis" },
            lease: fastLeases,
            onDiagnostic: (event, stream) =>
              Effect.sync(() => {
                if (event._tag === "LeaseAcquired") acquired.push(`${stream.streamName}/${event.shardId}`)
              })
          }).pipe(
            Stream.flatMap((shard) =>
              shard.records.pipe(
                Stream.tap((record) =>
                  Effect.sync(() =>
                    seen.push({ stream: shard.stream.streamName, shardId: shard.shardId, data: record.data })
                  )
                ),
                Stream.tap(shard.checkpointer.stage),
                shard.checkpointer.checkpointBatched({ records: 100, interval: "100 millis" })
              ), { concurrency: "unbounded" }),
            Stream.runDrain,
            Effect.provideService(LeaseRepository.LeaseRepository, repository),
            Effect.provideService(MetricsCollector.MetricsCollector, collector),
            Effect.forkScoped
          )
        const a = yield* run("a")
        const b = yield* run("b")
        yield* eventually(Effect.sync(() => new Set(seen.map((r) => r.data)).size === 80), "30 seconds", "80 records")
        for (const r of seen) expect(r.stream).toBe(r.data.startsWith("o") ? orders.streamName : payments.streamName)

        const store = repository.forApplication!("app")
        const summary = yield* (yield* Client.Client).describeStreamSummary(orders.streamName)
        const account = summary.StreamARN!.split(":")[4]
        const ordersId = `${account}:${orders.streamName}:${summary.StreamCreationTimestamp!.getTime()}`
        yield* eventually(
          Effect.map(store.list, (all) => all.filter((l) => l.leaseOwner === "a" || l.leaseOwner === "b").length === 4),
          "20 seconds",
          "both streams' four leases held"
        )
        const all = yield* store.list
        const ours = all.filter((l) => l !== former && l !== plain)
        expect(ours.map((l) => l.leaseKey).filter((k) => k.startsWith(`${ordersId}:`)).sort()).toEqual(
          orders.shards.map((s) => `${ordersId}:${s.shardId}`).sort()
        )
        for (const lease of ours) {
          expect(lease.leaseKey).toBe(`${lease.streamName}:${lease.shardId}`)
          expect(MultiStream.parseIdentifier(lease.streamName!)?.accountId).toBe(account)
        }
        expect(all).toContain(former)
        expect(all).toContain(plain)
        // Shard ids repeat across streams: diagnostic events come with their stream, and per-shard metrics carry the
        // KCL's StreamId dimension, so that the two streams' shardId-000000000000 stay apart.
        const shards = [orders, payments].flatMap((s) => s.shards.map((shard) => `${s.streamName}/${shard.shardId}`))
        expect(new Set(acquired)).toEqual(new Set(shards))
        const datums = (yield* collector.drain).datums.filter((d) => d.name === "RecordsProcessed")
        const processed = new Map<string, number>()
        for (const d of datums) {
          const dims = new Map(d.dimensions.map((x) => [x.name, x.value]))
          const stream = MultiStream.parseIdentifier(dims.get("StreamId") ?? "")?.streamName
          const key = `${stream}/${dims.get("ShardId")}`
          processed.set(key, (processed.get(key) ?? 0) + d.statistics.sum)
        }
        expect(new Set(processed.keys())).toEqual(new Set(shards))
        // At least every record once (a batch cut short by a hand-off counts again at the next owner).
        expect([...processed.values()].reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(80)
        yield* Fiber.interrupt(a)
        yield* Fiber.interrupt(b)

        // The retired stream's leases go when asked, and only they.
        expect(yield* MultiStream.deleteStreamLeases(store, "123456789012:retired:1600000000")).toEqual([
          former.leaseKey
        ])
        const left = yield* store.list
        expect(left).not.toContain(former)
        expect(left).toHaveLength(all.length - 1)
      }))

    it.effect("identify finds the epoch a table already uses for the stream, in milliseconds or seconds of its creation", () =>
      Effect.gen(function*() {
        const orders = yield* StreamFixtures.stream({ prefix: "orders", shardCount: 1 })
        const summary = yield* (yield* Client.Client).describeStreamSummary(orders.streamName)
        const account = summary.StreamARN!.split(":")[4]
        const created = summary.StreamCreationTimestamp!.getTime()
        const seconds = Math.floor(created / 1000)
        const fresh = yield* MultiStream.identify(orders.streamName, yield* LeaseRepository.makeMemory())
        expect(fresh.serialized).toBe(`${account}:${orders.streamName}:${created}`)
        const kclTable = yield* LeaseRepository.makeMemory({
          leases: [unowned(`${account}:${orders.streamName}:${seconds}:shardId-000000000000`)]
        })
        const found = yield* MultiStream.identify(orders.streamName, kclTable.forApplication!("app"))
        expect(found).toMatchObject({ accountId: account, streamName: orders.streamName, creationEpoch: seconds })
        const given = yield* MultiStream.identify({ stream: orders.streamName, creationEpoch: 42 }, kclTable)
        expect(given.serialized).toBe(`${account}:${orders.streamName}:42`)
      }))
  })
})
