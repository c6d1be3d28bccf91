/**
 * Reading KPL-aggregated records. Aggregates written by the Java KPL (or any KPL-format writer)
 * and by this library's producer with `aggregate: true` are unpacked by the consumer into their
 * user records, each with its own `subSequenceNumber`; checkpoints point inside an aggregate, so
 * a restart resumes after the last processed user record, not the last Kinesis record.
 *
 *   node --conditions=@effect-kinesis/source examples/aggregated.ts [records=5000]
 *
 * Writes half the records as hand-built KPL aggregates (core's `Aggregation`, the KPL wire format)
 * and half through the producer, then consumes them all. Exits non-zero unless every user record
 * arrived, unpacked.
 */
import { Consumer, LeaseRepository } from "@effect-kinesis/consumer"
import { AdminClient, Aggregation, Client, Serde, ShardMap } from "@effect-kinesis/core"
import { Producer } from "@effect-kinesis/producer"
import { Deferred, Effect, Fiber, Layer, Stream } from "effect"
import { KinesisLive, run } from "./live.ts"

const records = Number(process.argv[2] ?? 5000)
const stream = `aggregated-${Date.now()}`
const encoder = new TextEncoder()

// What the KPL does: pack the user records bound for one shard into aggregates of at most 50 KiB,
// routed to that shard with an explicit hash key. (A consumer drops an aggregate holding a user
// record of another shard, as the KCL does, so records are grouped by their shard first.)
const writeLikeTheKpl = (ids: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    const shardMap = yield* Effect.fromResult(ShardMap.fromShards(yield* Stream.runCollect(client.listShards(stream))))
    const aggregators = new Map<string, Aggregation.Aggregator>()
    const aggregates: Array<Aggregation.KinesisRecord> = []
    for (const id of ids) {
      const record = { partitionKey: `kpl-${id % 50}`, data: encoder.encode(`kpl ${id}`) }
      const shard = ShardMap.shardForRecord(shardMap, record.partitionKey)!
      let aggregator = aggregators.get(shard.shardId)
      if (aggregator === undefined) {
        aggregator = Aggregation.makeAggregator({ explicitHashKey: ShardMap.ShardInfo.explicitHashKey(shard) })
        aggregators.set(shard.shardId, aggregator)
      }
      if (!aggregator.add(record)) {
        aggregates.push(aggregator.build()!)
        aggregator.reset()
        aggregator.add(record)
      }
    }
    for (const aggregator of aggregators.values()) {
      if (aggregator.count > 0) aggregates.push(aggregator.build()!)
    }
    yield* client.putRecords(
      stream,
      aggregates.map((a) => ({ PartitionKey: a.partitionKey, ExplicitHashKey: a.explicitHashKey, Data: a.data }))
    )
    return aggregates.length
  })

const program = Effect.gen(function*() {
  yield* (yield* AdminClient.AdminClient).createStream(stream, { shardCount: 2 })
  const half = Math.floor(records / 2)
  const kplAggregates = yield* writeLikeTheKpl(Array.from({ length: half }, (_, i) => i))
  console.log(`wrote ${half} user records as ${kplAggregates} KPL aggregates`)
  yield* Effect.scoped(Effect.gen(function*() {
    const producer = yield* Producer.make({ stream, serializer: Serde.string, settings: { aggregate: true } })
    yield* producer.produceChunk(
      Array.from({ length: records - half }, (_, i) => ({ partitionKey: `p-${i % 50}`, data: `producer ${half + i}` }))
    )
  }))

  const seen = new Set<string>()
  let aggregated = 0
  let maxSubSequence = 0
  const done = yield* Deferred.make<void>()
  const fiber = yield* Consumer.consumeWith(
    (record) =>
      Effect.suspend(() => {
        seen.add(record.data)
        if (record.aggregated) aggregated++
        maxSubSequence = Math.max(maxSubSequence, record.subSequenceNumber)
        return seen.size === records ? Deferred.succeed(done, undefined) : Effect.void
      }),
    { stream, applicationName: "aggregated-example", deserializer: Serde.string, fetch: { pollInterval: "200 millis" } }
  ).pipe(Effect.forkChild)
  yield* Deferred.await(done).pipe(Effect.timeout("60 seconds"))
  yield* Fiber.interrupt(fiber)

  console.log(
    `consumed ${seen.size} user records; ${aggregated} came out of aggregates (largest subsequence ${maxSubSequence})`
  )
  if (aggregated < seen.size) return yield* Effect.fail(new Error("some records were not aggregated"))
})

const Live = Consumer.layer.pipe(Layer.provide(LeaseRepository.layerMemory), Layer.provideMerge(KinesisLive))

run(program.pipe(Effect.provide(Live)))
