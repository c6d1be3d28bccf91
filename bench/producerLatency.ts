/**
 * How long an aggregating producer takes to write a record at a steady rate into one shard of the
 * embedded emulator (kinesis-mock): `produce` to its result, per record, at a few rates.
 *
 *   node --conditions=@effect-kinesis/source bench/producerLatency.ts
 *
 * 50 partition keys, 100-byte records, one `produce` per record at an even pace (`BENCH_RATES`,
 * default 200, 500 and 1000 records/s), 3 s of warm-up then `BENCH_SECONDS` (default 10) counted.
 * `BENCH_PLAIN=1` turns aggregation off, `BENCH_UNORDERED=1` per-key order, `BENCH_NOLIMIT=1` the
 * per-shard limiter. Writes bench/results/producerLatency.json.
 *
 * kinesis-mock takes longer per Kinesis record than a shard would: without aggregation (a Kinesis
 * record per user record) its answers fall behind somewhere between 200 and 500 records/s, so the
 * figures show how many Kinesis records the producer makes as much as its own waiting.
 */
import { Serde } from "@effect-kinesis/core"
import { Producer } from "@effect-kinesis/producer"
import { StreamFixtures } from "@effect-kinesis/testing"
import { Effect } from "effect"
import { performance } from "node:perf_hooks"
import * as Results from "./results.ts"

const RATES = (process.env["BENCH_RATES"] ?? "200,500,1000").split(",").map(Number)
const SECONDS = Number(process.env["BENCH_SECONDS"] ?? 10)
const WARMUP_SECONDS = 3
const KEYS = 50
const DATA = "x".repeat(100)

/** Milliseconds from `produce` to its result, for the records of the counted seconds. */
const atRate = (rate: number) =>
  Effect.gen(function*() {
    const stream = yield* StreamFixtures.stream({ shardCount: 1, prefix: "producer-latency" })
    const producer = yield* Producer.make({
      stream: stream.streamName,
      serde: Serde.string,
      settings: {
        aggregate: process.env["BENCH_PLAIN"] === undefined,
        ordering: process.env["BENCH_UNORDERED"] ? "unordered" : "byPartitionKey",
        rateLimit: process.env["BENCH_NOLIMIT"] === undefined
      }
    })
    const latencies: Array<number> = []
    let offered = 0
    let failed = 0
    const run = (seconds: number, counted: boolean) =>
      Effect.gen(function*() {
        const start = performance.now()
        for (let i = 0; performance.now() - start < seconds * 1000; i++) {
          const wait = start + (i * 1000) / rate - performance.now()
          if (wait >= 1) yield* Effect.sleep(Math.floor(wait))
          const sentAt = performance.now()
          if (counted) offered++
          yield* Effect.forkChild(
            producer.produce({ partitionKey: `k${i % KEYS}`, data: DATA }).pipe(
              Effect.tap(() => Effect.sync(() => counted && latencies.push(performance.now() - sentAt))),
              Effect.tapError(() => Effect.sync(() => counted && failed++)),
              Effect.ignore
            )
          )
        }
      })
    yield* run(WARMUP_SECONDS, false)
    yield* run(SECONDS, true)
    // Every counted record settles (the producer's TTL bounds the wait) before the scope closes it.
    while (latencies.length + failed < offered) yield* Effect.sleep(100)
    if (failed > 0) return yield* Effect.die(new Error(`${failed} of ${offered} records failed at ${rate} records/s`))
    latencies.sort((a, b) => a - b)
    const at = (q: number) => +latencies[Math.floor(q * (latencies.length - 1))]!.toFixed(1)
    return { "records/s": rate, records: latencies.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1) }
  }).pipe(Effect.scoped)

const program = Effect.gen(function*() {
  const rows = []
  for (const rate of RATES) rows.push(yield* atRate(rate))
  console.table(rows)
  Results.write("producerLatency", {
    emulator: "kinesis-mock (kinesis-local)",
    aggregate: process.env["BENCH_PLAIN"] === undefined,
    ordering: process.env["BENCH_UNORDERED"] ? "unordered" : "byPartitionKey",
    rateLimit: process.env["BENCH_NOLIMIT"] === undefined,
    shards: 1,
    partitionKeys: KEYS,
    seconds: SECONDS,
    unit: "ms from produce to its result",
    rows
  })
})

await Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Results.KinesisLive)))
