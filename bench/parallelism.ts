/**
 * Ordered parallelism within a shard: records/s of `Consumer.consumeWith` over one shard
 * pre-filled with plain records over many partition keys, with a handler that sleeps 10 ms per
 * record (an I/O-bound handler: a database write, an HTTP call), at `parallelism` 1 (the default,
 * sequential path), 2, 4, 8, 16 and 32, and each rate's ratio to parallelism 1.
 *
 *   node --conditions=@effect-kinesis/source bench/parallelism.ts
 *
 * Runs against the embedded kinesis-mock. The rate is taken from the first handler's start to the
 * last handler's end (the lease taking and the first poll are not processing); the median of
 * `BENCH_RUNS` runs (default 3) per setting. Prints a table and writes
 * bench/results/parallelism.json.
 */
import { Consumer, LeaseRepository } from "@effect-kinesis/consumer"
import { Serde } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { Deferred, Effect, Fiber } from "effect"
import { performance } from "node:perf_hooks"
import * as Results from "./results.ts"

const RECORDS = Number(process.env.BENCH_RECORDS ?? 2000)
const KEYS = Number(process.env.BENCH_KEYS ?? 200)
const HANDLER_MILLIS = 10
const PARALLELISM = [1, 2, 4, 8, 16, 32]
const RUNS = Number(process.env.BENCH_RUNS ?? 3)

// Consumes the whole shard once with a fresh application (its own leases, from TRIM_HORIZON) and
// returns the processing time in milliseconds, checking order per key on the way.
const consume = (stream: string, parallelism: number, run: string) =>
  Effect.gen(function*() {
    let count = 0
    let firstStart = 0
    let lastEnd = 0
    let orderViolations = 0
    const lastOfKey = new Map<string, number>()
    const done = yield* Deferred.make<void>()
    const fiber = yield* Consumer.consumeWith(
      (record) =>
        Effect.suspend(() => {
          if (firstStart === 0) firstStart = performance.now()
          const n = Number(record.data)
          if ((lastOfKey.get(record.partitionKey) ?? -1) > n) orderViolations++
          lastOfKey.set(record.partitionKey, n)
          return Effect.andThen(
            Effect.sleep(HANDLER_MILLIS),
            Effect.suspend(() => {
              lastEnd = performance.now()
              return ++count === RECORDS ? Deferred.succeed(done, undefined) : Effect.void
            })
          )
        }),
      {
        stream,
        applicationName: `bench-${run}`,
        workerId: "bench",
        deserializer: Serde.string,
        fetch: { pollInterval: "50 millis" },
        parallelism
      }
    ).pipe(
      Effect.provide(Consumer.layer),
      Effect.provide(LeaseRepository.layerMemory),
      Effect.forkChild
    )
    yield* Deferred.await(done)
    yield* Fiber.interrupt(fiber)
    if (orderViolations > 0) return yield* Effect.die(new Error(`${orderViolations} records out of order per key`))
    return lastEnd - firstStart
  })

const program = Effect.gen(function*() {
  const { streamName } = yield* StreamFixtures.stream({ shardCount: 1, prefix: "bench" })
  yield* StreamFixtures.putInOrder(
    streamName,
    Array.from({ length: RECORDS }, (_, i) => ({ partitionKey: `key-${i % KEYS}`, data: String(i) }))
  )
  console.log(`${RECORDS} records over ${KEYS} partition keys on one shard; handler sleeps ${HANDLER_MILLIS} ms`)

  // Warm-up (JIT, sockets, the emulator's caches).
  yield* consume(streamName, 8, "warm-up")

  const millis = new Map<number, Array<number>>(PARALLELISM.map((p) => [p, []]))
  for (let run = 0; run < RUNS; run++) {
    // Alternating the order, so that no setting always runs on a warmer or busier machine.
    const order = run % 2 === 0 ? PARALLELISM : [...PARALLELISM].reverse()
    for (const parallelism of order) {
      millis.get(parallelism)!.push(yield* consume(streamName, parallelism, `${run}-${parallelism}`))
    }
  }
  const base = RECORDS / (Results.median(millis.get(1)!) / 1000)
  const rows = PARALLELISM.map((parallelism) => {
    const recordsPerSecond = RECORDS / (Results.median(millis.get(parallelism)!) / 1000)
    return {
      parallelism,
      recordsPerSecond: Math.round(recordsPerSecond),
      ratioToParallelism1: Number((recordsPerSecond / base).toFixed(2)),
      idealRatio: parallelism,
      processingMs: Math.round(Results.median(millis.get(parallelism)!))
    }
  })
  console.table(rows)

  Results.write("parallelism", {
    workload: {
      emulator: "kinesis-mock (kinesis-local)",
      shards: 1,
      records: RECORDS,
      partitionKeys: KEYS,
      handlerMillis: HANDLER_MILLIS,
      runs: RUNS
    },
    results: rows,
    runsMillis: Object.fromEntries([...millis].map(([p, values]) => [p, values.map(Math.round)]))
  })
})

await Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Results.KinesisLive)))
