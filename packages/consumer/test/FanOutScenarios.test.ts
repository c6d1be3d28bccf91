import { Consumer, LeaseRepository } from "@effect-kinesis/consumer"
import { AdminClient, Aggregation, Client, ExtendedSequenceNumber, Serde } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { fanOutSettings, startFanOutWorker } from "./fanOutFixtures.ts"
import { eventually, fastLeases, KinesisLive, put, type Worker } from "./fixtures.ts"

const KEYS = 8

// Record i of key k carries "k:i", so the order per key can be checked from the data.
const phase = (from: number, count: number) =>
  Array.from({ length: count }, (_, i) => {
    const n = from + i
    return { partitionKey: `key-${n % KEYS}`, data: `${n % KEYS}:${Math.floor(n / KEYS)}` }
  })

const records = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ partitionKey: `key-${i % 16}`, data: `${prefix}${i}` }))

const encoder = new TextEncoder()

// Three aggregated Kinesis records of ten user records each, all routed to the stream's only shard.
const putAggregates = (stream: string, explicitHashKey: string) =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    const aggregator = Aggregation.makeAggregator({ explicitHashKey })
    for (let a = 0; a < 3; a++) {
      aggregator.reset()
      for (let u = 0; u < 10; u++) {
        aggregator.add({ partitionKey: `key-${u % 4}`, data: encoder.encode(`a${a}u${u}`) })
      }
      const record = aggregator.build()!
      yield* client.putRecords(stream, [{
        PartitionKey: record.partitionKey,
        ExplicitHashKey: record.explicitHashKey,
        Data: record.data
      }])
    }
  })

const dataOf = (workers: ReadonlyArray<Worker>) => new Set(workers.flatMap((w) => w.seen.map((r) => r.data)))

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("Enhanced fan-out scenarios", (it) => {
  describe("hand-off", () => {
    it.effect("a worker shutting down releases its leases and another worker resubscribes to them after the last checkpoint", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 4 })
        const repository = yield* LeaseRepository.makeMemory()
        // Expiry far beyond the test: only a release can move a lease.
        const lease = { ...fastLeases, expiry: "5 minutes", renewInterval: "1 second" } as const
        const a = yield* startFanOutWorker({ stream: streamName, workerId: "a", repository, lease })
        yield* eventually(Effect.sync(() => a.held().size === 4), "20 seconds", "a holding all shards")
        const b = yield* startFanOutWorker({ stream: streamName, workerId: "b", repository, lease })
        yield* eventually(Effect.sync(() => a.held().size === 2 && b.held().size === 2), "20 seconds", "2 + 2")

        yield* put(streamName, records("x", 20))
        yield* eventually(Effect.sync(() => dataOf([a, b]).size === 20), "20 seconds", "first 20 records")
        yield* a.stop
        yield* eventually(Effect.sync(() => b.held().size === 4), "10 seconds", "b holding all shards")

        // b subscribes to a's shards within 5 seconds of a's subscriptions: Kinesis says
        // ResourceInUse at first, and b waits it out.
        yield* put(streamName, records("y", 20))
        yield* eventually(
          Effect.sync(() => new Set(b.seen.map((r) => r.data).filter((d) => d.startsWith("y"))).size === 20),
          "20 seconds",
          "b processing every shard"
        )
        const redone = b.seen.filter((r) => r.data.startsWith("x") && a.seen.some((s) => s.data === r.data))
        expect(redone).toEqual([])
      }))
  })

  describe("deaggregation", () => {
    it.effect("KPL aggregates are delivered one user record at a time, and a restart mid-aggregate resumes at the next subsequence number", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        yield* putAggregates(streamName, shards[0]!.startingHashKey)
        const repository = yield* LeaseRepository.makeMemory()
        const options: Consumer.ShardedStreamOptions<string> = {
          stream: streamName,
          applicationName: "test",
          workerId: "w",
          deserializer: Serde.string,
          enhancedFanOut: fanOutSettings,
          lease: fastLeases
        }
        // Processes (and stages) the first `n` records of the shard, then stops.
        const consume = (n: number) =>
          Consumer.shardedStream(options).pipe(
            Stream.flatMap((shard) =>
              shard.records.pipe(Stream.take(n), Stream.tap((record) => shard.checkpointer.stage(record)))
            ),
            Stream.take(n),
            Stream.runCollect,
            Effect.provide(Consumer.layer),
            Effect.provideService(LeaseRepository.LeaseRepository, repository)
          )

        const first = yield* consume(15)
        expect(first.map((r) => r.data)).toEqual([
          ...Array.from({ length: 10 }, (_, u) => `a0u${u}`),
          ...Array.from({ length: 5 }, (_, u) => `a1u${u}`)
        ])
        expect(first.map((r) => r.subSequenceNumber)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4])
        const [lease] = yield* repository.list
        expect(lease!.checkpoint).toEqual(ExtendedSequenceNumber.make(first[14]!.sequenceNumber, 4))

        // Resubscribed at once, AT the checkpoint's aggregate: the user records before it are skipped.
        const second = yield* consume(15)
        expect(second.map((r) => r.data)).toEqual([
          ...Array.from({ length: 5 }, (_, u) => `a1u${u + 5}`),
          ...Array.from({ length: 10 }, (_, u) => `a2u${u}`)
        ])
      }))
  })

  describe("resharding", () => {
    it.effect("children start only after their parents end, and per-key order holds across split and merge", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        const parent = shards[0]!.shardId
        yield* put(streamName, phase(0, 48))
        yield* admin.splitShard(streamName, parent)
        yield* put(streamName, phase(48, 48))
        const worker = yield* startFanOutWorker({
          stream: streamName,
          workerId: "w",
          repository,
          handler: () => Effect.sleep("5 millis"),
          // Every lease is inspected at the end.
          lease: { ...fastLeases, cleanupFinished: false }
        })
        yield* eventually(
          Effect.map(repository.list, (leases) => leases.length === 3),
          "20 seconds",
          "child leases"
        )
        const children = (yield* repository.list).map((l) => l.leaseKey).filter((id) => id !== parent).sort()
        // The children are being read through subscriptions when they close.
        yield* eventually(
          Effect.sync(() => children.every((child) => worker.held().has(child))),
          "20 seconds",
          "both children held"
        )
        yield* admin.mergeShards(streamName, children[0]!, children[1]!)
        yield* put(streamName, phase(96, 48))

        yield* eventually(Effect.sync(() => worker.seen.length >= 144), "40 seconds", "all 144 records")

        const perKey = new Map<string, Array<number>>()
        for (const record of worker.seen) {
          const [key, index] = record.data.split(":")
          perKey.set(key!, [...(perKey.get(key!) ?? []), Number(index)])
        }
        for (let k = 0; k < KEYS; k++) {
          expect(perKey.get(String(k))).toEqual(Array.from({ length: 18 }, (_, i) => i))
        }

        const order = worker.events.map((e) =>
          e._tag === "ShardEnded" ? `end ${e.shardId}` : e._tag === "LeaseAcquired" ? `take ${e.shardId}` : ""
        )
        const leases = yield* repository.list
        for (const lease of leases) {
          for (const p of lease.parentShardIds) {
            expect(order.indexOf(`end ${p}`)).toBeGreaterThanOrEqual(0)
            expect(order.indexOf(`end ${p}`)).toBeLessThan(order.indexOf(`take ${lease.leaseKey}`))
          }
        }
        const ended = leases.filter((l) => ExtendedSequenceNumber.isShardEnd(l.checkpoint)).map((l) => l.leaseKey)
          .sort()
        expect(ended).toEqual([parent, ...children].sort())
        expect(leases.find((l) => l.leaseKey === parent)?.childShardIds.slice().sort()).toEqual(children)
      }))
  })
})
