import { Consumer, LeaseRepository } from "@effect-kinesis/consumer"
import { Aggregation, Client, ExtendedSequenceNumber, Serde } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { fastLeases, KinesisLive } from "./fixtures.ts"

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

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("KPL aggregated records", (it) => {
  describe("deaggregation", () => {
    it.effect("are delivered one user record at a time, and a restart mid-aggregate resumes at the next subsequence number", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        yield* putAggregates(streamName, shards[0]!.startingHashKey)
        const repository = yield* LeaseRepository.makeMemory()
        const options: Consumer.ShardedStreamOptions<string> = {
          stream: streamName,
          applicationName: "test",
          workerId: "w",
          deserializer: Serde.string,
          fetch: { pollInterval: "100 millis" },
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
        expect(first.every((r) => r.aggregated)).toBe(true)
        expect(first.map((r) => r.subSequenceNumber)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4])
        expect(first.map((r) => r.partitionKey).slice(0, 4)).toEqual(["key-0", "key-1", "key-2", "key-3"])
        expect(new Set(first.slice(0, 10).map((r) => r.sequenceNumber)).size).toBe(1)

        const [lease] = yield* repository.list
        expect(lease!.checkpoint).toEqual(ExtendedSequenceNumber.make(first[14]!.sequenceNumber, 4))

        const second = yield* consume(15)
        expect(second.map((r) => r.data)).toEqual([
          ...Array.from({ length: 5 }, (_, u) => `a1u${u + 5}`),
          ...Array.from({ length: 10 }, (_, u) => `a2u${u}`)
        ])
      }))
  })
})
