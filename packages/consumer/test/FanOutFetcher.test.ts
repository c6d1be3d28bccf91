import type { _Record, StartingPosition, SubscribeToShardEvent } from "@aws-sdk/client-kinesis"
import { EnhancedFanOut } from "@effect-kinesis/consumer"
import { AdminClient, Client, KinesisError } from "@effect-kinesis/core"
import { FaultProxy, StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Schedule, Stream } from "effect"
import { eventually, KinesisLive, put } from "./fixtures.ts"

const ProxyLive = Layer.provideMerge(FaultProxy.layer(), KinesisLive)

const settings: EnhancedFanOut.Settings = {
  stallTimeout: "3 seconds",
  resourceInUseDelay: "500 millis",
  shardEndCheckInterval: "1 second",
  retrySchedule: Schedule.spaced("200 millis"),
  registrationPollInterval: "100 millis"
}
const decoder = new TextDecoder()

interface Reading {
  readonly records: Array<_Record>
  readonly batches: Array<EnhancedFanOut.ShardBatch>
  readonly data: () => Array<string>
  readonly fiber: Fiber.Fiber<void, KinesisError.KinesisError>
}

// Reads one shard in the background, recording what it delivers.
const read = (
  stream: string,
  consumerARN: string,
  shardId: string,
  startingPosition: EnhancedFanOut.StartingPosition = "TRIM_HORIZON"
) =>
  Effect.gen(function*() {
    const records: Array<_Record> = []
    const batches: Array<EnhancedFanOut.ShardBatch> = []
    const fiber = yield* EnhancedFanOut.readShard({ stream, consumerARN, shardId, startingPosition, settings }).pipe(
      Stream.runForEach((batch) =>
        Effect.sync(() => {
          batches.push(batch)
          records.push(...batch.records)
        })
      ),
      Effect.forkScoped
    )
    const reading: Reading = {
      records,
      batches,
      data: () => records.map((r) => decoder.decode(r.Data!)),
      fiber
    }
    return reading
  })

const numbered = (prefix: string, from: number, count: number) =>
  Array.from({ length: count }, (_, i) => ({ partitionKey: "k", data: `${prefix}${from + i}` }))

layer(ProxyLive, { excludeTestServices: true, timeout: "60 seconds" })("Enhanced fan-out fetcher", (it) => {
  describe("registration", () => {
    it.effect("workers of one application registering at once share one ACTIVE stream consumer; another application gets its own", () =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const registered = yield* Effect.forEach(
          [1, 2, 3, 4],
          () => EnhancedFanOut.registerStreamConsumer(streamName, "billing", settings),
          { concurrency: "unbounded" }
        )
        expect(new Set(registered.map((c) => c.ConsumerARN)).size).toBe(1)
        expect(registered.every((c) => c.ConsumerStatus === "ACTIVE")).toBe(true)
        // A worker starting later finds it.
        const later = yield* EnhancedFanOut.registerStreamConsumer(streamName, "billing", settings)
        expect(later.ConsumerARN).toBe(registered[0]!.ConsumerARN)

        const other = yield* EnhancedFanOut.registerStreamConsumer(streamName, "audit", settings)
        expect(other.ConsumerARN).not.toBe(registered[0]!.ConsumerARN)
        const consumers = yield* Stream.runCollect(client.listStreamConsumers(streamName))
        expect(consumers.map((c) => c.ConsumerName).sort()).toEqual(["audit", "billing"])
      }))
  })

  describe("fetching", () => {
    it.effect("delivers a shard's records in order, starts at a checkpoint's own record, and ends a closed shard with its children", () =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const admin = yield* AdminClient.AdminClient
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const parent = shards[0]!.shardId
        const consumer = yield* EnhancedFanOut.registerStreamConsumer(streamName, "app", settings)
        yield* put(streamName, numbered("r", 0, 20))

        const all = yield* read(streamName, consumer.ConsumerARN!, parent)
        yield* eventually(Effect.sync(() => all.records.length >= 20), "20 seconds", "20 records")
        expect(all.data()).toEqual(numbered("r", 0, 20).map((r) => r.data))
        yield* put(streamName, numbered("r", 20, 10))
        yield* eventually(Effect.sync(() => all.records.length >= 30), "20 seconds", "10 more records")
        expect(all.data()).toEqual(numbered("r", 0, 30).map((r) => r.data))

        yield* admin.splitShard(streamName, parent)
        const exit = yield* Fiber.await(all.fiber).pipe(Effect.timeout("20 seconds"))
        expect(Exit.isSuccess(exit)).toBe(true)
        const children = (yield* Stream.runCollect(client.listShards(streamName)))
          .filter((s) => s.ParentShardId === parent)
          .map((s) => s.ShardId)
          .sort()
        expect(children).toHaveLength(2)
        const last = all.batches.at(-1)!
        expect(last.shardEnd?.childShards.map((c) => c.ShardId).sort()).toEqual(children)
        expect(all.batches.filter((b) => b.shardEnd !== undefined)).toHaveLength(1)
        expect(all.data()).toEqual(numbered("r", 0, 30).map((r) => r.data))

        // From a checkpoint: that record again (it may be a partly processed aggregate), then on to the end.
        const checkpoint = all.records[11]!.SequenceNumber!
        const resumed = yield* read(
          streamName,
          consumer.ConsumerARN!,
          parent,
          { atSequenceNumber: checkpoint }
        )
        const resumedExit = yield* Fiber.await(resumed.fiber).pipe(Effect.timeout("20 seconds"))
        expect(Exit.isSuccess(resumedExit)).toBe(true)
        expect(resumed.data()).toEqual(numbered("r", 11, 19).map((r) => r.data))
        expect(resumed.batches.at(-1)?.shardEnd?.childShards.map((c) => c.ShardId).sort()).toEqual(children)
      }))

    it.effect("two applications each receive every record through their own stream consumer", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const shardId = shards[0]!.shardId
        const a = yield* EnhancedFanOut.registerStreamConsumer(streamName, "app-a", settings)
        const b = yield* EnhancedFanOut.registerStreamConsumer(streamName, "app-b", settings)
        const readA = yield* read(streamName, a.ConsumerARN!, shardId)
        const readB = yield* read(streamName, b.ConsumerARN!, shardId)
        yield* put(streamName, numbered("x", 0, 25))
        yield* eventually(
          Effect.sync(() => readA.records.length >= 25 && readB.records.length >= 25),
          "20 seconds",
          "both applications reading 25 records"
        )
        expect(readA.data()).toEqual(numbered("x", 0, 25).map((r) => r.data))
        expect(readB.data()).toEqual(numbered("x", 0, 25).map((r) => r.data))
      }))

    it.effect("fails with a typed error when its stream consumer is deregistered, instead of resubscribing forever", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const consumer = yield* EnhancedFanOut.registerStreamConsumer(streamName, "gone", settings)
        yield* EnhancedFanOut.deregisterStreamConsumer(streamName, "gone")
        yield* Effect.sleep("1 second")
        const reading = yield* read(streamName, consumer.ConsumerARN!, shards[0]!.shardId)
        const exit = yield* Fiber.await(reading.fiber).pipe(Effect.timeout("20 seconds"))
        expect(Exit.isFailure(exit)).toBe(true)
        expect(Exit.isFailure(exit) ? exit.cause.reasons.map((r) => r._tag === "Fail" && r.error._tag) : [])
          .toEqual(["StreamNotFound"])
      }))
  })

  describe("stalls", () => {
    it.effect("a subscription that goes silent is cancelled and renewed after the last record delivered: records written after the stall arrive, none twice", () =>
      Effect.gen(function*() {
        const proxy = yield* FaultProxy.FaultProxy
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const consumer = yield* EnhancedFanOut.registerStreamConsumer(streamName, "app", settings)
        yield* put(streamName, numbered("s", 0, 10))
        yield* proxy.update({ stallSubscriptionsAfterEvents: 2 })
        const viaProxy = yield* Layer.build(Client.layer(proxy.clientConfig))
        const reading = yield* read(streamName, consumer.ConsumerARN!, shards[0]!.shardId).pipe(
          Effect.provide(viaProxy)
        )
        yield* eventually(Effect.sync(() => reading.records.length >= 10), "20 seconds", "the first 10 records")
        yield* eventually(
          Effect.map(proxy.stats, (stats) => stats.stalledSubscriptions >= 1),
          "20 seconds",
          "a stalled subscription"
        )
        yield* put(streamName, numbered("s", 10, 10))
        yield* eventually(
          Effect.sync(() => reading.records.length >= 20),
          "30 seconds",
          "the 10 records written after the stall"
        )
        const stats = yield* proxy.stats
        yield* proxy.reset
        expect(reading.data()).toEqual(numbered("s", 0, 20).map((r) => r.data))
        expect(stats.requests["SubscribeToShard"]).toBeGreaterThanOrEqual(2)
      }))
  })

  // kinesis-mock never ends a subscription with ChildShards nor fails one mid-stream: these script
  // what AWS sends, through a client whose SubscribeToShard plays the script.
  describe("the SubscribeToShard protocol", () => {
    const event = (
      sequenceNumbers: ReadonlyArray<string>,
      continuation: string | undefined,
      extra: Partial<SubscribeToShardEvent> = {}
    ): SubscribeToShardEvent => ({
      Records: sequenceNumbers.map((sequenceNumber) => ({
        SequenceNumber: sequenceNumber,
        PartitionKey: "k",
        Data: new TextEncoder().encode(`r${sequenceNumber}`)
      })),
      ContinuationSequenceNumber: continuation,
      MillisBehindLatest: 1000,
      ...extra
    })
    const failure = (code: string) => KinesisError.fromSdkError("SubscribeToShard", { name: code, message: code })

    // Each call of SubscribeToShard plays the next subscription of the script.
    const scripted = (subscriptions: ReadonlyArray<Stream.Stream<SubscribeToShardEvent, KinesisError.KinesisError>>) =>
      Effect.map(Client.Client, (real) => {
        const positions: Array<StartingPosition> = []
        const client: Client.Client["Service"] = {
          ...real,
          subscribeToShard: (input) =>
            Stream.suspend(() => {
              positions.push(input.startingPosition)
              return subscriptions[positions.length - 1] ?? Stream.never
            })
        }
        return { client, positions }
      })

    it.effect("renews each ended subscription after the last continuation, and ends at the final event's ChildShards", () =>
      Effect.gen(function*() {
        const child = {
          ShardId: "shardId-000000000009",
          ParentShards: ["shardId-000000000000"],
          HashKeyRange: { StartingHashKey: "0", EndingHashKey: "1" }
        }
        const { client, positions } = yield* scripted([
          Stream.make(event(["100", "101"], "101")),
          // No records, but the continuation moved on.
          Stream.make(event([], "105")),
          Stream.make(event(["106"], undefined, { ChildShards: [child], MillisBehindLatest: 0 }))
        ])
        const reading = yield* read("s", "arn:consumer", "shardId-000000000000", { atSequenceNumber: "100" }).pipe(
          Effect.provideService(Client.Client, client)
        )
        const exit = yield* Fiber.await(reading.fiber).pipe(Effect.timeout("20 seconds"))
        expect(Exit.isSuccess(exit)).toBe(true)
        expect(positions).toEqual([
          { Type: "AT_SEQUENCE_NUMBER", SequenceNumber: "100" },
          { Type: "AFTER_SEQUENCE_NUMBER", SequenceNumber: "101" },
          { Type: "AFTER_SEQUENCE_NUMBER", SequenceNumber: "105" }
        ])
        expect(reading.records.map((r) => r.SequenceNumber)).toEqual(["100", "101", "106"])
        expect(reading.batches.at(-1)?.shardEnd?.childShards).toEqual([child])
      }))

    it.effect("waits out ResourceInUse, resubscribes after a broken subscription from where it was, and fails on an error retrying cannot fix", () =>
      Effect.gen(function*() {
        const { client, positions } = yield* scripted([
          Stream.concat(Stream.make(event(["1"], "1")), Stream.fail(failure("ServiceUnavailableException"))),
          Stream.fail(failure("ResourceInUseException")),
          Stream.concat(Stream.make(event(["2"], "2")), Stream.fail(failure("AccessDeniedException")))
        ])
        const reading = yield* read("s", "arn:consumer", "shardId-000000000000").pipe(
          Effect.provideService(Client.Client, client)
        )
        const exit = yield* Fiber.await(reading.fiber).pipe(Effect.timeout("20 seconds"))
        expect(Exit.isFailure(exit) ? exit.cause.reasons.map((r) => r._tag === "Fail" && r.error._tag) : [])
          .toEqual(["AccessDenied"])
        expect(positions).toEqual([
          { Type: "TRIM_HORIZON" },
          { Type: "AFTER_SEQUENCE_NUMBER", SequenceNumber: "1" },
          { Type: "AFTER_SEQUENCE_NUMBER", SequenceNumber: "1" }
        ])
        expect(reading.records.map((r) => r.SequenceNumber)).toEqual(["1", "2"])
      }))
  })
})
