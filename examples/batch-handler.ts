/**
 * `BatchProcessing.consumeBatchesWith` with Lambda's failure handling and an on-failure
 * destination that is another Kinesis stream, written through the Producer: a bulk handler
 * rejects a whole batch when one record in it is poison; bisect-on-error isolates each poison
 * record, which goes to the dead-letter stream after its retries, and every other record is
 * processed.
 *
 *   node --conditions=@effect-kinesis/source examples/batch-handler.ts [records=2000]
 *
 * Every 97th record is poison. Exits non-zero unless each good record was processed and each
 * poison record was written to the dead-letter stream.
 */
import {
  BatchProcessing,
  Consumer,
  type ConsumerRecord,
  FailureDestination,
  LeaseRepository
} from "@effect-kinesis/consumer"
import { AdminClient, Serde } from "@effect-kinesis/core"
import { Producer } from "@effect-kinesis/producer"
import { Data, Deferred, Effect, Fiber, Layer, Schedule } from "effect"
import { KinesisLive, run } from "./live.ts"

const records = Number(process.argv[2] ?? 2000)
const stream = `batch-handler-${Date.now()}`
const deadLetterStream = `${stream}-dead-letters`
const poison = (i: number) => i % 97 === 0

class BulkInsertRejected extends Data.TaggedError("BulkInsertRejected")<{ readonly reason: string }> {}

const program = Effect.gen(function*() {
  const admin = yield* AdminClient.AdminClient
  yield* admin.createStream(stream, { shardCount: 2 })
  yield* admin.createStream(deadLetterStream, { shardCount: 1 })
  yield* Effect.scoped(Effect.gen(function*() {
    const producer = yield* Producer.make({ stream, serializer: Serde.string })
    yield* producer.produceChunk(
      Array.from({ length: records }, (_, i) => ({
        partitionKey: `order-${i}`,
        data: poison(i) ? `poison ${i}` : `order ${i}`
      }))
    )
  }))

  const processed = new Set<string>()
  const deadLettered = new Set<string>()
  const expectedPoison = Array.from({ length: records }, (_, i) => i).filter(poison).length
  const finished = yield* Deferred.make<void>()
  const check = Effect.suspend(() =>
    processed.size + deadLettered.size === records ? Deferred.succeed(finished, undefined) : Effect.void
  )

  // A bulk write that all-or-nothing rejects a batch holding a poison record.
  const insertAll = (batch: ReadonlyArray<ConsumerRecord.ConsumerRecord<string>>) =>
    batch.some((r) => r.data.startsWith("poison"))
      ? Effect.fail(new BulkInsertRejected({ reason: "constraint violated" }))
      : Effect.andThen(
        Effect.sync(() => {
          for (const r of batch) processed.add(r.data)
        }),
        check
      )

  // The dead-letter stream: the failure's metadata and the record's data, as JSON, through a
  // producer that lives as long as the consumer.
  const deadLetters = yield* Producer.make({ stream: deadLetterStream, serializer: Serde.string })
  const consumer = BatchProcessing.consumeBatchesWith(insertAll, {
    stream,
    applicationName: "batch-handler-example",
    deserializer: Serde.string,
    fetch: { pollInterval: "200 millis" },
    batchSize: 100,
    bisectOnError: true,
    maxRetryAttempts: 2,
    maxRecordAge: "1 hour",
    retrySchedule: Schedule.spaced("10 millis"),
    checkpoint: { interval: "1 second" },
    onFailure: (failed) =>
      deadLetters.produce({
        partitionKey: failed.shardId,
        data: JSON.stringify({
          ...FailureDestination.describe(failed),
          data: failed._tag === "Undecodable" ? undefined : failed.record.data
        })
      }).pipe(
        Effect.andThen(Effect.sync(() => {
          if (failed._tag !== "Undecodable") deadLettered.add(failed.record.data)
        })),
        Effect.andThen(check)
      )
  })

  const fiber = yield* Effect.forkChild(consumer)
  yield* Deferred.await(finished).pipe(Effect.timeout("60 seconds"))
  yield* Fiber.interrupt(fiber)
  console.log(`processed ${processed.size} records, ${deadLettered.size} sent to ${deadLetterStream}`)
  if (deadLettered.size !== expectedPoison || [...deadLettered].some((d) => !d.startsWith("poison"))) {
    return yield* Effect.fail(new Error(`expected ${expectedPoison} poison records in the dead-letter stream`))
  }
})

const Live = Consumer.layer.pipe(Layer.provide(LeaseRepository.layerMemory), Layer.provideMerge(KinesisLive))

run(program.pipe(Effect.scoped, Effect.provide(Live)))
