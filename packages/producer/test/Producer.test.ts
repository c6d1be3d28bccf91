import type { GetRecordsOutput } from "@aws-sdk/client-kinesis"
import { AdminClient, Aggregation, Client, HashKey, Serde, ShardMap } from "@effect-kinesis/core"
import { Producer, ProducerError, ProducerMetrics, ProducerSettings } from "@effect-kinesis/producer"
import { FaultProxy, KinesisEmulator, StreamFixtures } from "@effect-kinesis/testing"
import { assert, layer } from "@effect/vitest"
import { Effect, Exit, Layer, Ref, Result, Schedule, Scope, Stream } from "effect"

const TestLayer = FaultProxy.layer().pipe(Layer.provideMerge(KinesisEmulator.layer()))

/** A client straight to the emulator. */
const direct = Layer.unwrap(Effect.map(KinesisEmulator.KinesisEmulator, (e) => Client.layer(e.clientConfig)))
/** A client through the fault proxy. */
const viaProxy = Layer.unwrap(Effect.map(FaultProxy.FaultProxy, (p) => Client.layer(p.clientConfig)))

interface StoredRecord {
  readonly shardId: string
  readonly sequenceNumber: string
  readonly subSequenceNumber: number
  readonly partitionKey: string
  readonly explicitHashKey: string | undefined
  readonly data: string
}

/** Every user record stored in the stream (deaggregated), read with GetRecords from every shard. */
const readAll = (stream: string) =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    const shards = yield* Stream.runCollect(client.listShards(stream))
    const out: Array<StoredRecord> = []
    for (const shard of shards) {
      let iterator: string | undefined = yield* client.getShardIterator(stream, {
        shardId: shard.ShardId!,
        type: "TRIM_HORIZON"
      })
      while (iterator !== undefined) {
        const response: GetRecordsOutput = yield* client.getRecords({ ShardIterator: iterator, Limit: 10_000 })
        for (const record of response.Records ?? []) {
          const users = Aggregation.deaggregate({
            partitionKey: record.PartitionKey!,
            data: record.Data!
          })
          assert.isTrue(Result.isSuccess(users))
          for (const user of Result.getOrThrow(users)) {
            out.push({
              shardId: shard.ShardId!,
              sequenceNumber: record.SequenceNumber!,
              subSequenceNumber: user.subSequenceNumber,
              partitionKey: user.partitionKey,
              explicitHashKey: user.explicitHashKey,
              data: new TextDecoder().decode(user.data)
            })
          }
        }
        if ((response.Records ?? []).length === 0 && (response.MillisBehindLatest ?? 0) === 0) break
        iterator = response.NextShardIterator
      }
    }
    return out
  })

const records = (count: number, prefix: string, size = 0) =>
  Array.from({ length: count }, (_, i) => ({
    partitionKey: `${prefix}-key-${i % 997}`,
    data: `${prefix}-${i}`.padEnd(size, ".")
  }))

const openShardMap = (stream: string) =>
  Effect.flatMap(
    Client.Client,
    (client) =>
      Stream.runCollect(client.listShards(stream, { shardFilter: { Type: "AT_LATEST" } })).pipe(
        Effect.flatMap((shards) => Effect.fromResult(ShardMap.fromShards(shards)))
      )
  )

const shardOfKey = (map: ShardMap.ShardMap, partitionKey: string) =>
  ShardMap.shardForHashKey(map, HashKey.fromPartitionKey(partitionKey))!.shardId

/**
 * Offers `input` (all at once, as `offerAll` callers do) and closes the producer, which flushes:
 * every failure reported to `onError`, in the order reported.
 */
const offerAndClose = (
  stream: string,
  input: ReadonlyArray<Producer.ProducerRecord<string>>,
  settings: Partial<ProducerSettings.ProducerSettings>
) =>
  Effect.gen(function*() {
    const failures: Array<Producer.OfferFailure<string>> = []
    yield* Effect.scoped(Effect.gen(function*() {
      const producer = yield* Producer.make({
        stream,
        serde: Serde.string,
        settings,
        onError: (failure) => Effect.sync(() => failures.push(failure))
      })
      yield* producer.offerAll(input)
    }))
    return failures
  })

/** 129 emoji: 129 code points, but 258 UTF-16 code units, which is what Kinesis counts. */
const EMOJI_KEY_TOO_LONG = "\u{1F600}".repeat(129)
/** 128 emoji: 256 UTF-16 code units, the longest key Kinesis accepts (512 UTF-8 bytes). */
const EMOJI_KEY_LONGEST = "\u{1F600}".repeat(128)

layer(TestLayer, { timeout: 120_000, excludeTestServices: true })("Producer", (it) => {
  it.effect("writes 10k records with mixed partition keys, each acknowledged with the shard it landed on", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 16 })
      const input = records(10_000, "plain")
      const results = yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({ stream: stream.streamName, serde: Serde.string })
        return yield* producer.produceChunk(input)
      }))
      assert.strictEqual(results.length, 10_000)
      const stored = yield* readAll(stream.streamName)
      assert.strictEqual(stored.length, 10_000)
      const byData = new Map(stored.map((r) => [r.data, r]))
      const map = yield* openShardMap(stream.streamName)
      input.forEach((record, i) => {
        const landed = byData.get(record.data)
        assert.isDefined(landed)
        assert.strictEqual(results[i]!.shardId, landed!.shardId)
        assert.strictEqual(results[i]!.sequenceNumber, landed!.sequenceNumber)
        assert.strictEqual(landed!.shardId, shardOfKey(map, record.partitionKey))
      })
    }).pipe(Effect.provide(direct)))

  it.effect("with aggregation, every user record is stored on the shard its partition key maps to", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 4 })
      const input = records(10_000, "agg", 100)
      const metrics = yield* Ref.make(ProducerMetrics.empty())
      const results = yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({
          stream: stream.streamName,
          serde: Serde.string,
          settings: { aggregate: true },
          onMetrics: (m) => Ref.update(metrics, (total) => ProducerMetrics.combine(total, m))
        })
        return yield* producer.produceChunk(input)
      }))
      const stored = yield* readAll(stream.streamName)
      assert.strictEqual(stored.length, 10_000)
      const map = yield* openShardMap(stream.streamName)
      const byData = new Map(stored.map((r) => [r.data, r]))
      input.forEach((record, i) => {
        const landed = byData.get(record.data)!
        assert.strictEqual(landed.partitionKey, record.partitionKey)
        assert.strictEqual(landed.shardId, shardOfKey(map, record.partitionKey))
        assert.strictEqual(results[i]!.shardId, landed.shardId)
        assert.strictEqual(results[i]!.subSequenceNumber, landed.subSequenceNumber)
      })
      const total = yield* Ref.get(metrics)
      assert.strictEqual(total.userRecordsPut, 10_000)
      assert.isAbove(ProducerMetrics.userRecordsPerKinesisRecord(total), 10)
      assert.strictEqual(total.latency.totalCount, 10_000)
      assert.strictEqual(total.attempts.totalCount, 10_000)
    }).pipe(Effect.provide(direct)))

  it.effect("an oversized record fails alone; the 499 records around it land", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 2 })
      const input = records(500, "big")
      const oversized = { partitionKey: "big-key", data: "x".repeat(1_048_577) }
      input[250] = oversized
      const outcomes = yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({ stream: stream.streamName, serde: Serde.string })
        const chunk = yield* Effect.flip(producer.produceChunk(input))
        assert.strictEqual(chunk._tag, "RecordTooLarge")
        const single = yield* Effect.exit(producer.produce(oversized))
        return { single }
      }))
      assert.isTrue(Exit.isFailure(outcomes.single))
      const stored = yield* readAll(stream.streamName)
      assert.strictEqual(stored.length, 499)
      assert.isFalse(stored.some((r) => r.partitionKey === "big-key"))
    }).pipe(Effect.provide(direct)))

  it.effect("invalid keys fail with typed errors before buffering", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 1 })
      yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({ stream: stream.streamName, serde: Serde.string })
        const empty = yield* Effect.flip(producer.produce({ partitionKey: "", data: "x" }))
        assert.instanceOf(empty, ProducerError.InvalidPartitionKey)
        const long = yield* Effect.flip(producer.produce({ partitionKey: "k".repeat(257), data: "x" }))
        assert.instanceOf(long, ProducerError.InvalidPartitionKey)
        const hash = yield* Effect.flip(
          producer.produce({ partitionKey: "k", data: "x", explicitHashKey: (1n << 128n).toString() })
        )
        assert.instanceOf(hash, ProducerError.InvalidExplicitHashKey)
        const ok = yield* producer.produce({ partitionKey: "k".repeat(256), data: "x", explicitHashKey: "0" })
        assert.strictEqual(ok.shardId, stream.shards[0]!.shardId)
        assert.strictEqual(ok.attempts, 1)
      }))
    }).pipe(Effect.provide(direct)))

  for (const aggregate of [false, true]) {
    it.effect(
      `a partition key over 256 UTF-16 code units (129 emoji) fails alone at offer; its neighbours land (aggregate: ${aggregate})`,
      () =>
        Effect.gen(function*() {
          const stream = yield* StreamFixtures.stream({ shardCount: 2 })
          const input: Array<Producer.ProducerRecord<string>> = records(1000, "emoji")
          // First, so that with aggregation it would be the aggregate's own partition key.
          input.unshift({ partitionKey: EMOJI_KEY_TOO_LONG, data: "too-long" })
          // The longest valid key, first of its aggregate too, lands like any other.
          input.push({ partitionKey: EMOJI_KEY_LONGEST, data: "longest" })
          const failures = yield* offerAndClose(stream.streamName, input, { aggregate })
          assert.deepStrictEqual(failures.map((f) => [f.record.data, f.error._tag]), [[
            "too-long",
            "InvalidPartitionKey"
          ]])
          assert.strictEqual((failures[0]!.error as ProducerError.InvalidPartitionKey).reason, "too long")
          const stored = yield* readAll(stream.streamName)
          assert.strictEqual(new Set(stored.map((r) => r.data)).size, 1001)
          assert.isFalse(stored.some((r) => r.data === "too-long"))
          assert.strictEqual(stored.find((r) => r.data === "longest")?.partitionKey, EMOJI_KEY_LONGEST)
        }).pipe(Effect.provide(direct))
    )
  }

  it.effect("record size counts the partition key in UTF-8 bytes: with a 128-emoji key (512 bytes) a record of exactly 1 MiB lands, one byte more fails alone", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 1 })
      const limit = 1_048_576
      const keyBytes = 4 * 128
      const input: Array<Producer.ProducerRecord<string>> = [
        { partitionKey: EMOJI_KEY_LONGEST, data: "a".repeat(limit - keyBytes) },
        { partitionKey: EMOJI_KEY_LONGEST, data: "b".repeat(limit - keyBytes + 1) },
        ...records(100, "size")
      ]
      const failures = yield* offerAndClose(stream.streamName, input, {})
      assert.deepStrictEqual(failures.map((f) => [f.record.data[0], f.error._tag]), [["b", "RecordTooLarge"]])
      assert.strictEqual((failures[0]!.error as ProducerError.RecordTooLarge).size, limit + 1)
      const stored = yield* readAll(stream.streamName)
      assert.strictEqual(stored.length, 101)
      assert.strictEqual(stored.filter((r) => r.data.length === limit - keyBytes).length, 1)
    }).pipe(Effect.provide(direct)))

  for (const aggregate of [false, true]) {
    it.effect(
      `a request Kinesis rejects whole for one record is split until that record fails alone; the other 1,999 land (aggregate: ${aggregate})`,
      () =>
        Effect.gen(function*() {
          const proxy = yield* FaultProxy.FaultProxy
          yield* proxy.reset
          const stream = yield* StreamFixtures.stream({ shardCount: 2 })
          const poison = new TextEncoder().encode("poison")
          // A rejection the producer's own checks do not predict.
          yield* proxy.update({
            rejectRequestsWith: (record) =>
              record.data.length === poison.length && record.data.every((byte, i) => byte === poison[i])
          })
          const input: Array<Producer.ProducerRecord<string>> = records(2000, "split")
          input[1234] = { partitionKey: "split-key-1234", data: "poison" }
          const failures = yield* offerAndClose(stream.streamName, input, {
            aggregate,
            // A split is no retry: one attempt is enough for every neighbour.
            maxAttempts: 1,
            // The halves queue behind each other and behind new requests.
            maxInFlightRequests: 1
          }).pipe(
            Effect.provide(viaProxy)
          )
          const stats = yield* proxy.stats
          yield* proxy.reset
          assert.deepStrictEqual(failures.map((f) => [f.record.data, f.error._tag]), [["poison", "RecordRejected"]])
          const error = failures[0]!.error as ProducerError.RecordRejected
          assert.strictEqual(error.code, "InvalidArgument")
          // Only the half holding the poison is rejected again: one rejection per halving of the
          // request (2,000 records at most) and of the aggregate, not one per record.
          assert.isAbove(stats.rejectedRequests, 1)
          assert.isAtMost(stats.rejectedRequests, 2 * Math.ceil(Math.log2(2000)) + 1)
          const stored = yield* readAll(stream.streamName)
          assert.strictEqual(stored.length, 1999)
          assert.strictEqual(new Set(stored.map((r) => r.data)).size, 1999)
          assert.isFalse(stored.some((r) => r.data === "poison"))
        }).pipe(Effect.provide(direct))
    )
  }

  it.effect("through 20% throttling and 2% server errors every record is acknowledged once or fails typed", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy.FaultProxy
      yield* proxy.reset
      const stream = yield* StreamFixtures.stream({ shardCount: 4 })
      yield* proxy.update({ throttleRate: 0.2, serverErrorRate: 0.01, serverErrorAfterForwardRate: 0.01 })
      const input = records(3000, "faulty")
      const outcomes = yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({
          stream: stream.streamName,
          serde: Serde.string,
          settings: {
            retryBaseDelay: "10 millis",
            retryMaxDelay: "200 millis",
            maxInFlightRequests: 4,
            // Small requests, so that a 2 % fault rate hits some of them.
            maxRecordsPerRequest: 10
          }
        })
        return yield* Effect.forEach(input, (record) => Effect.result(producer.produce(record)), {
          concurrency: "unbounded"
        })
      })).pipe(Effect.provide(viaProxy))
      yield* proxy.update({ throttleRate: 0, serverErrorRate: 0, serverErrorAfterForwardRate: 0 })
      const stats = yield* proxy.stats
      assert.isAbove(stats.throttledRecords, 0)
      assert.isAbove(stats.injectedServerErrors, 0)

      const stored = yield* readAll(stream.streamName)
      const copies = new Map<string, number>()
      for (const r of stored) copies.set(r.data, (copies.get(r.data) ?? 0) + 1)
      let acknowledged = 0
      input.forEach((record, i) => {
        const outcome = outcomes[i]!
        if (Result.isSuccess(outcome)) {
          acknowledged++
          assert.isAtLeast(copies.get(record.data) ?? 0, 1, `acknowledged ${record.data} is stored`)
        } else {
          assert.include(["PutFailed", "RecordExpired"], outcome.failure._tag)
        }
      })
      // Retries make the loss of a record to random faults vanishingly unlikely.
      assert.strictEqual(acknowledged, input.length)
      // A copy comes only from a request that was written but answered with a 5xx, and is retried
      // whole: at most one request (10 records) per injected error.
      const duplicates = stored.length - copies.size
      assert.isAtMost(duplicates, stats.injectedServerErrors * 10)
      assert.isTrue([...copies.keys()].every((data) => data.startsWith("faulty-")))
    }).pipe(Effect.provide(direct)))

  it.effect("closing with thousands of records buffered flushes them all", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 8 })
      const input = records(4000, "close")
      const scope = yield* Scope.make()
      const producer = yield* Producer.make({
        stream: stream.streamName,
        serde: Serde.string,
        settings: { maxInFlightRequests: 1, lingerTime: "10 seconds" }
      }).pipe(Scope.provide(scope))
      const pending = yield* Effect.forEach(input, (record) => producer.produceAsync(record))
      assert.isAbove(yield* producer.buffered, 1000)
      yield* Scope.close(scope, Exit.void)
      const late = yield* Effect.flip(producer.produce({ partitionKey: "late", data: "late" }))
      assert.instanceOf(late, ProducerError.ProducerClosed)
      const outcomes = yield* Effect.forEach(pending, Effect.result)
      assert.isTrue(outcomes.every(Result.isSuccess))
      const stored = yield* readAll(stream.streamName)
      assert.strictEqual(new Set(stored.map((r) => r.data)).size, 4000)
    }).pipe(Effect.provide(direct)))

  it.effect("what cannot be written by the close deadline fails with ProducerClosed", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy.FaultProxy
      yield* proxy.reset
      const stream = yield* StreamFixtures.stream({ shardCount: 2 })
      yield* proxy.update({ latency: "2 seconds" })
      const scope = yield* Scope.make()
      const errors = yield* Ref.make<Array<ProducerError.ProducerError>>([])
      const producer = yield* Producer.make({
        stream: stream.streamName,
        serde: Serde.string,
        settings: { maxInFlightRequests: 1, closeTimeout: "200 millis" },
        onError: (failure) => Ref.update(errors, (all) => [...all, failure.error])
      }).pipe(Scope.provide(scope), Effect.provide(viaProxy))
      const input = records(2000, "deadline")
      const pending = yield* Effect.forEach(input.slice(0, 1000), (record) => producer.produceAsync(record))
      yield* producer.offerAll(input.slice(1000))
      yield* Scope.close(scope, Exit.void)
      yield* proxy.update({ latency: 0 })
      const outcomes = yield* Effect.forEach(pending, Effect.result)
      for (const outcome of outcomes) {
        if (Result.isFailure(outcome)) assert.instanceOf(outcome.failure, ProducerError.ProducerClosed)
      }
      const failedAsync = outcomes.filter(Result.isFailure).length
      const offeredFailures = yield* Ref.get(errors)
      assert.isAbove(failedAsync + offeredFailures.length, 1000)
      assert.isTrue(offeredFailures.every((e) => e._tag === "ProducerClosed"))
    }).pipe(Effect.provide(direct)))

  it.effect("keeps writing through a shard split and refreshes its shard map", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 2 })
      const admin = AdminClient.fromClient(yield* Client.Client)
      const results = yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({
          stream: stream.streamName,
          serde: Serde.string,
          settings: { shardRefreshInterval: "200 millis" }
        })
        const before = yield* producer.produceChunk(records(500, "before"))
        const parent = stream.shards[0]!
        const middle = (BigInt(parent.startingHashKey) + BigInt(parent.endingHashKey)) / 2n
        yield* admin.splitShard(stream.streamName, parent.shardId, middle)
        const after = yield* producer.produceChunk(records(1000, "after"))
        // Records landing on the children make the producer list the shards again.
        const map = yield* producer.shardMap.pipe(
          Effect.filterOrFail((map) => !ShardMap.has(map, parent.shardId)),
          Effect.retry({ schedule: Schedule.spaced("50 millis"), times: 200 })
        )
        const later = yield* producer.produceChunk(records(500, "later"))
        return { before, after, later, map, parent: parent.shardId }
      }))
      assert.strictEqual(ShardMap.size(results.map), 3)
      assert.isFalse(ShardMap.has(results.map, results.parent))
      const stored = yield* readAll(stream.streamName)
      assert.strictEqual(new Set(stored.map((r) => r.data)).size, 2000)
      for (const result of results.later) {
        assert.isTrue(ShardMap.has(results.map, result.shardId))
        assert.strictEqual(result.attempts, 1)
      }
    }).pipe(Effect.provide(direct)))

  it.effect("two producers on one shard settle near its limit without runaway throttling", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy.FaultProxy
      yield* proxy.reset
      const stream = yield* StreamFixtures.stream({ shardCount: 1 })
      const limit = 256 * 1024
      yield* proxy.update({ shardLimits: true, shardBytesPerSecond: limit })
      const run = (name: string) =>
        Effect.scoped(Effect.gen(function*() {
          const producer = yield* Producer.make({
            stream: stream.streamName,
            serde: Serde.string,
            settings: { aggregate: true, shardBytesPerSecond: limit }
          })
          return yield* producer.produceChunk(records(800, name, 1000))
        })).pipe(Effect.provide(viaProxy))
      const [a, b] = yield* Effect.all([run("p1"), run("p2")], { concurrency: 2 })
      yield* proxy.update({ shardLimits: false })
      assert.strictEqual(a.length + b.length, 1600)
      const stats = yield* proxy.stats
      const shard = Object.values(stats.shards[stream.streamName] ?? {})[0]!
      // ~1.6 MB through a 256 KiB/s shard: a few seconds of contention, a small share throttled.
      assert.isAbove(shard.forwardedBytes, 1_600_000)
      assert.isBelow(shard.throttledRecords / (shard.forwardedRecords + shard.throttledRecords), 0.25)
      const stored = yield* readAll(stream.streamName)
      assert.strictEqual(new Set(stored.map((r) => r.data)).size, 1600)
    }).pipe(Effect.provide(direct)))

  it.effect("a shard paced by its rate limit gets its records in requests of many, not one per token", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 1 })
      const metrics = yield* Ref.make(ProducerMetrics.empty())
      const results = yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({
          stream: stream.streamName,
          serde: Serde.string,
          // A small burst: after the first few records the bucket frees about one per millisecond.
          settings: { shardRecordsPerSecond: 1000, shardBurst: "10 millis" },
          onMetrics: (m) => Ref.update(metrics, (total) => ProducerMetrics.combine(total, m))
        })
        return yield* producer.produceChunk(records(1500, "paced"))
      }))
      assert.strictEqual(results.length, 1500)
      const m = yield* Ref.get(metrics)
      assert.strictEqual(m.userRecordsPut, 1500)
      // About 1.5 s at the limit; a request per freed token would be hundreds of requests.
      assert.isBelow(m.requests, 150)
    }).pipe(Effect.provide(direct)))

  it.effect("a record that stays throttled past its time to live fails with RecordExpired", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy.FaultProxy
      yield* proxy.reset
      const stream = yield* StreamFixtures.stream({ shardCount: 1 })
      yield* proxy.update({ throttleRate: 1 })
      const error = yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({
          stream: stream.streamName,
          serde: Serde.string,
          settings: { recordTtl: "500 millis", retryBaseDelay: "20 millis" }
        })
        return yield* Effect.flip(producer.produce({ partitionKey: "k", data: "never" }))
      })).pipe(Effect.provide(viaProxy), Effect.ensuring(proxy.update({ throttleRate: 0 })))
      assert.instanceOf(error, ProducerError.RecordExpired)
      assert.isAtLeast((error as ProducerError.RecordExpired).attempts, 1)
      assert.strictEqual((error as ProducerError.RecordExpired).lastError, "ProvisionedThroughputExceededException")
    }).pipe(Effect.provide(direct)))

  it.effect("a record throttled on every attempt fails with PutFailed after exactly maxAttempts attempts", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy.FaultProxy
      yield* proxy.reset
      const stream = yield* StreamFixtures.stream({ shardCount: 1 })
      yield* proxy.update({ throttleRate: 1 })
      const started = Date.now()
      const error = yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({
          stream: stream.streamName,
          serde: Serde.string,
          settings: { maxAttempts: 3, recordTtl: "1 minute", retryBaseDelay: "200 millis", retryMaxDelay: "200 millis" }
        })
        return yield* Effect.flip(producer.produce({ partitionKey: "k", data: "never" }))
      })).pipe(Effect.provide(viaProxy), Effect.ensuring(proxy.update({ throttleRate: 0 })))
      assert.instanceOf(error, ProducerError.PutFailed)
      assert.strictEqual((error as ProducerError.PutFailed).attempts, 3)
      assert.strictEqual((error as ProducerError.PutFailed).retryable, true)
      assert.strictEqual((error as ProducerError.PutFailed).code, "ProvisionedThroughputExceededException")
      // Two waits between three attempts, each at most the 200 ms cap (full jitter: anywhere below it).
      assert.isAtMost(Date.now() - started, 5_000)
      assert.strictEqual((yield* proxy.stats).throttledRecords, 3)
    }).pipe(Effect.provide(direct)))

  it.effect("an error a retry cannot fix fails the record at once", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 1 })
      const error = yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({ stream: stream.streamName, serde: Serde.string })
        yield* producer.produce({ partitionKey: "k", data: "before" })
        yield* StreamFixtures.deleteStream(stream.streamName)
        return yield* Effect.flip(producer.produce({ partitionKey: "k", data: "after" }))
      }))
      assert.instanceOf(error, ProducerError.PutFailed)
      assert.strictEqual((error as ProducerError.PutFailed).retryable, false)
      assert.strictEqual((error as ProducerError.PutFailed).attempts, 1)
    }).pipe(Effect.provide(direct)))

  it.effect("a full buffer rejects with BufferFull when set to fail", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 1 })
      yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({
          stream: stream.streamName,
          serde: Serde.string,
          settings: { bufferSize: 10, whenBufferFull: "fail", lingerTime: "1 second", maxInFlightRequests: 1 }
        })
        const accepted = yield* Effect.forEach(records(10, "buf"), (r) => producer.produceAsync(r))
        const rejected = yield* Effect.flip(producer.produceAsync({ partitionKey: "k", data: "x" }))
        assert.instanceOf(rejected, ProducerError.BufferFull)
        const results = yield* Effect.all(accepted)
        assert.strictEqual(results.length, 10)
      }))
    }).pipe(Effect.provide(direct)))

  it.effect("the buffer is bounded in bytes too: full by bytes it rejects when set to fail, and waiting offers resume as bytes free up", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 1 })
      // 300,000 data bytes plus a 9-byte key: three records fit in 1 MiB, a fourth does not.
      const big = (i: number) => ({ partitionKey: `bytes-k-${i % 10}`, data: `${i}`.padEnd(300_000, ".") })
      yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({
          stream: stream.streamName,
          serde: Serde.string,
          settings: {
            bufferBytes: 1_048_576,
            whenBufferFull: "fail",
            lingerTime: "1 second",
            maxInFlightRequests: 1
          }
        })
        const accepted = yield* Effect.forEach([0, 1, 2], (i) => producer.produceAsync(big(i)))
        const rejected = yield* Effect.flip(producer.produceAsync(big(3)))
        assert.instanceOf(rejected, ProducerError.BufferFull)
        assert.strictEqual((rejected as ProducerError.BufferFull).capacityBytes, 1_048_576)
        assert.strictEqual((yield* Effect.all(accepted)).length, 3)
      }))
      const results = yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({
          stream: stream.streamName,
          serde: Serde.string,
          settings: { bufferBytes: 1_048_576 }
        })
        return yield* producer.produceChunk(Array.from({ length: 12 }, (_, i) => big(100 + i)))
      }))
      assert.strictEqual(results.length, 12)
      const stored = yield* readAll(stream.streamName)
      assert.strictEqual(stored.length, 15)
    }).pipe(Effect.provide(direct)))

  it.effect("an aggregating request carries at most a quarter of the buffer, so that the next fills while it is in flight", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 1 })
      const metrics = yield* Ref.make(ProducerMetrics.empty())
      yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({
          stream: stream.streamName,
          serde: Serde.string,
          settings: { aggregate: true, bufferSize: 400, rateLimit: false },
          onMetrics: (m) => Ref.update(metrics, (total) => ProducerMetrics.combine(total, m))
        })
        yield* producer.produceChunk(records(2000, "quarter"))
      }))
      const m = yield* Ref.get(metrics)
      assert.strictEqual(m.userRecordsPut, 2000)
      // 2000 small records fit in one aggregate; a request may take 100 of them.
      assert.isAtLeast(m.requests, 20)
    }).pipe(Effect.provide(direct)))

  it.effect("a full request goes out at once, without waiting out the linger time, also when the buffer caps it", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 1 })
      const results = yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({
          stream: stream.streamName,
          serde: Serde.string,
          // 400 records never make a 500-record request; a quarter of the buffer (100) is full.
          settings: { bufferSize: 400, lingerTime: "1 minute", rateLimit: false }
        })
        return yield* producer.produceChunk(records(400, "linger")).pipe(Effect.timeout("20 seconds"))
      }))
      assert.strictEqual(results.length, 400)
    }).pipe(Effect.provide(direct)))

  it.effect("a lone record waits out the linger time to fill a batch, then is sent", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 1 })
      const started = performance.now()
      yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({
          stream: stream.streamName,
          serde: Serde.string,
          settings: { lingerTime: "2 seconds" }
        })
        yield* producer.produce({ partitionKey: "k", data: "lingered" })
      }))
      assert.isAtLeast(performance.now() - started, 1900)
    }).pipe(Effect.provide(direct)))

  it.effect("a stream sink produces every element", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 2 })
      yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({
          stream: stream.streamName,
          serde: Serde.string,
          settings: { bufferSize: 100 }
        })
        yield* Stream.fromIterable(records(1000, "sink")).pipe(Stream.rechunk(64), Stream.run(producer.sink))
        assert.strictEqual(yield* producer.buffered, 0)
      }))
      const stored = yield* readAll(stream.streamName)
      assert.strictEqual(new Set(stored.map((r) => r.data)).size, 1000)
    }).pipe(Effect.provide(direct)))
})
