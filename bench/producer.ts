/**
 * Producer benchmarks, run on demand (not in CI):
 *
 *   npm run bench:producer
 *
 * which compiles the bench and runs it on the built packages (`dist/`), as an application runs
 * them: running the TypeScript sources loads Node's type stripper too (about 17 MB of RSS) and
 * measures a different JIT warm-up. `node --conditions=@effect-kinesis/source bench/producer.ts`
 * runs the sources, for profiling.
 *
 * Prints a table and writes bench/results/producer.json. Throughput scenarios run in
 * `BENCH_ROUNDS` (default 3) interleaved rounds, each scenario of each round in a fresh process
 * (as an application runs one producer), where it runs once unmeasured (`BENCH_WARMUP` records,
 * default `BENCH_RECORDS`) and then once measured; each scenario reports its median. Scenarios:
 *
 * - `raw-sdk`: a plain AWS SDK loop, PutRecords of 500 records, 16 requests in flight — the baseline.
 *   Like the producer, it lists the shards once first (see `rawSdkLoop`).
 * - `aggregation-loop`: a second baseline, the least an aggregating producer on this client does:
 *   aggregate per shard and send, with nothing else (see `aggregationLoop`).
 * - `producer`, `producer-aggregated`: the producer writing the same 100-byte records
 *   (`produceChunk` of 500, 16 requests in flight), aggregation off and on.
 * - `producer-aggregated-offer`: the same with aggregation, fed with `offerAll` of 500 (fire and
 *   forget: no result per record), ending when the close has flushed everything.
 * - `peak-rss`: 1M records produced as fast as possible with the default settings and buffer
 *   (`offerAll` of 500), in a fresh process (`bench/producerPeakRss.ts`); the raw SDK loop's peak
 *   in another, for reference; and the producer again with 3M records, to show the peak does not
 *   grow with the number of records.
 *
 * Records cycle through 4096 payloads and a few thousand partition keys (`BENCH_KEYS`, default
 * 5000), as real workloads repeat keys. `BENCH_ONLY=<scenario>` runs one throughput scenario
 * alone, for profiling; `BENCH_STATS=1` also prints how full the producer's requests were.
 *
 * These four talk to a loopback HTTP server in a child process that acknowledges without
 * storing (`bench/fakeKinesis.ts`), so neither an emulator nor the server's CPU is measured. CPU
 * is the benchmark process's user + system time.
 *
 * - `shard-limit (plain)`: the plain producer with its default settings, fed with `offerAll` as
 *   fast as it takes records, so that its buffer stays full: the busiest shard's records/s on the
 *   fake server, as a share of the 1000 records/s limit its limiter paces to (the server does not
 *   throttle, so above 100 % would be a limiter letting too much through).
 * - `shard-limit`: the producer, aggregation on, writing as fast as it can to one shard of the
 *   embedded emulator through the fault proxy enforcing the 1 MiB/s and 1000 records/s shard
 *   limits: achieved bytes/s as a share of 1 MiB/s, and the share of throttled records.
 *
 * What the KPL-named metrics (a `MetricsCollector` in the context) cost on top of these scenarios
 * is measured by `bench/producerMetrics.ts`, run with `npx tsc -b bench && node
 * build/bench-ts/producerMetrics.js`.
 */
import { Aggregation, Client, HashKey, Serde } from "@effect-kinesis/core"
import { Producer, ProducerMetrics } from "@effect-kinesis/producer"
import { FaultProxy, KinesisEmulator, StreamFixtures } from "@effect-kinesis/testing"
import { Effect, Layer, Ref } from "effect"
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import {
  BATCH,
  credentials,
  IN_FLIGHT,
  jsonFromChild,
  KEYS,
  measure,
  type Measured,
  rawSdkLoop,
  record,
  RECORD_BYTES,
  resultsDir,
  serverStats,
  SHARDS,
  startFakeServer,
  STREAM
} from "./fakeKinesis.ts"
import { peakRssInChild } from "./producerPeakRss.ts"

const RECORDS = Number(process.env["BENCH_RECORDS"] ?? 1_000_000)
// Each scenario first runs unmeasured, at full size, in the same process, so that all are measured
// at steady state. The producer has more code than the raw loop for the JIT to settle: its first
// few hundred thousand records cost up to ~1.8x as much CPU per record as later ones (the raw loop
// ~1.1x); with 300,000 records, fresh processes still measured the aggregating producer 1.3-1.4x
// its steady state.
const WARMUP = Number(process.env["BENCH_WARMUP"] ?? RECORDS)
const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? 3)

/** `BENCH_STATS=1` prints how full the requests were (per metrics interval). */
const stats = process.env["BENCH_STATS"] !== undefined
const reportBatches = (m: ProducerMetrics.ProducerMetrics) =>
  Effect.sync(() => {
    if (m.requests === 0) return
    console.error(
      `${m.requests} requests, ${(m.kinesisRecordsPut / m.requests).toFixed(1)} Kinesis records and ${
        (m.userRecordsPut / m.requests).toFixed(1)
      } user records per request, ${(m.kinesisBytesPut / m.requests / 1024).toFixed(0)} KiB per request`
    )
  })

const ORDERING = process.env.BENCH_ORDERING === "unordered" ? "unordered" as const : "byPartitionKey" as const
/** `BENCH_NOLIMIT=1` turns the per-shard limiter off in the throughput scenarios. */
const RATE_LIMIT = process.env["BENCH_NOLIMIT"] === undefined

const producerRun = (endpoint: string, total: number, aggregate: boolean) =>
  Effect.runPromise(
    Effect.scoped(Effect.gen(function*() {
      const producer = yield* Producer.make({
        stream: STREAM,
        serializer: Serde.bytes,
        // BENCH_ORDERING=unordered measures the producer without per-key order.
        settings: { aggregate, maxInFlightRequests: IN_FLIGHT, ordering: ORDERING, rateLimit: RATE_LIMIT },
        onMetrics: stats ? reportBatches : undefined
      })
      const chunks = Math.ceil(total / BATCH)
      yield* Effect.forEach(
        Array.from({ length: chunks }, (_, c) => c),
        (c) => {
          const chunk = []
          for (let i = c * BATCH; i < Math.min(total, (c + 1) * BATCH); i++) chunk.push(record(i))
          return producer.produceChunk(chunk)
        },
        { concurrency: 64, discard: true }
      )
    })).pipe(Effect.provide(Client.layer({ endpoint, region: "us-east-1", credentials, httpHandler: "http1" })))
  )

/**
 * The aggregating producer fed with `offerAll` of 500 (fire and forget, as the peak-RSS scenario
 * and most applications feed it): the run ends when the scope's close has flushed everything.
 */
const producerOfferRun = (endpoint: string, total: number) =>
  Effect.runPromise(
    Effect.scoped(Effect.gen(function*() {
      let failed = 0
      const producer = yield* Producer.make({
        stream: STREAM,
        serializer: Serde.bytes,
        settings: { aggregate: true, maxInFlightRequests: IN_FLIGHT, ordering: ORDERING, rateLimit: RATE_LIMIT },
        onError: () => Effect.sync(() => failed++),
        onMetrics: stats ? reportBatches : undefined
      })
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          if (failed > 0) throw new Error(`${failed} records failed`)
        })
      )
      for (let c = 0; c * BATCH < total; c++) {
        const chunk = []
        for (let i = c * BATCH; i < Math.min(total, (c + 1) * BATCH); i++) chunk.push(record(i))
        yield* producer.offerAll(chunk)
      }
    })).pipe(Effect.provide(Client.layer({ endpoint, region: "us-east-1", credentials, httpHandler: "http1" })))
  )

/** User records per request of the bare aggregation loop: about what the producer's requests hold here. */
const LOOP_REQUEST_RECORDS = 12_800

/**
 * A second baseline: the least any aggregating producer on this client has to do. Each of
 * `IN_FLIGHT` workers takes the next records, aggregates them per shard (KPL format, 51,200-byte
 * aggregates, as the producer's default) and sends them in one PutRecords request through the same
 * `Client`. Nothing else: no buffer, no retries, no per-key order, no limiter, no TTL, no result
 * per record. What the producer costs beyond this is its bookkeeping.
 */
const aggregationLoop = (endpoint: string, total: number) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const client = yield* Client.Client
      // The fake server's shards split the hash key space evenly (the producer lists them instead).
      const span = (1n << 128n) / BigInt(SHARDS)
      const shardOfKey = new Map<string, number>()
      const shardOf = (key: string) => {
        let shard = shardOfKey.get(key)
        if (shard === undefined) shardOfKey.set(key, shard = Number(HashKey.fromPartitionKey(key) / span))
        return shard
      }
      const aggregators = Array.from({ length: SHARDS }, (_, i) =>
        Aggregation.makeAggregator({ explicitHashKey: (span * BigInt(i)).toString(), maxBytes: 51_200 }))
      const entryOf = (aggregator: Aggregation.Aggregator) => {
        const built = aggregator.build()!
        aggregator.reset()
        return built.explicitHashKey === undefined
          ? { PartitionKey: built.partitionKey, Data: built.data }
          : { PartitionKey: built.partitionKey, Data: built.data, ExplicitHashKey: built.explicitHashKey }
      }
      let next = 0
      const worker = Effect.gen(function*() {
        while (next < total) {
          const start = next
          const end = Math.min(total, start + LOOP_REQUEST_RECORDS)
          next = end
          const entries = []
          const used: Array<number> = []
          for (let i = start; i < end; i++) {
            const r = record(i)
            const shard = shardOf(r.partitionKey)
            const aggregator = aggregators[shard]!
            if (aggregator.count === 0) {
              used.push(shard)
            }
            if (!aggregator.add(r)) {
              entries.push(entryOf(aggregator))
              aggregator.add(r)
            }
          }
          for (const shard of used) {
            entries.push(entryOf(aggregators[shard]!))
          }
          const out = yield* client.putRecords(STREAM, entries)
          if ((out.FailedRecordCount ?? 0) > 0) {
            throw new Error("unexpected failed records")
          }
        }
      })
      const workers = new Array<typeof worker>(IN_FLIGHT).fill(worker)
      yield* Effect.all(workers, { concurrency: "unbounded", discard: true })
    }).pipe(Effect.provide(Client.layer({ endpoint, region: "us-east-1", credentials, httpHandler: "http1" })))
  )

// ---------------------------------------------------------------------------------------------------
// The plain producer's limiter, with a full buffer, on the fake server

const plainShardLimit = (endpoint: string, seconds: number) =>
  Effect.runPromise(
    Effect.scoped(Effect.gen(function*() {
      const producer = yield* Producer.make({
        stream: STREAM,
        serializer: Serde.bytes,
        settings: { ordering: ORDERING }
      })
      let i = 0
      yield* Effect.suspend(() => {
        const chunk = []
        for (let j = 0; j < BATCH; j++) chunk.push(record(i++))
        return producer.offerAll(chunk)
      }).pipe(Effect.forever, Effect.forkScoped)
      // The buffer fills and the buckets' initial burst is spent first.
      yield* Effect.sleep("3 seconds")
      const before = yield* Effect.promise(() => serverStats(endpoint, true))
      const start = performance.now()
      const elu = performance.eventLoopUtilization()
      const cpu = process.cpuUsage()
      yield* Effect.sleep(`${seconds} seconds`)
      const used = process.cpuUsage(cpu)
      const wallMs = performance.now() - start
      const after = yield* Effect.promise(() => serverStats(endpoint))
      // Rates over the server's own interval between the two counts: the caller's clock would add
      // or drop the time the stats calls took (tens of ms for the first, in a cold process).
      const elapsed = (after.atMs - before.atMs) / 1000
      const rates = after.shardRecords.map((n, s) => (n - before.shardRecords[s]!) / elapsed).sort((a, b) => b - a)
      return {
        seconds: elapsed,
        busiestShardsShareOfLimit: rates.slice(0, 3).map((r) => r / 1000),
        // What the limiter promises: no shard gets more than its limit within any one second
        // (here by the arrival of requests at the server, a sliding window).
        busiestSecondShareOfLimit: after.busiestSecond / 1000,
        eventLoopBusy: performance.eventLoopUtilization(elu).utilization,
        // Beside the event loop's busy share: busy near 100 % with well under a core means the
        // machine did not give the process its core.
        producerCores: (used.user + used.system) / 1000 / wallMs,
        serverCores: (after.cpuMicros - before.cpuMicros) / 1000 / (elapsed * 1000)
      }
    })).pipe(Effect.provide(Client.layer({ endpoint, region: "us-east-1", credentials, httpHandler: "http1" })))
  )

// ---------------------------------------------------------------------------------------------------
// Shard limit through the fault proxy

const shardLimit = (seconds: number) =>
  Effect.runPromise(
    Effect.scoped(Effect.gen(function*() {
      const proxy = yield* FaultProxy.FaultProxy
      const stream = yield* StreamFixtures.stream({ shardCount: 1 })
      const clientLayer = Client.layer(proxy.clientConfig)
      const metrics = yield* Ref.make(ProducerMetrics.empty())
      return yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({
          stream: stream.streamName,
          serializer: Serde.bytes,
          settings: { aggregate: true, metricsInterval: "1 second" },
          onMetrics: (m) => Ref.update(metrics, (total) => ProducerMetrics.combine(total, m))
        })
        let i = 0
        const feed = Effect.suspend(() => {
          const chunk = []
          for (let j = 0; j < BATCH; j++) chunk.push(record(i++))
          return producer.offerAll(chunk)
        }).pipe(Effect.forever, Effect.forkScoped)
        yield* feed
        // Warm up (the proxy's bucket starts full), then measure a window.
        yield* Effect.sleep("3 seconds")
        const before = yield* proxy.stats
        const start = performance.now()
        yield* Effect.sleep(`${seconds} seconds`)
        const after = yield* proxy.stats
        const elapsed = (performance.now() - start) / 1000
        const shard = (s: FaultProxy.FaultStats) => Object.values(s.shards[stream.streamName] ?? {})[0]!
        const bytes = shard(after).forwardedBytes - shard(before).forwardedBytes
        const forwarded = shard(after).forwardedRecords - shard(before).forwardedRecords
        const throttled = shard(after).throttledRecords - shard(before).throttledRecords
        const requests = (after.requests["PutRecords"] ?? 0) - (before.requests["PutRecords"] ?? 0)
        return {
          seconds: elapsed,
          bytesPerSecond: bytes / elapsed,
          shareOfLimit: bytes / elapsed / 1_048_576,
          kinesisRecords: forwarded,
          throttledRecords: throttled,
          requests,
          throttledShare: throttled / Math.max(1, forwarded + throttled)
        }
      })).pipe(Effect.provide(clientLayer))
    })).pipe(
      Effect.provide(FaultProxy.layer({ shardLimits: true }).pipe(Layer.provideMerge(KinesisEmulator.layer())))
    )
  )

// ---------------------------------------------------------------------------------------------------

/**
 * `BENCH_ONLY=producer-aggregated` runs one throughput scenario alone (for profiling), and
 * `BENCH_ONLY=shard-limit-plain` the plain limiter's; nothing is written.
 */
const only = process.env["BENCH_ONLY"]

type Scenario = "raw-sdk" | "aggregation-loop" | "producer" | "producer-aggregated" | "producer-aggregated-offer"
const scenarioNames: ReadonlyArray<Scenario> = [
  "raw-sdk",
  "aggregation-loop",
  "producer",
  "producer-aggregated",
  "producer-aggregated-offer"
]

/** One throughput scenario in this process: a warm-up run of `WARMUP` records, then one measured. */
const runScenario = async (name: Scenario, endpoint: string): Promise<Measured> => {
  const run = (n: number) =>
    name === "raw-sdk"
      ? rawSdkLoop(endpoint, n)
      : name === "aggregation-loop"
      ? aggregationLoop(endpoint, n)
      : name === "producer-aggregated-offer"
      ? producerOfferRun(endpoint, n)
      : producerRun(endpoint, n, name === "producer-aggregated")
  await run(WARMUP)
  return await measure(RECORDS, () => run(RECORDS), { endpoint })
}

/**
 * One throughput scenario in a fresh child process (this script with `BENCH_CHILD`), as an
 * application runs one producer: in one process, the scenarios before it leave their JIT state
 * and heap to the next (the aggregating producer measured up to a fifth slower after the others).
 */
const scenarioInChild = (name: Scenario, endpoint: string): Promise<Measured> =>
  jsonFromChild("producer", [], { BENCH_CHILD: name, BENCH_ENDPOINT: endpoint })

const childScenario = process.env["BENCH_CHILD"] as Scenario | undefined

const main = async () => {
  if (childScenario !== undefined) {
    process.stdout.write(JSON.stringify(await runScenario(childScenario, process.env["BENCH_ENDPOINT"]!)))
    return
  }
  const server = await startFakeServer()
  try {
    if (only === "shard-limit-plain") {
      console.table([await plainShardLimit(server.endpoint, Number(process.env["BENCH_LIMIT_SECONDS"] ?? 10))])
      return
    }
    if (only !== undefined) {
      const m = await runScenario(only as Scenario, server.endpoint)
      console.table([{
        scenario: only,
        "records/s": Math.round(m.records / (m.wallMs / 1000)),
        "CPU µs/record": +((m.cpuMs * 1000) / m.records).toFixed(2),
        "event loop busy": `${Math.round(m.eventLoopBusy! * 100)} %`,
        "server CPU (cores)": +(m.serverCpuMs! / m.wallMs).toFixed(2),
        "busiest shard, % of limit": `${Math.round(m.busiestShardShare! * 100)} %`
      }])
      return
    }
    // `BENCH_THROUGHPUT_ONLY=1`: the throughput scenarios alone (quicker, for comparing
    // changes side by side); nothing is written.
    const throughputOnly = process.env["BENCH_THROUGHPUT_ONLY"] !== undefined
    if (!throughputOnly) console.error("peak-rss: measuring")
    const rssRecords = Number(process.env["BENCH_RSS_RECORDS"] ?? 1_000_000)
    const rss = throughputOnly ? undefined : await peakRssInChild("producer", server.endpoint, rssRecords)
    const rawRss = throughputOnly ? undefined : await peakRssInChild("raw-sdk", server.endpoint, rssRecords)
    const longRss = throughputOnly ? undefined : await peakRssInChild("producer", server.endpoint, 3 * rssRecords)

    // Rounds interleave the scenarios, each run in a fresh process, and each keeps its median, so
    // that a burst of load from elsewhere on the machine skews one sample, not the comparison.
    const samples: Record<string, Array<Measured>> = {}
    for (let round = 1; round <= ROUNDS; round++) {
      for (const name of scenarioNames) {
        console.error(`${name}: measuring (round ${round} of ${ROUNDS}, after a warm-up run)`)
        ;(samples[name] ??= []).push(await scenarioInChild(name, server.endpoint))
      }
    }
    const median = (values: Array<number>) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!
    const results: Record<string, Measured> = {}
    for (const [name, list] of Object.entries(samples)) {
      results[name] = {
        records: RECORDS,
        wallMs: median(list.map((m) => m.wallMs)),
        cpuMs: median(list.map((m) => m.cpuMs)),
        eventLoopBusy: median(list.map((m) => m.eventLoopBusy!)),
        serverCpuMs: median(list.map((m) => m.serverCpuMs! / m.wallMs)) * median(list.map((m) => m.wallMs)),
        busiestShardShare: median(list.map((m) => m.busiestShardShare!))
      }
    }
    const perSecond = (m: Measured) => m.records / (m.wallMs / 1000)
    const cpuPerRecord = (m: Measured) => (m.cpuMs * 1000) / m.records
    const raw = results["raw-sdk"]!
    const rows = Object.entries(results).map(([name, m]) => ({
      scenario: name,
      "records/s": Math.round(perSecond(m)),
      "x raw": +(perSecond(m) / perSecond(raw)).toFixed(2),
      "CPU µs/record": +cpuPerRecord(m).toFixed(2),
      "CPU x raw": +(cpuPerRecord(m) / cpuPerRecord(raw)).toFixed(2),
      // Which resource bounds the run: this process's event loop (busy near 100 %), the fake
      // server (near a whole core), or the per-shard limiter (busiest shard near its limit).
      "event loop busy": `${Math.round(m.eventLoopBusy! * 100)} %`,
      "server CPU (cores)": +(m.serverCpuMs! / m.wallMs).toFixed(2),
      "busiest shard, % of limit": `${Math.round(m.busiestShardShare! * 100)} %`
    }))
    console.table(rows)
    if (throughputOnly || rss === undefined || rawRss === undefined || longRss === undefined) return
    console.error("shard-limit (plain): measuring")
    const plainLimit = await plainShardLimit(server.endpoint, Number(process.env["BENCH_LIMIT_SECONDS"] ?? 10))
    console.error("shard-limit: measuring")
    const limit = await shardLimit(Number(process.env["BENCH_LIMIT_SECONDS"] ?? 10))

    const rssScenarios = [
      "peak-rss: producer, default settings, offerAll",
      "peak-rss: raw SDK loop (reference)",
      "peak-rss: producer, three times the records"
    ]
    console.table([rss, rawRss, longRss].map((r, i) => ({
      scenario: rssScenarios[i],
      records: r.records,
      "records/s": Math.round(r.records / (r.wallMs / 1000)),
      "peak RSS MB": Math.round(r.peakRssMb),
      "RSS before start MB": Math.round(r.baselineRssMb),
      "heap total / used MB": `${r.atPeakMb.heapTotal} / ${r.atPeakMb.heapUsed}`,
      "array buffers MB": r.atPeakMb.arrayBuffers
    })))
    console.table([{
      scenario: "shard-limit (plain, full buffer, fake server)",
      "busiest shards, % of 1000 records/s": plainLimit.busiestShardsShareOfLimit.map((s) =>
        (s * 100).toFixed(1) + " %"
      )
        .join(", "),
      "busiest second, % of limit": `${(plainLimit.busiestSecondShareOfLimit * 100).toFixed(1)} %`,
      "event loop busy": `${Math.round(plainLimit.eventLoopBusy * 100)} %`,
      "producer CPU (cores)": +plainLimit.producerCores.toFixed(2),
      "server CPU (cores)": +plainLimit.serverCores.toFixed(2)
    }])
    console.table([{
      scenario: "shard-limit (1 shard, aggregation, via proxy)",
      "share of 1 MiB/s": +(limit.shareOfLimit * 100).toFixed(1) + " %",
      "throttled records": +(limit.throttledShare * 100).toFixed(2) + " %",
      requests: limit.requests
    }])

    const out = {
      date: new Date().toISOString(),
      node: process.version,
      cpu: cpus()[0]?.model,
      cores: cpus().length,
      recordBytes: RECORD_BYTES,
      fakeServerShards: SHARDS,
      inFlight: IN_FLIGHT,
      partitionKeys: KEYS,
      rounds: ROUNDS,
      throughput: rows,
      peakRss: {
        records: rss.records,
        peakRssMb: rss.peakRssMb,
        baselineRssMb: rss.baselineRssMb,
        recordsPerSecond: rss.records / (rss.wallMs / 1000),
        atPeakMb: rss.atPeakMb,
        rawSdkPeakRssMb: rawRss.peakRssMb,
        rawSdkBaselineRssMb: rawRss.baselineRssMb,
        rawSdkAtPeakMb: rawRss.atPeakMb,
        // What the producer adds over the raw loop's own peak, in the same setting.
        producerOverRawMb: rss.peakRssMb - rawRss.peakRssMb,
        // The same producer run with three times the records: a bounded buffer peaks alike.
        threeTimesRecords: { records: longRss.records, peakRssMb: longRss.peakRssMb, atPeakMb: longRss.atPeakMb }
      },
      shardLimit: limit,
      plainShardLimit: plainLimit,
      // Issue 16, part 4: ratios measured side by side in one run.
      targets: {
        aggregatedRecordsPerSecondVsRaw: ">= 3",
        aggregatedCpuPerRecordVsRaw: "<= 0.35",
        plainCpuPerRecordVsRaw: "<= 1.1",
        plainBusiestShardShareOfLimit: ">= 95 %, <= 100 %",
        shardLimitShare: ">= 95 %, <= 1 % throttled",
        peakRssVsRaw: "<= 1.1 (1M records); 3M within 8 % of 1M"
      }
    }
    const dir = resultsDir()
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, "producer.json"), JSON.stringify(out, null, 2) + "\n")
  } finally {
    server.stop()
  }
}

await main()
