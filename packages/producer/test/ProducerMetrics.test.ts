import { ProducerMetrics, ProducerSettings } from "@effect-kinesis/producer"
import { assert, describe, it } from "@effect/vitest"

const metrics = (
  start: number,
  end: number,
  put: number,
  latencies: ReadonlyArray<number>,
  shardId: string
): ProducerMetrics.ProducerMetrics => {
  const latency = ProducerMetrics.makeHistogram()
  for (const value of latencies) latency.recordValue(value)
  const attempts = ProducerMetrics.makeHistogram()
  for (let i = 0; i < put; i++) attempts.recordValue(1)
  return {
    ...ProducerMetrics.empty(),
    startTime: start,
    endTime: end,
    userRecordsPut: put,
    kinesisRecordsPut: put / 2,
    kinesisRecordsSent: put,
    throttled: put / 2,
    latency,
    attempts,
    shards: new Map([[shardId, { userRecordsPut: put, kinesisRecordsPut: put / 2, bytesPut: 100, throttled: 0 }]])
  }
}

describe("ProducerMetrics", () => {
  it("combine sums counts, adds histograms and spans both intervals", () => {
    const a = metrics(1000, 2000, 4, [10, 20, 30, 40], "shard-a")
    const b = metrics(2000, 4000, 2, [1000, 2000], "shard-a")
    const total = ProducerMetrics.combine(a, b)
    assert.strictEqual(total.userRecordsPut, 6)
    assert.strictEqual(total.startTime, 1000)
    assert.strictEqual(total.endTime, 4000)
    assert.strictEqual(total.latency.totalCount, 6)
    assert.strictEqual(total.latency.maxValue >= 1990, true)
    assert.strictEqual(total.shards.get("shard-a")?.userRecordsPut, 6)
    assert.strictEqual(ProducerMetrics.recordsPerSecond(total), 2)
    assert.strictEqual(ProducerMetrics.userRecordsPerKinesisRecord(total), 2)
    assert.strictEqual(ProducerMetrics.successRate(total), 0.5)
    // The inputs are left as they were.
    assert.strictEqual(a.latency.totalCount, 4)
    assert.strictEqual(b.latency.totalCount, 2)
  })

  it("empty is the identity of combine", () => {
    const a = metrics(1000, 2000, 4, [10, 20, 30, 40], "shard-a")
    const total = ProducerMetrics.combine(ProducerMetrics.empty(), a)
    assert.strictEqual(total.userRecordsPut, 4)
    assert.strictEqual(total.startTime, 1000)
    assert.strictEqual(total.endTime, 2000)
    assert.strictEqual(total.latency.getValueAtPercentile(50), a.latency.getValueAtPercentile(50))
  })
})

describe("ProducerSettings", () => {
  it("resolves durations and rejects values Kinesis cannot take", () => {
    const resolved = ProducerSettings.resolve({ lingerTime: "50 millis", recordTtl: "1 minute" })
    assert.strictEqual(resolved.lingerMillis, 50)
    assert.strictEqual(resolved.recordTtlMillis, 60_000)
    assert.strictEqual(resolved.maxRecordsPerRequest, 500)
    assert.throws(() => ProducerSettings.resolve({ maxRecordsPerRequest: 501 }), RangeError)
    // An aggregate is one Kinesis record inside one request.
    assert.throws(() => ProducerSettings.resolve({ maxAggregateBytes: 6_000_000 }), RangeError)
    // A record larger than a request goes alone in its request; above Kinesis' 10 MiB it never could.
    assert.strictEqual(ProducerSettings.resolve({ maxRequestBytes: 500_000 }).maxRequestBytes, 500_000)
    assert.throws(() => ProducerSettings.resolve({ maxRecordBytes: 11 * 1024 * 1024 }), RangeError)
  })

  it("merges the metrics, tracing and logging groups field by field over the KPL's defaults", () => {
    const defaults = ProducerSettings.resolve()
    assert.deepStrictEqual(defaults.metrics, {
      level: "detailed",
      granularity: "shard",
      namespace: "KinesisProducerLibrary"
    })
    assert.deepStrictEqual(defaults.tracing, { requestSpans: true, recordSpansPerSecond: 100 })
    assert.strictEqual(defaults.logging.failureSummaryMillis, 10_000)
    const resolved = ProducerSettings.resolve({
      metrics: { level: "summary", granularity: undefined },
      tracing: { recordSpansPerSecond: 0 },
      logging: { failureSummaryInterval: "1 minute" }
    })
    assert.deepStrictEqual(resolved.metrics, {
      level: "summary",
      granularity: "shard",
      namespace: "KinesisProducerLibrary"
    })
    assert.deepStrictEqual(resolved.tracing, { requestSpans: true, recordSpansPerSecond: 0 })
    assert.strictEqual(resolved.logging.failureSummaryMillis, 60_000)
    assert.throws(() => ProducerSettings.resolve({ metrics: { level: "verbose" as "detailed" } }), RangeError)
    assert.throws(() => ProducerSettings.resolve({ metrics: { granularity: "host" as "shard" } }), RangeError)
    assert.throws(() => ProducerSettings.resolve({ tracing: { recordSpansPerSecond: -1 } }), RangeError)
  })
})
