import { LeaseRepository } from "@effect-kinesis/consumer"
import { AdminClient, Aggregation, Client, KinesisError, Serde } from "@effect-kinesis/core"
import { Producer, ProducerError, ProducerMetrics } from "@effect-kinesis/producer"
import { ConsumerWorker, FaultProxy, KinesisEmulator, StreamFixtures } from "@effect-kinesis/testing"
import { assert, describe, it, layer } from "@effect/vitest"
import { type Duration, Effect, Exit, Layer, Ref } from "effect"
import type * as ShardStateModule from "../src/internal/shardState.ts"

// An internal module (the package does not export it): loaded by path, which the compiler leaves
// as is, where a static import across the src and test projects does not compile.
const { ShardState }: typeof ShardStateModule = await import(
  new URL("../src/internal/shardState.ts", import.meta.url).href
)

const MiB = 1_048_576

/** Sizes (data + partition key bytes) and record counts of every PutRecords request the producer sent. */
interface SentRequest {
  readonly records: number
  readonly bytes: number
  readonly sizes: ReadonlyArray<number>
}

/**
 * The emulator's client, with every PutRecords request noted before it goes out (the requests are real: the
 * emulator answers them).
 */
const observed = (sent: Array<SentRequest>) =>
  Layer.effect(
    Client.Client,
    Effect.map(Client.Client, (client) =>
      Client.Client.of({
        ...client,
        putRecords: (stream, records, options) => {
          const sizes = records.map((r) => r.Data!.length + Aggregation.partitionKeyBytes(r.PartitionKey!))
          sent.push({ records: records.length, bytes: sizes.reduce((a, b) => a + b, 0), sizes })
          return client.putRecords(stream, records, options)
        }
      }))
  )

const direct = Layer.unwrap(Effect.map(KinesisEmulator.KinesisEmulator, (e) => Client.layer(e.clientConfig)))
const TestLayer = Layer.provideMerge(AdminClient.layer, direct).pipe(Layer.provideMerge(KinesisEmulator.layer()))

/** A payload whose bytes tell where a corruption or truncation happened. */
const payload = (bytes: number, seed: number) => {
  const data = new Uint8Array(bytes)
  for (let i = 0; i < bytes; i++) data[i] = (i * 31 + seed) & 0xff
  return data
}

const small = (count: number, prefix: string) =>
  Array.from({ length: count }, (_, i) => ({
    partitionKey: `${prefix}-${i % 50}`,
    data: new TextEncoder().encode(`${prefix}-${i}`)
  }))

// A consumer worker on `stream`, once it has seen `count` records.
const readBack = (stream: string, count: number, within: Duration.Input) =>
  Effect.gen(function*() {
    const worker = yield* ConsumerWorker.start({
      stream,
      applicationName: "large-records",
      workerId: "w",
      deserializer: Serde.bytes,
      leases: LeaseRepository.layerMemory,
      lease: ConsumerWorker.fastLeases
    })
    yield* ConsumerWorker.eventually(Effect.sync(() => worker.seen.length >= count), within, `${count} records`)
    return worker
  })

layer(TestLayer, { timeout: 120_000, excludeTestServices: true })("records up to 10 MiB", (it) => {
  it.effect("AdminClient.updateMaxRecordSize raises a stream's maximum, and a producer started after it accepts what it refused before", () =>
    Effect.gen(function*() {
      const admin = yield* AdminClient.AdminClient
      const stream = yield* StreamFixtures.stream({ shardCount: 1 })
      const before = yield* admin.describeStream(stream.streamName)
      assert.strictEqual(before.maxRecordBytes, MiB)
      const twoMiB = { partitionKey: "big", data: payload(2 * MiB, 1) }
      const fourMiB = { partitionKey: "big", data: payload(4 * MiB, 2) }

      const refused = yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({ stream: stream.streamName, serde: Serde.bytes })
        return yield* Effect.flip(producer.produce(twoMiB))
      }))
      assert.instanceOf(refused, ProducerError.RecordTooLarge)
      assert.strictEqual((refused as ProducerError.RecordTooLarge).maxBytes, MiB)

      const after = yield* admin.updateMaxRecordSize(stream.streamName, 3072)
      assert.strictEqual(after.maxRecordSizeKiB, 3072)
      assert.strictEqual(after.maxRecordBytes, 3 * MiB)
      assert.strictEqual(after.status, "ACTIVE")

      const outcome = yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({ stream: stream.streamName, serde: Serde.bytes })
        const landed = yield* producer.produce(twoMiB)
        const tooLarge = yield* Effect.flip(producer.produce(fourMiB))
        return { landed, tooLarge }
      }))
      assert.strictEqual(outcome.landed.shardId, stream.shards[0]!.shardId)
      assert.instanceOf(outcome.tooLarge, ProducerError.RecordTooLarge)
      assert.strictEqual((outcome.tooLarge as ProducerError.RecordTooLarge).maxBytes, 3 * MiB)

      // Out of Kinesis' range: refused with a typed error, without a call.
      const invalid = yield* Effect.flip(admin.updateMaxRecordSize(stream.streamName, 20_000))
      assert.strictEqual(invalid._tag, "InvalidArgument")
    }))

  it.effect("on a 1 MiB stream a 2 MiB record fails alone with RecordTooLarge; its 300 neighbours land (aggregated)", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 2 })
      const input = small(300, "n")
      input.splice(150, 0, { partitionKey: "n-big", data: payload(2 * MiB, 3) })
      const failures: Array<Producer.OfferFailure<Uint8Array>> = []
      yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({
          stream: stream.streamName,
          serde: Serde.bytes,
          settings: { aggregate: true },
          onError: (failure) => Effect.sync(() => failures.push(failure))
        })
        yield* producer.offerAll(input)
      }))
      assert.deepStrictEqual(failures.map((f) => [f.record.partitionKey, f.error._tag]), [["n-big", "RecordTooLarge"]])
      const worker = yield* readBack(stream.streamName, 300, "30 seconds")
      assert.strictEqual(worker.seen.length, 300)
    }))

  it.effect(
    "on a 10 MiB stream, a 5 MiB and a 1.5 MiB record among 2,000 small ones: neither is aggregated, the 5 MiB one (over the 5 MiB request budget with its key) goes alone in its request, the small ones are aggregated, every request keeps its limits; the consumer reads all back intact",
    () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const stream = yield* StreamFixtures.stream({ shardCount: 4 })
        yield* admin.updateMaxRecordSize(stream.streamName, 10240)
        const five = payload(5 * MiB, 5)
        const mid = payload(1.5 * MiB, 7)
        const input = small(2000, "s")
        input.splice(700, 0, { partitionKey: "large-5", data: five })
        input.splice(1400, 0, { partitionKey: "large-1.5", data: mid })
        const sent: Array<SentRequest> = []
        const metrics = yield* Ref.make(ProducerMetrics.empty())
        const failures: Array<Producer.OfferFailure<Uint8Array>> = []
        yield* Effect.scoped(Effect.gen(function*() {
          const producer = yield* Producer.make({
            stream: stream.streamName,
            serde: Serde.bytes,
            // kinesis-mock takes about 20 s to store a 5 MiB record (Scala.js parsing its JSON).
            settings: { aggregate: true, requestTimeout: "60 seconds", closeTimeout: "90 seconds" },
            onError: (failure) => Effect.sync(() => failures.push(failure)),
            onMetrics: (m) => Ref.update(metrics, (total) => ProducerMetrics.combine(total, m))
          })
          yield* producer.offerAll(input)
        })).pipe(Effect.provide(observed(sent)))
        assert.deepStrictEqual(failures.map((f) => [f.record.partitionKey, f.error.message]), [])

        const maxRequestBytes = 5 * MiB
        for (const request of sent) {
          assert.isAtMost(request.records, 500)
          // Only a record larger than the request budget may exceed it, and then alone.
          if (request.bytes > maxRequestBytes) assert.strictEqual(request.records, 1)
        }
        const sizeOf = (data: Uint8Array, key: string) => data.length + key.length
        const fiveRequests = sent.filter((r) => r.sizes.includes(sizeOf(five, "large-5")))
        const midRequests = sent.filter((r) => r.sizes.includes(sizeOf(mid, "large-1.5")))
        assert.deepStrictEqual(fiveRequests.map((r) => r.records), [1])
        assert.strictEqual(midRequests.length, 1)
        const total = yield* Ref.get(metrics)
        assert.strictEqual(total.userRecordsPut, 2002)
        // The small records still ride in aggregates.
        assert.isAbove(ProducerMetrics.userRecordsPerKinesisRecord(total), 10)

        const worker = yield* readBack(stream.streamName, 2002, "120 seconds")
        assert.strictEqual(worker.seen.length, 2002)
        const read5 = worker.seen.find((r) => r.partitionKey === "large-5")!
        const readMid = worker.seen.find((r) => r.partitionKey === "large-1.5")!
        assert.isFalse(read5.aggregated)
        assert.isFalse(readMid.aggregated)
        assert.isTrue(Buffer.from(read5.data).equals(Buffer.from(five)))
        assert.isTrue(Buffer.from(readMid.data).equals(Buffer.from(mid)))
        const smallRead = worker.seen.filter((r) => r.partitionKey.startsWith("s-"))
        assert.strictEqual(new Set(smallRead.map((r) => new TextDecoder().decode(r.data))).size, 2000)
        assert.isTrue(smallRead.some((r) => r.aggregated))
      }),
    300_000
  )

  it.effect("a producer without the permission to describe the stream still starts, on 1 MiB", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 1 })
      const outcome = yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({ stream: stream.streamName, serde: Serde.bytes })
        const fits = yield* Effect.exit(producer.produce({ partitionKey: "k", data: payload(MiB - 1, 0) }))
        const tooLarge = yield* Effect.flip(producer.produce({ partitionKey: "k", data: payload(MiB, 0) }))
        return { fits, tooLarge }
      })).pipe(
        Effect.provide(Layer.effect(
          Client.Client,
          Effect.map(Client.Client, (client) =>
            Client.Client.of({
              ...client,
              describeStreamSummary: () =>
                Effect.fail(
                  new KinesisError.AccessDenied({
                    operation: "DescribeStreamSummary",
                    message: "not authorized to perform kinesis:DescribeStreamSummary",
                    reason: "AccessDeniedException"
                  })
                )
            }))
        ))
      )
      assert.isTrue(Exit.isSuccess(outcome.fits))
      assert.instanceOf(outcome.tooLarge, ProducerError.RecordTooLarge)
      assert.strictEqual((outcome.tooLarge as ProducerError.RecordTooLarge).maxBytes, MiB)
    }))
})

/** Through the fault proxy enforcing Kinesis' per-shard limits (1000 records/s, 1 MiB/s; a larger record bursts). */
const LimitedLayer = Layer.provideMerge(
  Layer.provideMerge(
    AdminClient.layer,
    Layer.unwrap(Effect.map(FaultProxy.FaultProxy, (p) => Client.layer(p.clientConfig)))
  ),
  FaultProxy.layer({ shardLimits: true })
).pipe(Layer.provideMerge(KinesisEmulator.layer()))

layer(LimitedLayer, { timeout: 120_000, excludeTestServices: true })(
  "large records and the shard's write limit",
  (it) => {
    it.effect(
      "a 1.5 MiB record followed by 3 MiB of 20 KiB records into one shard: the producer counts the large record against the shard's 1 MiB/s, so the records after it wait instead of being throttled",
      () =>
        Effect.gen(function*() {
          const proxy = yield* FaultProxy.FaultProxy
          const admin = yield* AdminClient.AdminClient
          const stream = yield* StreamFixtures.stream({ shardCount: 1 })
          yield* admin.updateMaxRecordSize(stream.streamName, 2048)
          yield* proxy.resetStats
          const input = [
            { partitionKey: "large", data: payload(1.5 * MiB, 9) },
            ...Array.from({ length: 150 }, (_, i) => ({ partitionKey: `n-${i}`, data: payload(20 * 1024, i) }))
          ]
          const failures: Array<Producer.OfferFailure<Uint8Array>> = []
          yield* Effect.scoped(Effect.gen(function*() {
            const producer = yield* Producer.make({
              stream: stream.streamName,
              serde: Serde.bytes,
              // kinesis-mock takes seconds to store a record of a few MiB.
              settings: { requestTimeout: "60 seconds", closeTimeout: "90 seconds" },
              onError: (failure) => Effect.sync(() => failures.push(failure))
            })
            yield* producer.offerAll(input)
          }))
          assert.deepStrictEqual(failures.map((f) => f.error._tag), [])
          const stats = yield* proxy.stats
          const shard = stats.shards[stream.streamName]?.[stream.shards[0]!.shardId]
          assert.strictEqual(shard?.forwardedRecords, 151)
          // The large record itself passed the proxy's full bucket, and what followed it waited out its debt.
          assert.isAtMost(stats.throttledRecords, 2, `${stats.throttledRecords} throttled`)
        }),
      180_000
    )
  }
)

describe("a shard's token buckets and a record larger than them", () => {
  it("a 10 MiB record passes a bucket of 200 KiB at once, and the shard's next record waits the ten seconds of its debt: no deadlock, and the average stays at the shard's rate", () => {
    const limits = {
      enabled: true,
      bytesPerMs: MiB / 1000,
      recordsPerMs: 1,
      burstMs: 200,
      bytesPerSecond: MiB,
      recordsPerSecond: 1000
    }
    const shard = new ShardState(
      { shardId: "shardId-000000000000", startingHashKey: 0n, endingHashKey: (1n << 128n) - 1n } as never,
      limits,
      undefined,
      0
    )
    assert.isTrue(shard.canSend())
    // Larger than a whole second's bytes: it goes because the shard has its whole second.
    assert.isTrue(shard.fits(10 * MiB))
    shard.consume(10 * MiB, 0)
    assert.isFalse(shard.canSend())
    // Out of debt after (10 MiB − 200 KiB) at 1 MiB/s.
    const ready = shard.readyAt(0)
    assert.closeTo(ready, 9800, 2)
    shard.refill(ready - 5)
    assert.isFalse(shard.canSend())
    shard.refill(ready + 1)
    assert.isTrue(shard.canSend())
  })
})
