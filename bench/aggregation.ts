/**
 * KPL aggregation throughput: encode (aggregate) and decode (deaggregate) of 100-byte user
 * records with 1000 distinct partition keys.
 *
 *   node --conditions=@effect-kinesis/source bench/aggregation.ts
 *
 * Prints a table and writes bench/results/aggregation.json. Encode time includes building each
 * Kinesis record (copying the data and the MD5); decode time includes the MD5 check.
 */
import { Aggregation } from "@effect-kinesis/core"
import { randomBytes } from "node:crypto"
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"

const RECORDS = 500_000
const RECORD_BYTES = 100
const DISTINCT_KEYS = 1000
const RUNS = 7
const SHARD_HASH_KEY = "170141183460469231731687303715884105728"

const keys = Array.from({ length: DISTINCT_KEYS }, (_, i) => `user-${String(i).padStart(6, "0")}`)
// Enough distinct payloads that the data is not all in cache.
const payloads = Array.from({ length: 10_000 }, () => new Uint8Array(randomBytes(RECORD_BYTES)))
const records: Array<Aggregation.KinesisRecord> = Array.from({ length: RECORDS }, (_, i) => ({
  partitionKey: keys[(i * 7919) % DISTINCT_KEYS]!,
  data: payloads[i % payloads.length]!
}))

interface Sample {
  readonly wallMs: number
  readonly cpuMs: number
}

const measure = (run: () => void): Sample => {
  const cpuStart = process.cpuUsage()
  const wallStart = performance.now()
  run()
  const wallMs = performance.now() - wallStart
  const cpu = process.cpuUsage(cpuStart)
  return { wallMs, cpuMs: (cpu.user + cpu.system) / 1000 }
}

const median = (values: Array<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

const encodeAll = (maxBytes: number): Array<Aggregation.KinesisRecord> => {
  const aggregator = Aggregation.makeAggregator({ explicitHashKey: SHARD_HASH_KEY, maxBytes })
  const out: Array<Aggregation.KinesisRecord> = []
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!
    if (!aggregator.add(record)) {
      out.push(aggregator.build()!)
      aggregator.reset()
      aggregator.add(record)
    }
  }
  const last = aggregator.build()
  if (last !== undefined) out.push(last)
  return out
}

const decodeAll = (aggregates: ReadonlyArray<Aggregation.KinesisRecord>): number => {
  let count = 0
  for (const aggregate of aggregates) {
    const result = Aggregation.deaggregate(aggregate)
    if (result._tag === "Failure") throw new Error(result.failure.message)
    count += result.success.length
  }
  return count
}

interface Row {
  readonly operation: string
  readonly maxBytes: number
  readonly userRecords: number
  readonly kinesisRecords: number
  readonly recordsPerSecond: number
  readonly wallMicrosPerRecord: number
  readonly cpuMicrosPerRecord: number
}

const bench = (operation: "encode" | "decode", maxBytes: number): Row => {
  const aggregates = encodeAll(maxBytes)
  // Warm-up lets the JIT settle before timing.
  for (let i = 0; i < 2; i++) {
    if (operation === "encode") encodeAll(maxBytes)
    else decodeAll(aggregates)
  }
  const samples: Array<Sample> = []
  for (let i = 0; i < RUNS; i++) {
    samples.push(measure(() => {
      if (operation === "encode") encodeAll(maxBytes)
      else if (decodeAll(aggregates) !== RECORDS) throw new Error("decode lost records")
    }))
  }
  const wallMs = median(samples.map((s) => s.wallMs))
  const cpuMs = median(samples.map((s) => s.cpuMs))
  return {
    operation,
    maxBytes,
    userRecords: RECORDS,
    kinesisRecords: aggregates.length,
    recordsPerSecond: Math.round(RECORDS / (wallMs / 1000)),
    wallMicrosPerRecord: Number(((wallMs * 1000) / RECORDS).toFixed(3)),
    cpuMicrosPerRecord: Number(((cpuMs * 1000) / RECORDS).toFixed(3))
  }
}

const rows: Array<Row> = []
for (const maxBytes of [51_200, Aggregation.DEFAULT_MAX_BYTES]) {
  rows.push(bench("encode", maxBytes))
  rows.push(bench("decode", maxBytes))
}

console.log(
  `${RECORDS} user records of ${RECORD_BYTES} B, ${DISTINCT_KEYS} distinct partition keys, median of ${RUNS} runs`
)
console.table(rows)

const environment = { node: process.version, cpu: cpus()[0]?.model ?? "unknown", cores: cpus().length }
const resultsDir = join(import.meta.dirname, "results")
mkdirSync(resultsDir, { recursive: true })
writeFileSync(
  join(resultsDir, "aggregation.json"),
  JSON.stringify(
    {
      date: new Date().toISOString(),
      environment,
      workload: { userRecords: RECORDS, recordBytes: RECORD_BYTES, distinctKeys: DISTINCT_KEYS, runs: RUNS },
      results: rows
    },
    null,
    2
  ) + "\n"
)
