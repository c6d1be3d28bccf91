/**
 * `Consumer.consumeWith` with error handling: a handler that fails on some records is retried,
 * then the record is skipped (`RetryAndSkip`) after being handed to a dead-letter hook; the
 * consumer keeps going and checkpoints past it.
 *
 *   node --conditions=@effect-kinesis/source examples/consume-with.ts [records=1000]
 *
 * Every 10th record is a "poison" message the handler rejects. Exits non-zero unless each good
 * record was processed and each poison record reached the dead-letter hook.
 */
import { Consumer, type ConsumerRecord, ErrorHandling, LeaseRepository } from "@effect-kinesis/consumer"
import { AdminClient, Serde } from "@effect-kinesis/core"
import { Producer } from "@effect-kinesis/producer"
import { Data, Deferred, Effect, Fiber, Layer, Schedule } from "effect"
import { KinesisLive, run } from "./live.ts"

const records = Number(process.argv[2] ?? 1000)
const stream = `consume-with-${Date.now()}`
const poison = (i: number) => i % 10 === 0

class InvalidOrder extends Data.TaggedError("InvalidOrder")<{ readonly data: string }> {}

const program = Effect.gen(function*() {
  yield* (yield* AdminClient.AdminClient).createStream(stream, { shardCount: 2 })
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
  const deadLetters = new Set<string>()
  const expectedPoison = Array.from({ length: records }, (_, i) => i).filter(poison).length
  const finished = yield* Deferred.make<void>()
  const check = Effect.suspend(() =>
    processed.size + deadLetters.size === records ? Deferred.succeed(finished, undefined) : Effect.void
  )

  const handler = (record: ConsumerRecord.ConsumerRecord<string>) =>
    record.data.startsWith("poison")
      ? Effect.fail(new InvalidOrder({ data: record.data }))
      : Effect.andThen(Effect.sync(() => processed.add(record.data)), check)

  const consumer = Consumer.consumeWith(handler, {
    stream,
    applicationName: "consume-with-example",
    deserializer: Serde.string,
    fetch: { pollInterval: "200 millis" },
    checkpoint: { records: 100, interval: "1 second" },
    errorHandling: {
      // Two retries 10 ms apart, then skip the record (RetryAndStop would stop the shard instead).
      mode: ErrorHandling.retryAndSkip(2, { schedule: Schedule.spaced("10 millis") }),
      // The dead-letter hook: in production, write the record to a queue, a table or another stream.
      onMaxRetryExceeded: (failure) =>
        Effect.andThen(
          Effect.sync(() => {
            if (failure._tag === "ProcessingFailed") deadLetters.add(failure.record.data)
          }),
          check
        )
    }
  })

  const fiber = yield* Effect.forkChild(consumer)
  yield* Deferred.await(finished).pipe(Effect.timeout("60 seconds"))
  yield* Fiber.interrupt(fiber)
  console.log(`processed ${processed.size} records, ${deadLetters.size} dead letters`)
  if (deadLetters.size !== expectedPoison || [...deadLetters].some((d) => !d.startsWith("poison"))) {
    return yield* Effect.fail(new Error(`expected ${expectedPoison} poison records in the dead letters`))
  }
})

const Live = Consumer.layer.pipe(Layer.provide(LeaseRepository.layerMemory), Layer.provideMerge(KinesisLive))

run(program.pipe(Effect.provide(Live)))
