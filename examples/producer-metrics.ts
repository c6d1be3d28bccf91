/**
 * A producer reporting its metrics: every second while it runs, and once more when it closes.
 *
 *   node --conditions=@effect-kinesis/source examples/producer-metrics.ts [records=20000]
 *
 * Runs against an embedded kinesis-mock, or `KINESIS_ENDPOINT` when set. Exits non-zero unless
 * the metrics account for every record produced.
 */
import { AdminClient, Serde } from "@effect-kinesis/core"
import { Producer, ProducerMetrics } from "@effect-kinesis/producer"
import { Effect, Stream } from "effect"
import { KinesisLive, run } from "./live.ts"

const records = Number(process.argv[2] ?? 20_000)
const stream = `producer-metrics-${Date.now()}`

const program = Effect.gen(function*() {
  yield* (yield* AdminClient.AdminClient).createStream(stream, { shardCount: 2 })

  let total = ProducerMetrics.empty()
  yield* Effect.scoped(Effect.gen(function*() {
    const producer = yield* Producer.make({
      stream,
      serializer: Serde.string,
      settings: { aggregate: true, metricsInterval: "1 second" },
      onMetrics: (m) =>
        Effect.sync(() => {
          total = ProducerMetrics.combine(total, m)
          console.log(
            `${m.userRecordsPut} user records in ${m.kinesisRecordsPut} Kinesis records `
              + `(${ProducerMetrics.userRecordsPerKinesisRecord(m).toFixed(1)} per record), `
              + `${Math.round(ProducerMetrics.recordsPerSecond(m))} records/s, `
              + `latency p50 ${m.latency.getValueAtPercentile(50)} ms p99 ${m.latency.getValueAtPercentile(99)} ms, `
              + `${m.throttled} throttled, ${m.failed} failed`
          )
        })
    })
    // The sink keeps the producer's buffer full and completes once every record is acknowledged.
    yield* Stream.range(1, records).pipe(
      Stream.map((i) => ({ partitionKey: `customer-${i % 500}`, data: `order ${i}` })),
      Stream.run(producer.sink)
    )
  })) // closing the scope flushes the producer and delivers the last metrics

  console.log(`total: ${total.userRecordsPut} user records, ${total.kinesisRecordsPut} Kinesis records`)
  if (total.userRecordsPut !== records) {
    return yield* Effect.fail(new Error(`metrics count ${total.userRecordsPut} records, expected ${records}`))
  }
})

run(program.pipe(Effect.provide(KinesisLive)))
