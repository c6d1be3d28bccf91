/**
 * What the producer's KPL-named metrics cost, run on demand (not in CI):
 *
 *   npx tsc -b bench && node build/bench-ts/producerMetrics.js
 *
 * The producer of `bench/producer.ts` (`produceChunk` of 500 100-byte records, 16 requests in
 * flight, against the loopback fake Kinesis of `bench/fakeKinesis.ts`, 256 shards), each mode
 * (plain, aggregated) with metrics off (no `MetricsCollector` in the context) and with metrics at
 * the defaults, `detailed` and per `shard`, into a collector drained every second (a publisher's
 * interval is a minute; draining more often only costs more). Tracing is off in both.
 *
 * After one unmeasured run of each, `BENCH_ROUNDS` (default 7) rounds run each mode's off and on
 * back to back, the order alternating per round, so that load from elsewhere on the machine
 * falls on both alike. Reported per mode: the median CPU µs per record of each, and the median
 * of the rounds' on/off ratios (the figure the ≤ 1.05 target is about). Writes
 * bench/results/producer-metrics.json. `BENCH_ONLY=producer-aggregated:on` (or `:off`; or
 * `producer:…`) runs one alone, for profiling.
 */
import { Client, Serde } from "@effect-kinesis/core"
import { Producer } from "@effect-kinesis/producer"
import { Effect } from "effect"
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus } from "node:os"
import { join } from "node:path"
import { withDrainedCollector } from "./drainedCollector.ts"
import {
  BATCH,
  credentials,
  IN_FLIGHT,
  KEYS,
  measure,
  type Measured,
  record,
  RECORD_BYTES,
  resultsDir,
  SHARDS,
  startFakeServer,
  STREAM
} from "./fakeKinesis.ts"

const RECORDS = Number(process.env["BENCH_RECORDS"] ?? 300_000)
const WARMUP = Number(process.env["BENCH_WARMUP"] ?? RECORDS)
const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? 7)

/** Datums drained over the measured runs, to show the collector was fed. */
let drainedDatums = 0

const producerRun = (endpoint: string, total: number, aggregate: boolean, metrics: boolean) => {
  const produce = Effect.scoped(Effect.gen(function*() {
    const producer = yield* Producer.make({
      stream: STREAM,
      serde: Serde.bytes,
      settings: { aggregate, maxInFlightRequests: IN_FLIGHT }
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
  }))
  const withMetrics = withDrainedCollector(produce, (datums) => {
    drainedDatums += datums
  })
  return Effect.runPromise(
    (metrics ? withMetrics : produce).pipe(
      Effect.provide(Client.layer({ endpoint, region: "us-east-1", credentials, httpHandler: "http1" }))
    )
  )
}

/** `BENCH_ONLY=producer-aggregated:on` (or `:off`, or `producer:…`) runs one alone, for profiling; nothing is written. */
const only = process.env["BENCH_ONLY"]

const main = async () => {
  const server = await startFakeServer()
  try {
    if (only !== undefined) {
      const [name, state] = only.split(":")
      const run = () => producerRun(server.endpoint, RECORDS, name === "producer-aggregated", state === "on")
      await run()
      const m = await measure(RECORDS, run)
      console.table([{ scenario: only, "CPU µs/record": +((m.cpuMs * 1000) / m.records).toFixed(3) }])
      return
    }
    const modes = [["producer", false], ["producer-aggregated", true]] as const
    for (const [name, aggregate] of modes) {
      for (const metrics of [false, true]) {
        console.error(`${name}, metrics ${metrics ? "on" : "off"}: warming up`)
        await producerRun(server.endpoint, WARMUP, aggregate, metrics)
      }
    }
    drainedDatums = 0
    const samples: Record<string, { off: Array<Measured>; on: Array<Measured> }> = {}
    for (let round = 1; round <= ROUNDS; round++) {
      for (const [name, aggregate] of modes) {
        const order = round % 2 === 0 ? [false, true] : [true, false]
        for (const metrics of order) {
          console.error(`${name}, metrics ${metrics ? "on" : "off"}: round ${round} of ${ROUNDS}`)
          const m = await measure(RECORDS, () => producerRun(server.endpoint, RECORDS, aggregate, metrics))
          const s = samples[name] ??= { off: [], on: [] }
          ;(metrics ? s.on : s.off).push(m)
        }
      }
    }
    const median = (values: Array<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
    const cpuPerRecord = (m: Measured) => (m.cpuMs * 1000) / m.records
    const rows = Object.entries(samples).map(([name, s]) => {
      const off = median(s.off.map(cpuPerRecord))
      const on = median(s.on.map(cpuPerRecord))
      const ratios = s.on.map((m, i) => cpuPerRecord(m) / cpuPerRecord(s.off[i]!))
      return {
        scenario: name,
        "CPU µs/record, metrics off": +off.toFixed(3),
        "CPU µs/record, detailed/shard": +on.toFixed(3),
        "on/off (median of rounds)": +median(ratios).toFixed(3),
        "on/off (rounds, min–max)": `${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}`,
        "records/s off / on": `${Math.round(RECORDS / (median(s.off.map((m) => m.wallMs)) / 1000))} / ${
          Math.round(RECORDS / (median(s.on.map((m) => m.wallMs)) / 1000))
        }`
      }
    })
    console.table(rows)
    console.error(`datums drained while measuring: ${drainedDatums}`)
    const out = {
      date: new Date().toISOString(),
      node: process.version,
      cpu: cpus()[0]?.model,
      cores: cpus().length,
      recordBytes: RECORD_BYTES,
      fakeServerShards: SHARDS,
      inFlight: IN_FLIGHT,
      partitionKeys: KEYS,
      records: RECORDS,
      rounds: ROUNDS,
      metrics: { level: "detailed", granularity: "shard", drainEvery: "1 second" },
      results: rows,
      samples: Object.fromEntries(
        Object.entries(samples).map(([name, s]) => [name, {
          offCpuMicrosPerRecord: s.off.map(cpuPerRecord),
          onCpuMicrosPerRecord: s.on.map(cpuPerRecord)
        }])
      ),
      target: "on/off <= 1.05"
    }
    const dir = resultsDir()
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, "producer-metrics.json"), JSON.stringify(out, null, 2) + "\n")
  } finally {
    server.stop()
  }
}

await main()
