/**
 * A consumer built from `Consumer.shardedStream`: one `Stream` per shard this worker holds, processed
 * in parallel; each record is staged once handled and checkpoints are written in batches.
 *
 *   node --conditions=@effect-kinesis/source examples/sharded-stream.ts [records=2000]
 *
 * Writes the records first, consumes until all have been seen, then stops (which checkpoints and
 * releases the leases) and prints where each shard's checkpoint ended. Exits non-zero on failure.
 */
import { Consumer, LeaseRepository } from "@effect-kinesis/consumer"
import { AdminClient, Serde } from "@effect-kinesis/core"
import { Producer } from "@effect-kinesis/producer"
import { Deferred, Effect, Fiber, Layer, Stream } from "effect"
import { KinesisLive, run } from "./live.ts"

const records = Number(process.argv[2] ?? 2000)
const stream = `sharded-stream-${Date.now()}`

const program = Effect.gen(function*() {
  yield* (yield* AdminClient.AdminClient).createStream(stream, { shardCount: 3 })
  yield* Effect.scoped(Effect.gen(function*() {
    const producer = yield* Producer.make({ stream, serializer: Serde.string })
    yield* producer.produceChunk(
      Array.from({ length: records }, (_, i) => ({ partitionKey: `device-${i % 100}`, data: `reading ${i}` }))
    )
  }))

  const seen = new Set<string>()
  const allSeen = yield* Deferred.make<void>()
  const consumer = Consumer.shardedStream({
    stream,
    applicationName: "sharded-stream-example",
    deserializer: Serde.string,
    fetch: { pollInterval: "200 millis" }
  }).pipe(
    Stream.flatMap((shard) =>
      shard.records.pipe(
        // Stage the record only once its handler succeeded; the next checkpoint writes it.
        Stream.mapEffect((record) =>
          shard.checkpointer.stageOnSuccess(
            Effect.suspend(() => {
              seen.add(record.data)
              return seen.size === records ? Deferred.succeed(allSeen, undefined) : Effect.void
            }),
            record
          )
        ),
        shard.checkpointer.checkpointBatched({ records: 500, interval: "1 second" })
      ), { concurrency: "unbounded" }),
    Stream.runDrain
  )

  const fiber = yield* Effect.forkChild(consumer)
  yield* Deferred.await(allSeen).pipe(Effect.timeout("60 seconds"))
  yield* Fiber.interrupt(fiber) // graceful: the last staged records are checkpointed, leases released
  console.log(`consumed ${seen.size} distinct records`)

  for (const lease of yield* (yield* LeaseRepository.LeaseRepository).list) {
    console.log(`${lease.leaseKey}: checkpoint ${lease.checkpoint.sequenceNumber}, owner ${lease.leaseOwner ?? "none"}`)
  }
})

// The in-memory lease store is shared by the consumer and the listing at the end.
const Live = Consumer.layer.pipe(Layer.provideMerge(LeaseRepository.layerMemory), Layer.provideMerge(KinesisLive))

run(program.pipe(Effect.provide(Live)))
