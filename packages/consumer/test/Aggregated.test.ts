import { Consumer, type ConsumerRecord, type DiagnosticEvent, LeaseRepository } from "@effect-kinesis/consumer"
import { Aggregation, Client, ExtendedSequenceNumber, HashKey } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import { eventually, KinesisLive, shardedStreamOptions } from "./fixtures.ts"
import { deaggregationResume } from "./scenarios.ts"

const encoder = new TextEncoder()

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("KPL aggregated records", (it) => {
  describe("deaggregation", () => {
    it.effect("are delivered one user record at a time, and a restart mid-aggregate resumes at the next subsequence number", () =>
      Effect.gen(function*() {
        const first = yield* deaggregationResume(shardedStreamOptions)
        expect(first.every((r) => r.aggregated)).toBe(true)
        expect(first.map((r) => r.partitionKey).slice(0, 4)).toEqual(["key-0", "key-1", "key-2", "key-3"])
        expect(new Set(first.slice(0, 10).map((r) => r.sequenceNumber)).size).toBe(1)
      }))

    it.effect("an aggregate holding a user record of another shard is dropped whole, as the KCL does, and the checkpoint moves past it", () =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const [a] = shards
        const inA = (key: string) => HashKey.fromPartitionKey(key) <= BigInt(a!.endingHashKey)
        const keys = Array.from({ length: 64 }, (_, i) => `key-${i}`)
        const keyA = keys.find(inA)!
        const keyB = keys.find((key) => !inA(key))!
        const aggregate = (records: ReadonlyArray<{ readonly partitionKey: string; readonly data: string }>) => {
          const aggregator = Aggregation.makeAggregator({ explicitHashKey: a!.startingHashKey })
          for (const record of records) {
            aggregator.add({ partitionKey: record.partitionKey, data: encoder.encode(record.data) })
          }
          const built = aggregator.build()!
          return { PartitionKey: built.partitionKey, ExplicitHashKey: built.explicitHashKey, Data: built.data }
        }
        // All on shard A: a plain record whose key hashes to B (never dropped), an aggregate of
        // A's keys, and last an aggregate with one user record of B (a producer re-sends those).
        const put = yield* client.putRecords(streamName, [
          { PartitionKey: keyB, ExplicitHashKey: a!.startingHashKey, Data: encoder.encode("plain") },
          aggregate([{ partitionKey: keyA, data: "a0" }, { partitionKey: keyA, data: "a1" }]),
          aggregate([{ partitionKey: keyA, data: "x0" }, { partitionKey: keyB, data: "x1" }])
        ])
        expect(put.Records?.every((r) => r.ShardId === a!.shardId && r.ErrorCode === undefined)).toBe(true)
        const dropped = put.Records![2]!.SequenceNumber!

        const repository = yield* LeaseRepository.makeMemory()
        const seen: Array<ConsumerRecord.ConsumerRecord<string>> = []
        const events: Array<DiagnosticEvent.DiagnosticEvent> = []
        const fiber = yield* Consumer.shardedStream({
          ...shardedStreamOptions(streamName),
          onDiagnostic: (event) => Effect.sync(() => events.push(event))
        }).pipe(
          Stream.flatMap((shard) =>
            shard.records.pipe(
              Stream.tap((record) =>
                Effect.andThen(shard.checkpointer.stage(record), Effect.sync(() => seen.push(record)))
              ),
              shard.checkpointer.checkpointBatched({ records: 1, interval: "100 millis" })
            ), { concurrency: "unbounded" }),
          Stream.runDrain,
          Effect.provide(Consumer.layer),
          Effect.provideService(LeaseRepository.LeaseRepository, repository),
          Effect.forkScoped
        )
        // The dropped aggregate counts as processed: the checkpoint reaches its last user record.
        yield* eventually(
          Effect.map(repository.list, (leases) =>
            leases.some((l) =>
              l.leaseKey === a!.shardId &&
              ExtendedSequenceNumber.compare(l.checkpoint, ExtendedSequenceNumber.make(dropped, 1)) === 0
            )),
          "20 seconds",
          "the checkpoint past the dropped aggregate"
        )
        yield* Fiber.interrupt(fiber)

        expect(seen.map((r) => r.data)).toEqual(["plain", "a0", "a1"])
        expect(events.filter((e) => e._tag === "AggregateDropped")).toEqual([
          { _tag: "AggregateDropped", workerId: "w", shardId: a!.shardId, sequenceNumber: dropped, userRecords: 2 }
        ])
      }))
  })
})
