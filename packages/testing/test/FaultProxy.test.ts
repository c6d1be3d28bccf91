import {
  GetRecordsCommand,
  GetShardIteratorCommand,
  KinesisClient,
  ListShardsCommand,
  PutRecordCommand,
  PutRecordsCommand,
  type PutRecordsRequestEntry,
  RegisterStreamConsumerCommand,
  SplitShardCommand,
  SubscribeToShardCommand,
  type SubscribeToShardEvent
} from "@aws-sdk/client-kinesis"
import { Aggregation } from "@effect-kinesis/core"
import type { Emulator } from "@effect-kinesis/testing"
import { FaultProxy, KinesisEmulator, StreamFixtures } from "@effect-kinesis/testing"
import { assert, layer } from "@effect/vitest"
import { NodeHttpHandler } from "@smithy/node-http-handler"
import { Effect, Layer } from "effect"
import { vi } from "vitest"

// Emulators start in about a second, more on a loaded machine; vitest's 5 s default leaves too little room.
vi.setConfig({ testTimeout: 30_000 })

const TestLayer = FaultProxy.layer().pipe(Layer.provideMerge(KinesisEmulator.layer()))

const client = (config: Emulator.EmulatorClientConfig) =>
  Effect.acquireRelease(
    Effect.sync(() => new KinesisClient({ ...config, requestHandler: new NodeHttpHandler(), maxAttempts: 1 })),
    (client) => Effect.sync(() => client.destroy())
  )

/** A client through the proxy and one straight to the emulator, with the proxy reset to no faults. */
const clients = Effect.gen(function*() {
  const proxy = yield* FaultProxy.FaultProxy
  const emulator = yield* KinesisEmulator.KinesisEmulator
  yield* proxy.reset
  return { proxy, viaProxy: yield* client(proxy.clientConfig), direct: yield* client(emulator.clientConfig) }
})

const send = <A>(f: () => Promise<A>) => Effect.promise(f)
const attempt = <A>(f: () => Promise<A>) =>
  Effect.promise(() =>
    f().then(() => undefined, (error: unknown) => error as Error & { $metadata?: { httpStatusCode?: number } })
  )

const records = (count: number, prefix = "r"): Array<PutRecordsRequestEntry> =>
  Array.from({ length: count }, (_, i) => ({ PartitionKey: `${prefix}-${i}`, Data: Buffer.from(`${prefix}-${i}`) }))

const readAll = (direct: KinesisClient, streamName: string, shardId: string) =>
  Effect.gen(function*() {
    const { ShardIterator } = yield* send(() =>
      direct.send(
        new GetShardIteratorCommand({ StreamName: streamName, ShardId: shardId, ShardIteratorType: "TRIM_HORIZON" })
      )
    )
    const out = yield* send(() => direct.send(new GetRecordsCommand({ ShardIterator, Limit: 10_000 })))
    return (out.Records ?? []).map((record) => Buffer.from(record.Data ?? []).toString())
  })

const throttleMessage = (shardId: string, streamName: string) =>
  `Rate exceeded for shard ${shardId} in stream ${streamName} under account 000000000000.`

layer(TestLayer)("FaultProxy", (it) => {
  it.effect("passes unfaulted requests through unchanged", () =>
    Effect.gen(function*() {
      const { proxy, viaProxy, direct } = yield* clients
      const stream = yield* StreamFixtures.stream({ shardCount: 2 })
      const put = yield* send(() =>
        viaProxy.send(new PutRecordsCommand({ StreamName: stream.streamName, Records: records(20) }))
      )
      assert.strictEqual(put.FailedRecordCount, 0)
      assert.strictEqual(put.Records?.length, 20)
      const shardOf = new Map(put.Records?.map((record, i) => [`r-${i}`, record.ShardId]))
      const readBack = new Map<string, string | undefined>()
      for (const shard of stream.shards) {
        for (const data of yield* readAll(direct, stream.streamName, shard.shardId)) readBack.set(data, shard.shardId)
      }
      assert.deepStrictEqual(readBack, shardOf)

      const listedViaProxy = yield* send(() => viaProxy.send(new ListShardsCommand({ StreamName: stream.streamName })))
      const listedDirect = yield* send(() => direct.send(new ListShardsCommand({ StreamName: stream.streamName })))
      assert.deepStrictEqual(listedViaProxy.Shards, listedDirect.Shards)

      const stats = yield* proxy.stats
      assert.strictEqual(stats.throttledRecords, 0)
      assert.strictEqual(stats.injectedServerErrors, 0)
      const perShard = stats.shards[stream.streamName] ?? {}
      const forwarded = Object.values(perShard).reduce((sum, shard) => sum + shard.forwardedRecords, 0)
      assert.strictEqual(forwarded, 20)
    }))

  it.effect("enforces 1000 records/s per shard: a 3000-record burst is mostly throttled, like Kinesis answers", () =>
    Effect.gen(function*() {
      const { proxy, viaProxy } = yield* clients
      yield* proxy.update({ shardLimits: true })
      const stream = yield* StreamFixtures.stream()
      const shardId = stream.shards[0]!.shardId
      const started = performance.now()
      const responses = yield* Effect.forEach(
        Array.from({ length: 6 }, (_, batch) => records(500, `b${batch}`)),
        (batch) => send(() => viaProxy.send(new PutRecordsCommand({ StreamName: stream.streamName, Records: batch }))),
        { concurrency: "unbounded" }
      )
      const elapsedSeconds = (performance.now() - started) / 1000

      const entries = responses.flatMap((response) => response.Records ?? [])
      assert.strictEqual(entries.length, 3000)
      for (const response of responses) {
        const failed = (response.Records ?? []).filter((entry) => entry.ErrorCode !== undefined).length
        assert.strictEqual(response.FailedRecordCount, failed)
      }
      const throttled = entries.filter((entry) => entry.ErrorCode !== undefined)
      for (const entry of throttled) {
        assert.strictEqual(entry.ErrorCode, "ProvisionedThroughputExceededException")
        assert.strictEqual(entry.ErrorMessage, throttleMessage(shardId, stream.streamName))
      }
      const accepted = entries.filter((entry) => entry.ErrorCode === undefined)
      for (const entry of accepted) {
        assert.strictEqual(entry.ShardId, shardId)
        assert.isString(entry.SequenceNumber)
      }
      // One second's burst is always available; beyond that only what the elapsed time refilled.
      assert.isAtLeast(accepted.length, 1000)
      assert.isAtMost(accepted.length, 1000 + Math.ceil(1000 * elapsedSeconds))

      const stats = yield* proxy.stats
      assert.strictEqual(stats.throttledRecords, throttled.length)
      assert.strictEqual(stats.shards[stream.streamName]?.[shardId]?.forwardedRecords, accepted.length)
    }))

  it.effect("enforces 1 MiB/s per shard", () =>
    Effect.gen(function*() {
      const { proxy, viaProxy } = yield* clients
      yield* proxy.update({ shardLimits: true })
      const stream = yield* StreamFixtures.stream()
      // 8 records of ~256 KiB: at most 4 fit in one second's byte budget.
      const big = Buffer.alloc(256 * 1024 - 8, 1)
      const response = yield* send(() =>
        viaProxy.send(
          new PutRecordsCommand({
            StreamName: stream.streamName,
            Records: Array.from({ length: 8 }, (_, i) => ({ PartitionKey: `k${i}`, Data: big }))
          })
        )
      )
      const accepted = (response.Records ?? []).filter((entry) => entry.ErrorCode === undefined).length
      assert.isAtLeast(accepted, 4)
      assert.isBelow(accepted, 8)
      assert.strictEqual(response.FailedRecordCount, 8 - accepted)
    }))

  it.effect("limits each shard separately, routing by explicit hash key", () =>
    Effect.gen(function*() {
      const { proxy, viaProxy } = yield* clients
      yield* proxy.update({ shardLimits: true, shardRecordsPerSecond: 100 })
      const stream = yield* StreamFixtures.stream({ shardCount: 2 })
      const [low, high] = [...stream.shards].sort((
        a,
        b
      ) => (BigInt(a.startingHashKey) < BigInt(b.startingHashKey) ? -1 : 1))
      const entries = (hashKey: string, count: number) =>
        Array.from(
          { length: count },
          (_, i) => ({ PartitionKey: `k${i}`, ExplicitHashKey: hashKey, Data: Buffer.from("x") })
        )
      const response = yield* send(() =>
        viaProxy.send(
          new PutRecordsCommand({
            StreamName: stream.streamName,
            Records: [...entries(low!.startingHashKey, 300), ...entries(high!.endingHashKey, 50)]
          })
        )
      )
      const results = response.Records ?? []
      const lowThrottled = results.slice(0, 300).filter((entry) => entry.ErrorCode !== undefined)
      const highThrottled = results.slice(300).filter((entry) => entry.ErrorCode !== undefined)
      assert.strictEqual(highThrottled.length, 0)
      assert.isAtLeast(lowThrottled.length, 150)
      for (const entry of lowThrottled) {
        assert.strictEqual(entry.ErrorMessage, throttleMessage(low!.shardId, stream.streamName))
      }
      assert.strictEqual(response.FailedRecordCount, lowThrottled.length)
    }))

  it.effect("after a reshard, limits follow the new shards", () =>
    Effect.gen(function*() {
      const { proxy, viaProxy, direct } = yield* clients
      yield* proxy.update({ shardLimits: true, shardRecordsPerSecond: 10 })
      const stream = yield* StreamFixtures.stream()
      const parent = stream.shards[0]!.shardId
      const putLowKeys = () =>
        send(() =>
          viaProxy.send(
            new PutRecordsCommand({
              StreamName: stream.streamName,
              Records: Array.from(
                { length: 50 },
                (_, i) => ({ PartitionKey: `k${i}`, ExplicitHashKey: "0", Data: Buffer.from("x") })
              )
            })
          )
        )
      const throttledShards = (
        response: { readonly Records?: ReadonlyArray<{ readonly ErrorMessage?: string | undefined }> | undefined }
      ) => new Set(response.Records?.flatMap((entry) => (entry.ErrorMessage === undefined ? [] : [entry.ErrorMessage])))

      assert.deepStrictEqual(
        throttledShards(yield* putLowKeys()),
        new Set([throttleMessage(parent, stream.streamName)])
      )
      yield* send(() =>
        direct.send(
          new SplitShardCommand({
            StreamName: stream.streamName,
            ShardToSplit: parent,
            NewStartingHashKey: (2n ** 127n).toString()
          })
        )
      )
      const after = yield* StreamFixtures.waitForActive(stream.streamName)
      const child = after.shards.find((shard) => shard.startingHashKey === "0")!.shardId
      // The first write after the split still goes by the old map; the emulator's answer shows the record landed
      // elsewhere, and the next write is routed by a fresh listing.
      yield* putLowKeys()
      assert.deepStrictEqual(throttledShards(yield* putLowKeys()), new Set([throttleMessage(child, stream.streamName)]))
    }))

  it.effect("relays the emulator's own errors", () =>
    Effect.gen(function*() {
      const { proxy, viaProxy } = yield* clients
      yield* proxy.update({ shardLimits: true })
      const error = yield* attempt(() =>
        viaProxy.send(new PutRecordsCommand({ StreamName: "no-such-stream", Records: records(2) }))
      )
      assert.strictEqual(error?.name, "ResourceNotFoundException")
    }))

  it.effect("rejects a request as a whole when one of its user records matches, aggregated ones unpacked", () =>
    Effect.gen(function*() {
      const { proxy, viaProxy, direct } = yield* clients
      const stream = yield* StreamFixtures.stream()
      const shardId = stream.shards[0]!.shardId
      yield* proxy.update({ rejectRequestsWith: (record) => Buffer.from(record.data).toString() === "poison" })
      const plain = records(5)
      plain[3] = { PartitionKey: "p", Data: Buffer.from("poison") }
      const whole = yield* attempt(() =>
        viaProxy.send(new PutRecordsCommand({ StreamName: stream.streamName, Records: plain }))
      )
      assert.strictEqual(whole?.name, "InvalidArgumentException")
      assert.strictEqual(whole?.$metadata?.httpStatusCode, 400)

      const aggregator = Aggregation.makeAggregator({ explicitHashKey: "0" })
      for (const data of ["a", "poison", "b"]) aggregator.add({ partitionKey: "k", data: Buffer.from(data) })
      const aggregate = aggregator.build()!
      const inAggregate = yield* attempt(() =>
        viaProxy.send(
          new PutRecordsCommand({
            StreamName: stream.streamName,
            Records: [{ PartitionKey: aggregate.partitionKey, ExplicitHashKey: "0", Data: aggregate.data }]
          })
        )
      )
      assert.strictEqual(inAggregate?.name, "InvalidArgumentException")
      const single = yield* attempt(() =>
        viaProxy.send(
          new PutRecordCommand({ StreamName: stream.streamName, PartitionKey: "k", Data: Buffer.from("poison") })
        )
      )
      assert.strictEqual(single?.name, "InvalidArgumentException")
      assert.deepStrictEqual(yield* readAll(direct, stream.streamName, shardId), [])
      assert.strictEqual((yield* proxy.stats).rejectedRequests, 3)

      // Requests without a match pass.
      yield* send(() => viaProxy.send(new PutRecordsCommand({ StreamName: stream.streamName, Records: records(2) })))
      assert.deepStrictEqual(yield* readAll(direct, stream.streamName, shardId), ["r-0", "r-1"])
    }))

  it.effect("random throttling of every record answers without writing anything", () =>
    Effect.gen(function*() {
      const { proxy, viaProxy, direct } = yield* clients
      yield* proxy.update({ throttleRate: 1 })
      const stream = yield* StreamFixtures.stream()
      const shardId = stream.shards[0]!.shardId
      const response = yield* send(() =>
        viaProxy.send(new PutRecordsCommand({ StreamName: stream.streamName, Records: records(10) }))
      )
      assert.strictEqual(response.FailedRecordCount, 10)
      assert.deepStrictEqual(
        response.Records?.map((entry) => [entry.ErrorCode, entry.ErrorMessage]),
        Array.from({ length: 10 }, () => [
          "ProvisionedThroughputExceededException",
          throttleMessage(shardId, stream.streamName)
        ])
      )
      assert.deepStrictEqual(yield* readAll(direct, stream.streamName, shardId), [])

      const single = yield* attempt(() =>
        viaProxy.send(
          new PutRecordCommand({ StreamName: stream.streamName, PartitionKey: "k", Data: Buffer.from("x") })
        )
      )
      assert.strictEqual(single?.name, "ProvisionedThroughputExceededException")
      assert.strictEqual(single?.message, throttleMessage(shardId, stream.streamName))
      assert.strictEqual(single?.$metadata?.httpStatusCode, 400)
      assert.deepStrictEqual(yield* readAll(direct, stream.streamName, shardId), [])
    }))

  it.effect("partial throttling keeps the other records at their positions", () =>
    Effect.gen(function*() {
      const { proxy, viaProxy, direct } = yield* clients
      yield* proxy.update({ throttleRate: 0.5 })
      const stream = yield* StreamFixtures.stream()
      const shardId = stream.shards[0]!.shardId
      const response = yield* send(() =>
        viaProxy.send(new PutRecordsCommand({ StreamName: stream.streamName, Records: records(200) }))
      )
      const written = (response.Records ?? []).flatMap((entry, i) => (entry.ErrorCode === undefined ? [`r-${i}`] : []))
      assert.strictEqual(response.FailedRecordCount, 200 - written.length)
      assert.deepStrictEqual(yield* readAll(direct, stream.streamName, shardId), written)
    }))

  it.effect("server errors before forwarding reach the SDK and write nothing", () =>
    Effect.gen(function*() {
      const { proxy, viaProxy, direct } = yield* clients
      const stream = yield* StreamFixtures.stream()
      yield* proxy.update({ serverErrorRate: 1 })
      const put = () =>
        viaProxy.send(
          new PutRecordCommand({ StreamName: stream.streamName, PartitionKey: "k", Data: Buffer.from("x") })
        )
      const internal = yield* attempt(put)
      assert.strictEqual(internal?.name, "InternalFailure")
      assert.strictEqual(internal?.$metadata?.httpStatusCode, 500)
      yield* proxy.update({ serverError: "ServiceUnavailable" })
      const unavailable = yield* attempt(put)
      assert.strictEqual(unavailable?.name, "ServiceUnavailable")
      assert.strictEqual(unavailable?.$metadata?.httpStatusCode, 503)
      assert.deepStrictEqual(yield* readAll(direct, stream.streamName, stream.shards[0]!.shardId), [])
      assert.strictEqual((yield* proxy.stats).injectedServerErrors, 2)
    }))

  it.effect("server errors after forwarding write the record although the SDK sees a failure", () =>
    Effect.gen(function*() {
      const { proxy, viaProxy, direct } = yield* clients
      const stream = yield* StreamFixtures.stream()
      yield* proxy.update({ serverErrorAfterForwardRate: 1 })
      const error = yield* attempt(() =>
        viaProxy.send(
          new PutRecordsCommand({
            StreamName: stream.streamName,
            Records: [{ PartitionKey: "k", Data: Buffer.from("dup") }]
          })
        )
      )
      assert.strictEqual(error?.name, "InternalFailure")
      assert.deepStrictEqual(yield* readAll(direct, stream.streamName, stream.shards[0]!.shardId), ["dup"])
    }))

  it.effect("faults apply only to the selected operations", () =>
    Effect.gen(function*() {
      const { proxy, viaProxy } = yield* clients
      const stream = yield* StreamFixtures.stream()
      yield* proxy.update({ serverErrorRate: 1, faultOperations: ["PutRecords"] })
      const listed = yield* send(() => viaProxy.send(new ListShardsCommand({ StreamName: stream.streamName })))
      assert.strictEqual(listed.Shards?.length, 1)
      const error = yield* attempt(() =>
        viaProxy.send(new PutRecordsCommand({ StreamName: stream.streamName, Records: records(1) }))
      )
      assert.strictEqual(error?.name, "InternalFailure")
    }))

  it.effect("dropped connections fail the call without an answer", () =>
    Effect.gen(function*() {
      const { proxy, viaProxy, direct } = yield* clients
      const stream = yield* StreamFixtures.stream()
      yield* proxy.update({ dropRate: 1 })
      const error = yield* attempt(() =>
        viaProxy.send(new PutRecordsCommand({ StreamName: stream.streamName, Records: records(3) }))
      )
      assert.isDefined(error)
      assert.isUndefined(error?.$metadata?.httpStatusCode)
      assert.strictEqual((yield* proxy.stats).droppedConnections, 1)
      assert.deepStrictEqual(yield* readAll(direct, stream.streamName, stream.shards[0]!.shardId), [])
    }))

  it.effect("connections dropped after forwarding leave the write done", () =>
    Effect.gen(function*() {
      const { proxy, viaProxy, direct } = yield* clients
      const stream = yield* StreamFixtures.stream()
      yield* proxy.update({ dropAfterForwardRate: 1 })
      const error = yield* attempt(() =>
        viaProxy.send(
          new PutRecordsCommand({
            StreamName: stream.streamName,
            Records: [{ PartitionKey: "k", Data: Buffer.from("lost ack") }]
          })
        )
      )
      assert.isDefined(error)
      assert.isUndefined(error?.$metadata?.httpStatusCode)
      assert.deepStrictEqual(yield* readAll(direct, stream.streamName, stream.shards[0]!.shardId), ["lost ack"])
    }))

  it.effect("throttles GetRecords", () =>
    Effect.gen(function*() {
      const { proxy, viaProxy } = yield* clients
      const stream = yield* StreamFixtures.stream()
      const { ShardIterator } = yield* send(() =>
        viaProxy.send(
          new GetShardIteratorCommand({
            StreamName: stream.streamName,
            ShardId: stream.shards[0]!.shardId,
            ShardIteratorType: "TRIM_HORIZON"
          })
        )
      )
      yield* proxy.update({ getRecordsThrottleRate: 1 })
      const error = yield* attempt(() => viaProxy.send(new GetRecordsCommand({ ShardIterator })))
      assert.strictEqual(error?.name, "ProvisionedThroughputExceededException")
      assert.strictEqual((yield* proxy.stats).throttledGetRecords, 1)
    }))

  it.effect("streams SubscribeToShard events through, and can stall a subscription", () =>
    Effect.gen(function*() {
      const { proxy, viaProxy, direct } = yield* clients
      // Two shards: one subscription each, as a consumer may not re-subscribe to a shard within 5 seconds.
      const stream = yield* StreamFixtures.stream({ shardCount: 2 })
      const { Consumer } = yield* send(() =>
        direct.send(new RegisterStreamConsumerCommand({ StreamARN: stream.streamArn, ConsumerName: "efo" }))
      )
      const put = yield* send(() =>
        direct.send(new PutRecordsCommand({ StreamName: stream.streamName, Records: records(6) }))
      )
      // The consumer is ACTIVE after the emulator's transition duration.
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 300)))
      const subscribe = (shardId: string, abortSignal: AbortSignal = new AbortController().signal) =>
        viaProxy.send(
          new SubscribeToShardCommand({
            ConsumerARN: Consumer?.ConsumerARN,
            ShardId: shardId,
            StartingPosition: { Type: "TRIM_HORIZON" }
          }),
          { abortSignal }
        )

      const first = stream.shards[0]!.shardId
      const event: SubscribeToShardEvent | undefined = yield* send(async () => {
        const out = await subscribe(first)
        for await (const event of out.EventStream ?? []) {
          if (event.SubscribeToShardEvent !== undefined) return event.SubscribeToShardEvent
        }
        return undefined
      })
      assert.deepStrictEqual(
        event?.Records?.map((record) => Buffer.from(record.Data ?? []).toString()),
        put.Records?.flatMap((entry, i) => (entry.ShardId === first ? [`r-${i}`] : []))
      )

      yield* proxy.update({ stallSubscriptionsAfterEvents: 1 })
      const abort = new AbortController()
      const seen: Array<SubscribeToShardEvent> = []
      const reading = (async () => {
        const out = await subscribe(stream.shards[1]!.shardId, abort.signal)
        for await (const event of out.EventStream ?? []) {
          if (event.SubscribeToShardEvent !== undefined) seen.push(event.SubscribeToShardEvent)
        }
      })().catch(() => undefined)
      // The emulator sends about one event per second; wait until the proxy has held one back.
      yield* Effect.promise(async () => {
        const deadline = Date.now() + 10_000
        while (Date.now() < deadline && (await Effect.runPromise(proxy.stats)).stalledSubscriptions === 0) {
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
      })
      assert.strictEqual((yield* proxy.stats).stalledSubscriptions, 1)
      assert.strictEqual(seen.length, 1)
      abort.abort()
      yield* Effect.promise(() => reading)
    }))
})
