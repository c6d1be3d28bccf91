import { CloudWatchMetrics } from "@effect-kinesis/cloudwatch"
import { MetricsCollector } from "@effect-kinesis/core"
import { CloudWatchEndpoint } from "@effect-kinesis/testing"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Exit, Layer, Logger, Metric, Scope } from "effect"

const KPL = "KinesisProducerLibrary"

/** Runs `use` with a CloudWatch publisher pointed at the fake endpoint, then closes it (which flushes). */
const withPublisher = <A>(
  endpoint: CloudWatchEndpoint.CloudWatchEndpoint["Service"],
  options: CloudWatchMetrics.Options,
  use: (
    collector: MetricsCollector.MetricsCollector["Service"],
    publisher: CloudWatchMetrics.CloudWatchMetrics["Service"]
  ) => Effect.Effect<A>
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(
      CloudWatchMetrics.layer({ ...endpoint.clientConfig, ...options }),
      scope
    )
    const collector = context.mapUnsafe.get(MetricsCollector.MetricsCollector.key) as MetricsCollector.MetricsCollector[
      "Service"
    ]
    const publisher = context.mapUnsafe.get(
      CloudWatchMetrics.CloudWatchMetrics.key
    ) as CloudWatchMetrics.CloudWatchMetrics[
      "Service"
    ]
    const result = yield* use(collector, publisher)
    yield* Scope.close(scope, Exit.void)
    return { result, status: yield* publisher.status }
  })

const key = (name: string, unit: MetricsCollector.MetricUnit, dimensions: Record<string, string>, namespace = KPL) => ({
  namespace,
  name,
  unit,
  dimensions: Object.entries(dimensions).map(([name, value]) => ({ name, value }))
})

const PRODUCER_SHARD_METRICS: ReadonlyArray<readonly [string, MetricsCollector.MetricUnit]> = [
  ["UserRecordsReceived", "Count"],
  ["UserRecordsPut", "Count"],
  ["UserRecordsDataPut", "Bytes"],
  ["KinesisRecordsPut", "Count"],
  ["KinesisRecordsDataPut", "Bytes"],
  ["AllErrors", "Count"],
  ["RetriesPerRecord", "Count"],
  ["BufferingTime", "Milliseconds"],
  ["UserRecordsPerKinesisRecord", "Count"],
  ["UserRecordsPending", "Count"]
]

describe("CloudWatchMetrics", () => {
  it.live("names, units, dimensions and statistic sets arrive on the wire as recorded; the last interval is sent at close", () =>
    Effect.gen(function*() {
      const endpoint = yield* CloudWatchEndpoint.make()
      const before = Date.now()
      // An interval longer than the test: everything that arrives was sent by the flush at close.
      const { status } = yield* withPublisher(endpoint, { interval: "1 hour" }, (collector) =>
        Effect.sync(() => {
          const put = collector.series(key("UserRecordsPut", "Count", { StreamName: "orders", ShardId: "shardId-1" }))
          put.record(3)
          put.record(7)
          put.recordStatistics({ sampleCount: 2, sum: 4, minimum: 1, maximum: 3 })
          collector.series(key("BufferingTime", "Milliseconds", { StreamName: "orders" })).record(12.5)
          collector.series(key("RecordsProcessed", "Count", { Operation: "ProcessTask", ShardId: "s" }, "my-app"))
            .record(100)
        }))
      const after = Date.now()
      const calls = yield* endpoint.calls
      expect(yield* endpoint.rejections).toEqual([])
      // One namespace per call.
      expect(calls.map((c) => c.namespace).sort()).toEqual([KPL, "my-app"])
      expect(calls.every((c) => c.protocol === "json")).toBe(true)
      const datums = calls.flatMap((c) => c.datums)
      const byName = new Map(datums.map((d) => [d.metricName, d]))
      expect(byName.get("UserRecordsPut")).toMatchObject({
        namespace: KPL,
        unit: "Count",
        storageResolution: 60,
        statisticValues: { sampleCount: 4, sum: 14, minimum: 1, maximum: 7 },
        value: undefined,
        values: undefined
      })
      expect(byName.get("UserRecordsPut")!.dimensions).toEqual([
        { name: "StreamName", value: "orders" },
        { name: "ShardId", value: "shardId-1" }
      ])
      expect(byName.get("BufferingTime")).toMatchObject({
        unit: "Milliseconds",
        statisticValues: { sampleCount: 1, sum: 12.5, minimum: 12.5, maximum: 12.5 }
      })
      expect(byName.get("RecordsProcessed")).toMatchObject({
        namespace: "my-app",
        dimensions: [{ name: "Operation", value: "ProcessTask" }, { name: "ShardId", value: "s" }],
        statisticValues: { sampleCount: 1, sum: 100, minimum: 100, maximum: 100 }
      })
      // Timestamp: the interval's end, when the layer closed; one timestamp for the whole interval.
      const stamps = new Set(datums.map((d) => d.timestamp))
      expect(stamps.size).toBe(1)
      const stamp = [...stamps][0]!
      expect(stamp).toBeGreaterThanOrEqual(before)
      expect(stamp).toBeLessThanOrEqual(after)
      expect(status).toMatchObject({ sentIntervals: 1, sentDatums: 3, failedRequests: 0, droppedIntervals: 0 })
    }))

  it.live(
    "10,000 shards' producer metrics in one interval: every datum arrives once, every request within limits",
    () =>
      Effect.gen(function*() {
        const endpoint = yield* CloudWatchEndpoint.make()
        const shards = 10_000
        const { status } = yield* withPublisher(
          endpoint,
          { interval: "1 hour", closeTimeout: "50 seconds" },
          (collector) =>
            Effect.sync(() => {
              for (let shard = 0; shard < shards; shard++) {
                const dimensions = { StreamName: "orders", ShardId: `shardId-${String(shard).padStart(12, "0")}` }
                for (const [name, unit] of PRODUCER_SHARD_METRICS) {
                  collector.series(key(name, unit, dimensions)).record(shard)
                }
              }
              // One metric with the most dimensions CloudWatch allows and long values: here bytes, not datums, cut requests.
              for (let i = 0; i < 100; i++) {
                const dimensions: Record<string, string> = {}
                for (let d = 0; d < 30; d++) dimensions[`Dimension${d}`] = `${i}-`.padEnd(1024, "x")
                collector.series(key("Wide", "Count", dimensions, "Wide")).record(i)
              }
            })
        )
        const calls = yield* endpoint.calls
        expect(yield* endpoint.rejections).toEqual([])
        expect((yield* endpoint.stats).rejected).toBe(0)
        const expected = shards * PRODUCER_SHARD_METRICS.length + 100
        const seen = new Set<string>()
        for (const call of calls) {
          expect(call.datums.length).toBeLessThanOrEqual(CloudWatchEndpoint.limits.maxDatumsPerRequest)
          expect(call.bytes).toBeLessThanOrEqual(CloudWatchEndpoint.limits.maxRequestBytes)
          expect(new Set(call.datums.map((d) => d.namespace)).size).toBe(1)
          for (const d of call.datums) {
            seen.add(`${d.namespace}/${d.metricName}/${d.dimensions.map((x) => x.value).join("/")}`)
          }
        }
        const total = calls.reduce((n, call) => n + call.datums.length, 0)
        expect(total).toBe(expected)
        expect(seen.size).toBe(expected)
        // 100 datums of ~38 KB each cannot fit one request.
        expect(calls.filter((c) => c.namespace === "Wide").length).toBeGreaterThan(1)
        // Large bodies go gzip-compressed, as the SDK sends them.
        expect(calls.some((c) => c.compressed)).toBe(true)
        expect(status).toMatchObject({ sentDatums: expected, failedRequests: 0, skippedDatums: 0 })
      }),
    120_000
  )

  it.live("CloudWatch hanging: recording never waits, buffered intervals stay capped, the oldest are dropped and counted, close is bounded", () =>
    Effect.gen(function*() {
      const endpoint = yield* CloudWatchEndpoint.make({ fault: "hang" })
      const droppedBefore = (yield* Metric.value(CloudWatchMetrics.droppedIntervals)).count
      const rounds = 12
      const capacity = 2
      const { result: samples, status } = yield* withPublisher(
        endpoint,
        { interval: "40 millis", maxBufferedIntervals: capacity, requestTimeout: "1 hour", closeTimeout: "300 millis" },
        (collector, publisher) =>
          Effect.gen(function*() {
            const series = Array.from({ length: 200 }, (_, i) =>
              collector.series(key("UserRecordsPut", "Count", { ShardId: String(i) })))
            const buffered: Array<number> = []
            let recorded = 0
            for (let round = 0; round < rounds; round++) {
              for (let i = 0; i < 20_000; i++) {
                series[i % series.length]!.record(1)
                recorded++
              }
              // Let several intervals end, so that every round lands in an interval of its own, also when
              // a loaded machine delays the publisher's timer (at 100 ms, one run under load merged two).
              yield* Effect.sleep("250 millis")
              buffered.push((yield* publisher.status).bufferedIntervals)
            }
            return { buffered, recorded }
          })
      )
      // Every record call returned: the loop ran to its end while no request ever got an answer.
      expect(samples.recorded).toBe(rounds * 20_000)
      expect(status.sentRequests).toBe(0)
      expect((yield* endpoint.stats).hung).toBeGreaterThanOrEqual(1)
      // Memory bounded: never more than `capacity` intervals waiting.
      expect(Math.max(...samples.buffered)).toBeLessThanOrEqual(capacity)
      // 12 non-empty intervals (at least), one taken by the hung sender, `capacity` buffered: the rest dropped.
      expect(status.droppedIntervals).toBeGreaterThanOrEqual(rounds - 1 - capacity)
      const droppedAfter = (yield* Metric.value(CloudWatchMetrics.droppedIntervals)).count
      expect(droppedAfter - droppedBefore).toBe(status.droppedIntervals)
    }))

  it.live("recording keeps its throughput while CloudWatch fails or hangs (compared with a healthy CloudWatch)", () =>
    Effect.gen(function*() {
      // Records per millisecond of a workload that shares the thread with the publisher: rounds of recording into
      // 500 series, yielding between rounds so that the sender, timers and sockets run, over many intervals.
      const SERIES = 500
      const throughput = (settings: Partial<CloudWatchEndpoint.EndpointSettings>) =>
        Effect.scoped(Effect.gen(function*() {
          const endpoint = yield* CloudWatchEndpoint.make(settings)
          const { result, status } = yield* withPublisher(
            endpoint,
            { interval: "25 millis", maxBufferedIntervals: 4, requestTimeout: "1 hour", closeTimeout: "100 millis" },
            (collector) =>
              Effect.gen(function*() {
                const series = Array.from({ length: SERIES }, (_, i) =>
                  collector.series(key("UserRecordsPut", "Count", { ShardId: String(i) })))
                const start = performance.now()
                let recorded = 0
                for (let round = 0; round < 300; round++) {
                  for (let i = 0; i < 20_000; i++) {
                    series[i % SERIES]!.record(i)
                  }
                  recorded += 20_000
                  yield* Effect.yieldNow
                }
                return recorded / (performance.now() - start)
              })
          )
          return { perMilli: result, status, stats: yield* endpoint.stats }
        }))
      type Run = Effect.Success<ReturnType<typeof throughput>>
      // A warm-up run first (the JIT), then each case twice, interleaved; the better run of each counts.
      yield* throughput({})
      const runs = { healthy: [] as Array<Run>, failing: [] as Array<Run>, hanging: [] as Array<Run> }
      for (let i = 0; i < 2; i++) {
        runs.healthy.push(yield* throughput({}))
        runs.failing.push(yield* throughput({ fault: "InternalFailure" }))
        runs.hanging.push(yield* throughput({ fault: "hang" }))
      }
      const best = (rs: Array<Run>) => rs.reduce((a, b) => (a.perMilli >= b.perMilli ? a : b))
      const healthy = best(runs.healthy)
      const failing = best(runs.failing)
      const hanging = best(runs.hanging)
      // The healthy runs did send, the others met their faults.
      expect(Math.min(...runs.healthy.map((r) => r.status.sentRequests))).toBeGreaterThan(0)
      expect(Math.min(...runs.failing.map((r) => r.stats.failed))).toBeGreaterThan(0)
      expect(Math.min(...runs.hanging.map((r) => r.stats.hung))).toBeGreaterThan(0)
      expect(failing.perMilli / healthy.perMilli).toBeGreaterThan(0.5)
      expect(hanging.perMilli / healthy.perMilli).toBeGreaterThan(0.5)
    }))

  it.live("CloudWatch throttling: a request is retried maxRetries times, then given up on and counted", () =>
    Effect.gen(function*() {
      const endpoint = yield* CloudWatchEndpoint.make({ fault: "Throttling" })
      const { status } = yield* withPublisher(
        endpoint,
        { interval: "1 hour", maxRetries: 2 },
        (collector) => Effect.sync(() => collector.series(key("UserRecordsPut", "Count", {})).record(1))
      )
      const stats = yield* endpoint.stats
      expect(stats.failed).toBe(3)
      expect(status).toMatchObject({ sentRequests: 0, failedRequests: 1, sentIntervals: 0 })
    }))

  it.live("a transient 5xx is retried and the datums arrive once", () =>
    Effect.gen(function*() {
      const endpoint = yield* CloudWatchEndpoint.make({ fault: "ServiceUnavailable", faultRate: 1 })
      const { status } = yield* withPublisher(endpoint, { interval: "1 hour", maxRetries: 5 }, (collector) =>
        Effect.gen(function*() {
          collector.series(key("UserRecordsPut", "Count", {})).record(1)
          // CloudWatch recovers while the close flush retries.
          yield* Effect.forkDetach(Effect.andThen(Effect.sleep("700 millis"), endpoint.update({ fault: "none" })))
        }))
      const calls = yield* endpoint.calls
      expect((yield* endpoint.stats).failed).toBeGreaterThanOrEqual(1)
      expect(
        calls.flatMap((c) =>
          c.datums
        ).map((d) =>
          d.metricName
        )
      ).toEqual(["UserRecordsPut"])
      expect(status).toMatchObject({ sentRequests: 1, failedRequests: 0 })
    }))

  it.live("datums CloudWatch would reject are skipped and counted, the rest sent", () =>
    Effect.gen(function*() {
      const endpoint = yield* CloudWatchEndpoint.make()
      const { status } = yield* withPublisher(endpoint, { interval: "1 hour" }, (collector) =>
        Effect.sync(() => {
          collector.series(key("Good", "Count", {})).record(1)
          collector.series(key("Infinite", "Count", {})).record(Infinity)
          const many: Record<string, string> = {}
          for (let d = 0; d < 31; d++) many[`D${d}`] = "v"
          collector.series(key("TooManyDimensions", "Count", many)).record(1)
        }))
      expect(yield* endpoint.rejections).toEqual([])
      expect((yield* endpoint.calls).flatMap((c) => c.datums).map((d) => d.metricName)).toEqual(["Good"])
      expect(status).toMatchObject({ skippedDatums: 2, sentDatums: 1 })
    }))

  it.live("datums whose dimensions CloudWatch refuses (duplicate names, non-ASCII, blank, control characters, a name starting with ':'), or a non-ASCII namespace, are skipped, not sent to poison their request", () =>
    Effect.gen(function*() {
      const endpoint = yield* CloudWatchEndpoint.make()
      const bad: ReadonlyArray<ReadonlyArray<MetricsCollector.Dimension>> = [
        [{ name: "WorkerIdentifier", value: "a" }, { name: "WorkerIdentifier", value: "b" }],
        [{ name: "WorkerIdentifier", value: "w\u00f6rker-1" }],
        [{ name: "WorkerIdentifier", value: "   " }],
        [{ name: "WorkerIdentifier", value: "worker\n1" }],
        [{ name: ":ShardId", value: "shardId-1" }]
      ]
      const { status } = yield* withPublisher(endpoint, { interval: "1 hour" }, (collector) =>
        Effect.sync(() => {
          collector.series(key("Good", "Count", { WorkerIdentifier: "worker-1" })).record(1)
          for (const dimensions of bad) {
            collector.series({ namespace: KPL, name: "Bad", unit: "Count", dimensions }).record(1)
          }
          // Its own request would be refused; skipped with the datums above.
          collector.series({ namespace: "b\u00e9b\u00e9-app", name: "Bad", unit: "Count", dimensions: [] }).record(1)
        }))
      expect(yield* endpoint.rejections).toEqual([])
      expect((yield* endpoint.calls).flatMap((c) => c.datums).map((d) => d.metricName)).toEqual(["Good"])
      expect(status).toMatchObject({ skippedDatums: bad.length + 1, sentDatums: 1, failedRequests: 0 })
    }))

  it.live("a datum CloudWatch refuses for a reason the publisher does not check costs that datum, not its request of 1000; refusing all costs a bounded number of requests", () =>
    Effect.gen(function*() {
      const endpoint = yield* CloudWatchEndpoint.make({ refuseMetricNames: ["Refused"] })
      const { status } = yield* withPublisher(endpoint, { interval: "1 hour" }, (collector) =>
        Effect.sync(() => {
          for (let i = 0; i < 1500; i++) collector.series(key("Good", "Count", { ShardId: `shardId-${i}` })).record(1)
          collector.series(key("Refused", "Count", { ShardId: "shardId-7" })).record(1)
        }))
      const arrived = (yield* endpoint.calls).flatMap((c) => c.datums)
      expect(arrived.filter((d) => d.metricName === "Good")).toHaveLength(1500)
      expect(arrived.filter((d) => d.metricName === "Refused")).toHaveLength(0)
      // Every request within the limits still; only the refused datum is lost, counted as one failed request.
      expect((yield* endpoint.calls).every((c) => c.datums.length <= 1000)).toBe(true)
      expect(status).toMatchObject({ sentDatums: 1500, failedRequests: 1 })

      // CloudWatch refusing every datum: the halving stops after a few dozen requests instead of one per datum.
      const refusingAll = yield* CloudWatchEndpoint.make({ refuseMetricNames: ["Good"] })
      const warnings: Array<string> = []
      const collect = Logger.make(({ logLevel, message }) => {
        if (logLevel === "Warn") warnings.push(String(Array.isArray(message) ? message[0] : message))
      })
      const all = yield* withPublisher(refusingAll, { interval: "1 hour" }, (collector) =>
        Effect.sync(() => {
          for (let i = 0; i < 1000; i++) collector.series(key("Good", "Count", { ShardId: `shardId-${i}` })).record(1)
        })).pipe(Effect.provide(Logger.layer([collect])))
      const stats = yield* refusingAll.stats
      expect(stats.accepted).toBe(0)
      expect(stats.rejected).toBeGreaterThan(20)
      expect(stats.rejected).toBeLessThanOrEqual(2 * 2 * 10 + 1)
      expect(all.status.sentDatums).toBe(0)
      // One line for the request and its halves.
      expect(warnings.filter((w) => w.includes("PutMetricData failed"))).toEqual([
        expect.stringMatching(
          /^CloudWatch metrics: PutMetricData failed, 1000 datums of KinesisProducerLibrary lost \(in \d+ requests\): InvalidParameterValue/
        )
      ])
    }))

  it.live("layerConfig reads the endpoint, region, interval and buffer from the environment, credentials from the SDK's chain", () =>
    Effect.gen(function*() {
      const defaults = yield* CloudWatchMetrics.options.parse(ConfigProvider.fromUnknown({}))
      expect(defaults).toMatchObject({ endpoint: undefined, region: undefined, maxBufferedIntervals: 10 })
      expect(Duration.toMillis(Duration.fromInputUnsafe(defaults.interval!))).toBe(60_000)
      const endpoint = yield* CloudWatchEndpoint.make()
      const env = {
        AWS_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY
      }
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          process.env.AWS_ACCESS_KEY_ID = "from-env"
          process.env.AWS_SECRET_ACCESS_KEY = "from-env"
        }),
        () =>
          Effect.sync(() => {
            for (const [name, value] of Object.entries(env)) {
              if (value === undefined) delete process.env[name]
              else process.env[name] = value
            }
          })
      )
      yield* Effect.gen(function*() {
        const collector = yield* MetricsCollector.MetricsCollector
        collector.series(key("UserRecordsPut", "Count", {})).record(2)
      }).pipe(
        Effect.provide(CloudWatchMetrics.layerConfig.pipe(
          Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({
            CLOUDWATCH_ENDPOINT: endpoint.endpoint,
            AWS_REGION: "eu-west-1",
            CLOUDWATCH_METRICS_INTERVAL: "1 hour",
            CLOUDWATCH_METRICS_MAX_BUFFERED_INTERVALS: "3"
          })))
        ))
      )
      const datums = (yield* endpoint.calls).flatMap((c) => c.datums)
      expect(datums.map((d) => [d.metricName, d.statisticValues?.sum])).toEqual([["UserRecordsPut", 2]])
    }))
})
