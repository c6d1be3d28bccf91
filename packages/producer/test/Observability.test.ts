import { Client, MetricsCollector, Serde } from "@effect-kinesis/core"
import { Producer, type ProducerSettings } from "@effect-kinesis/producer"
import { FaultProxy, KinesisEmulator, StreamFixtures } from "@effect-kinesis/testing"
import { assert, layer } from "@effect/vitest"
import { Cause, Effect, Layer, Logger, Option, References, Tracer } from "effect"

const TestLayer = FaultProxy.layer().pipe(Layer.provideMerge(KinesisEmulator.layer()))
const viaProxy = Layer.unwrap(Effect.map(FaultProxy.FaultProxy, (p) => Client.layer(p.clientConfig)))

type Datum = MetricsCollector.MetricDatum

const records = (count: number, prefix: string) =>
  Array.from({ length: count }, (_, i) => ({ partitionKey: `${prefix}-key-${i % 97}`, data: `${prefix}-${i}` }))

/** The KPL's metrics: unit, level, and whether the KPL keeps it per shard. */
const KPL = {
  UserRecordsReceived: ["Count", "detailed", false],
  UserRecordsPending: ["Count", "detailed", false],
  UserRecordsPut: ["Count", "summary", true],
  UserRecordsDataPut: ["Bytes", "detailed", true],
  KinesisRecordsPut: ["Count", "summary", true],
  KinesisRecordsDataPut: ["Bytes", "detailed", true],
  ErrorsByCode: ["Count", "summary", true],
  AllErrors: ["Count", "summary", true],
  RetriesPerRecord: ["Count", "detailed", true],
  UserRecordExpired: ["Count", "summary", true],
  BufferingTime: ["Milliseconds", "summary", true],
  RequestTime: ["Milliseconds", "detailed", false],
  UserRecordsPerKinesisRecord: ["Count", "detailed", true],
  KinesisRecordsPerPutRecordsRequest: ["Count", "detailed", false],
  UserRecordsPerPutRecordsRequest: ["Count", "detailed", false]
} as const

const dims = (d: Datum) => d.dimensions.map((x) => x.name).filter((name) => name !== "ErrorCode").sort().join("+")

/** The datum of `name` with exactly these dimensions (ErrorCode aside), if any. */
const find = (datums: ReadonlyArray<Datum>, name: string, dimensions: Record<string, string>) =>
  datums.find((d) =>
    d.name === name && d.dimensions.length === Object.keys(dimensions).length &&
    d.dimensions.every((x) => dimensions[x.name] === x.value)
  )

const sumOf = (datums: ReadonlyArray<Datum>, name: string, dimensions: Record<string, string> = {}) =>
  find(datums, name, dimensions)?.statistics.sum ?? 0

/** Produces `input` in one chunk with a collector in the context, closes, and drains the collector. */
const produceMeasured = (
  stream: string,
  input: ReadonlyArray<Producer.ProducerRecord<string>>,
  settings: Partial<ProducerSettings.ProducerSettings>
) =>
  Effect.gen(function*() {
    const collector = yield* MetricsCollector.make
    const results = yield* Effect.scoped(Effect.gen(function*() {
      const producer = yield* Producer.make({ stream, serde: Serde.string, settings })
      return yield* producer.produceChunk(input)
    })).pipe(Effect.provideService(MetricsCollector.MetricsCollector, collector))
    const interval = yield* collector.drain
    return { results, datums: interval.datums }
  })

layer(TestLayer, { timeout: 120_000, excludeTestServices: true })("Producer observability", (it) => {
  it.effect(
    "detailed, per shard: the KPL's names, units and dimension trees, with values matching what was produced through throttling",
    () =>
      Effect.gen(function*() {
        const proxy = yield* FaultProxy.FaultProxy
        const stream = yield* StreamFixtures.stream({ shardCount: 2 })
        yield* proxy.update({ throttleRate: 0.3 })
        yield* proxy.resetStats
        const n = 1500
        const { datums, results } = yield* produceMeasured(stream.streamName, records(n, "m"), {
          aggregate: true,
          maxAggregateBytes: 2000
        })
        const stats = yield* proxy.stats
        yield* proxy.reset

        // Every datum is one of the KPL's, with its unit, in one of the KPL's dimension trees.
        for (const d of datums) {
          const def = KPL[d.name as keyof typeof KPL]
          assert.isDefined(def, d.name)
          assert.strictEqual(d.unit, def[0], d.name)
          assert.strictEqual(d.namespace, "KinesisProducerLibrary")
          const shape = dims(d)
          assert.include(def[2] ? ["", "StreamName", "ShardId+StreamName"] : ["", "StreamName"], shape, d.name)
          if (shape !== "") {
            assert.strictEqual(d.dimensions.find((x) => x.name === "StreamName")!.value, stream.streamName)
          }
        }
        const names = new Set(datums.map((d) => d.name))
        for (const name of Object.keys(KPL)) {
          if (name !== "UserRecordExpired") assert.isTrue(names.has(name), `${name} recorded`)
        }

        // Values: what the producer did, as the KPL counts it.
        const s = { StreamName: stream.streamName }
        const put = find(datums, "UserRecordsPut", {})!.statistics
        assert.strictEqual(put.sum, n)
        assert.strictEqual(put.sampleCount, n)
        assert.strictEqual(sumOf(datums, "UserRecordsPut", s), n)
        assert.strictEqual(sumOf(datums, "UserRecordsReceived", {}), n)
        assert.strictEqual(sumOf(datums, "UserRecordsDataPut", {}), results.length === n ? input(n) : -1)
        const byShard = new Map<string, number>()
        for (const r of results) byShard.set(r.shardId, (byShard.get(r.shardId) ?? 0) + 1)
        assert.strictEqual(byShard.size, 2)
        for (const [shardId, count] of byShard) {
          assert.strictEqual(sumOf(datums, "UserRecordsPut", { ...s, ShardId: shardId }), count)
        }
        const attempts = results.reduce((total, r) => total + r.attempts, 0)
        assert.strictEqual(sumOf(datums, "RetriesPerRecord", {}), attempts - n)
        assert.strictEqual(find(datums, "BufferingTime", {})!.statistics.sampleCount, attempts)
        // Kinesis records: written ones as the proxy forwarded them, throttled ones by error code.
        const forwarded = Object.values(stats.shards[stream.streamName] ?? {}).reduce(
          (total, shard) => total + shard.forwardedRecords,
          0
        )
        assert.isAbove(stats.throttledRecords, 0)
        assert.strictEqual(sumOf(datums, "KinesisRecordsPut", {}), forwarded)
        assert.strictEqual(
          find(datums, "KinesisRecordsPut", {})!.statistics.sampleCount,
          forwarded + stats.throttledRecords
        )
        assert.strictEqual(
          sumOf(datums, "ErrorsByCode", { ErrorCode: "ProvisionedThroughputExceededException" }),
          stats.throttledRecords
        )
        assert.strictEqual(
          sumOf(datums, "ErrorsByCode", { ErrorCode: "ProvisionedThroughputExceededException", ...s }),
          stats.throttledRecords
        )
        assert.strictEqual(sumOf(datums, "AllErrors", {}), stats.throttledRecords)
        // ErrorsByCode's root node counts every code.
        assert.strictEqual(sumOf(datums, "ErrorsByCode", {}), stats.throttledRecords)
        assert.strictEqual(find(datums, "RequestTime", {})!.statistics.sampleCount, stats.requests["PutRecords"])
        assert.isAbove(find(datums, "UserRecordsPerKinesisRecord", {})!.statistics.maximum, 1)
        assert.strictEqual(sumOf(datums, "UserRecordsPerPutRecordsRequest", {}), attempts)
        // A node's value is the sum of its children's.
        for (const name of ["UserRecordsPut", "KinesisRecordsPut", "AllErrors", "BufferingTime"]) {
          const shards = datums.filter((d) => d.name === name && dims(d) === "ShardId+StreamName")
          assert.closeTo(shards.reduce((t, d) => t + d.statistics.sum, 0), sumOf(datums, name, s), 1e-6, name)
        }
      }).pipe(Effect.provide(viaProxy))
  )

  it.effect("summary level keeps the summary metrics only; global granularity records them without dimensions", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 2 })
      const { datums } = yield* produceMeasured(stream.streamName, records(200, "g"), {
        metrics: { level: "summary", granularity: "global", namespace: "Orders" }
      })
      assert.isAbove(datums.length, 0)
      for (const d of datums) {
        assert.strictEqual(KPL[d.name as keyof typeof KPL][1], "summary", d.name)
        assert.deepStrictEqual(d.dimensions, [], d.name)
        assert.strictEqual(d.namespace, "Orders")
      }
      assert.strictEqual(sumOf(datums, "UserRecordsPut"), 200)
    }).pipe(Effect.provide(viaProxy)))

  it.effect("stream granularity adds StreamName and no ShardId; level none records nothing", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 2 })
      const { datums } = yield* produceMeasured(stream.streamName, records(100, "s"), {
        metrics: { granularity: "stream" }
      })
      assert.deepStrictEqual(new Set(datums.map(dims)), new Set(["", "StreamName"]))
      assert.strictEqual(sumOf(datums, "UserRecordsPut", { StreamName: stream.streamName }), 100)
      const none = yield* produceMeasured(stream.streamName, records(100, "n"), { metrics: { level: "none" } })
      assert.deepStrictEqual(none.datums, [])
    }).pipe(Effect.provide(viaProxy)))

  it.effect("records that expire count as UserRecordsPut 0 and UserRecordExpired 1 on their shard", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy.FaultProxy
      const stream = yield* StreamFixtures.stream({ shardCount: 1 })
      yield* proxy.update({ throttleRate: 1 })
      const collector = yield* MetricsCollector.make
      yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({
          stream: stream.streamName,
          serde: Serde.string,
          settings: { recordTtl: "400 millis", maxAttempts: 1000 },
          onError: () => Effect.void
        })
        yield* producer.offerAll(records(7, "x"))
        yield* Effect.sleep("1 second")
      })).pipe(Effect.provideService(MetricsCollector.MetricsCollector, collector))
      yield* proxy.reset
      const { datums } = yield* collector.drain
      const shard = { StreamName: stream.streamName, ShardId: stream.shards[0]!.shardId }
      const put = find(datums, "UserRecordsPut", shard)!.statistics
      assert.deepStrictEqual([put.sampleCount, put.sum, put.minimum, put.maximum], [7, 0, 0, 0])
      assert.strictEqual(sumOf(datums, "UserRecordExpired", shard), 7)
      assert.strictEqual(sumOf(datums, "KinesisRecordsPut", shard), 0)
      assert.isAbove(
        sumOf(datums, "ErrorsByCode", { ErrorCode: "ProvisionedThroughputExceededException", ...shard }),
        0
      )
    }).pipe(Effect.provide(viaProxy)))

  it.effect(
    "spans: one per PutRecords request with its outcome, and one per record offered inside a span, child of it, linked to its request",
    () =>
      Effect.gen(function*() {
        const proxy = yield* FaultProxy.FaultProxy
        const stream = yield* StreamFixtures.stream({ shardCount: 2 })
        const spans: Array<Tracer.NativeSpan> = []
        const tracer = Tracer.make({
          span(options) {
            const span = new Tracer.NativeSpan(options)
            spans.push(span)
            return span
          }
        })
        yield* proxy.update({ throttleRate: 0.3 })
        yield* proxy.resetStats
        const { outside, traced } = yield* Effect.scoped(Effect.gen(function*() {
          const producer = yield* Producer.make({ stream: stream.streamName, serde: Serde.string })
          const traced = yield* producer.produceChunk(records(5, "t")).pipe(Effect.withSpan("app.orders"))
          const outside = yield* producer.produceChunk(records(300, "o"))
          return { outside, traced }
        })).pipe(Effect.provideService(Tracer.Tracer, tracer))
        const stats = yield* proxy.stats
        yield* proxy.reset

        const attr = (span: Tracer.NativeSpan, key: string) => span.attributes.get(key)
        const requests = spans.filter((s) => s.name === "kinesis.producer.PutRecords")
        assert.strictEqual(requests.length, stats.requests["PutRecords"])
        for (const r of requests) {
          assert.strictEqual(r.status._tag, "Ended")
          assert.isTrue(Option.isNone(r.parent))
          assert.strictEqual(r.kind, "client")
          assert.strictEqual(attr(r, "aws.kinesis.stream_name"), stream.streamName)
          assert.include(["ok", "partial", "all-failed"], attr(r, "aws.kinesis.outcome"))
          assert.isAbove(attr(r, "aws.kinesis.shard_count") as number, 0)
          assert.strictEqual(
            (attr(r, "aws.kinesis.shard_ids") as Array<string>).length,
            attr(r, "aws.kinesis.shard_count")
          )
        }
        const total = (key: string) => requests.reduce((t, r) => t + (attr(r, key) as number), 0)
        assert.strictEqual(
          total("aws.kinesis.records"),
          (stats.requests["PutRecords"] ?? 0) === 0 ? -1 : total("aws.kinesis.user_records")
        )
        assert.isAbove(stats.throttledRecords, 0)
        assert.strictEqual(total("aws.kinesis.throttled_records"), stats.throttledRecords)
        assert.strictEqual(total("aws.kinesis.failed_records"), stats.throttledRecords)
        assert.strictEqual(total("aws.kinesis.retried_records"), stats.throttledRecords)
        assert.strictEqual(
          total("aws.kinesis.records"),
          traced.length + outside.length + stats.throttledRecords
        )

        const app = spans.find((s) => s.name === "app.orders")!
        const recordSpans = spans.filter((s) => s.name === "kinesis.producer.record")
        // Only the records offered inside the application's span.
        assert.strictEqual(recordSpans.length, traced.length)
        for (const [i, result] of traced.entries()) {
          const span = recordSpans[i]!
          assert.strictEqual(span.status._tag, "Ended")
          assert.strictEqual(Option.getOrThrow(span.parent).spanId, app.spanId)
          assert.strictEqual(span.traceId, app.traceId)
          assert.strictEqual(span.kind, "producer")
          assert.strictEqual(attr(span, "aws.kinesis.stream_name"), stream.streamName)
          assert.strictEqual(attr(span, "aws.kinesis.shard_id"), result.shardId)
          assert.strictEqual(attr(span, "aws.kinesis.sequence_number"), result.sequenceNumber)
          assert.strictEqual(attr(span, "aws.kinesis.attempts"), result.attempts)
          // Linked to the request that wrote it.
          const request = requests.find((r) => r.spanId === span.links.at(-1)?.span.spanId)
          assert.isDefined(request)
          assert.include(attr(request!, "aws.kinesis.shard_ids") as Array<string>, result.shardId)
        }
      }).pipe(Effect.provide(viaProxy))
  )

  it.effect("record spans are capped at recordSpansPerSecond, and none are made without a parent span", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 1 })
      const spans: Array<Tracer.NativeSpan> = []
      const tracer = Tracer.make({
        span(options) {
          const span = new Tracer.NativeSpan(options)
          spans.push(span)
          return span
        }
      })
      yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* Producer.make({
          stream: stream.streamName,
          serde: Serde.string,
          settings: { tracing: { recordSpansPerSecond: 3 } }
        })
        yield* producer.produceChunk(records(10, "c")).pipe(Effect.withSpan("app.batch"))
        yield* producer.offerAll(records(10, "d"))
      })).pipe(Effect.provideService(Tracer.Tracer, tracer))
      assert.strictEqual(spans.filter((s) => s.name === "kinesis.producer.record").length, 3)
    }).pipe(Effect.provide(viaProxy)))

  it.effect(
    "a give-up is logged once, at error, with stream, shard, error code and count and without the payload; those that follow within the interval make one summary line",
    () =>
      Effect.gen(function*() {
        const proxy = yield* FaultProxy.FaultProxy
        const stream = yield* StreamFixtures.stream({ shardCount: 1 })
        const shardId = stream.shards[0]!.shardId
        const lines: Array<{ level: string; text: string; annotations: Record<string, unknown> }> = []
        const logger = Logger.make((options) => {
          const annotations = { ...options.fiber.getRef(References.CurrentLogAnnotations) }
          lines.push({
            level: options.logLevel,
            text: `${JSON.stringify(options.message)} ${JSON.stringify(annotations)} ${Cause.pretty(options.cause)}`,
            annotations
          })
        })
        yield* proxy.update({ throttleRate: 1 })
        yield* Effect.scoped(Effect.gen(function*() {
          const producer = yield* Producer.make({
            stream: stream.streamName,
            serde: Serde.string,
            settings: {
              recordTtl: "300 millis",
              maxAttempts: 1000,
              logging: { failureSummaryInterval: "3 seconds" }
            }
          })
          yield* producer.offerAll(
            Array.from({ length: 30 }, (_, i) => ({ partitionKey: `k${i}`, data: `SECRET-PAYLOAD-${i}` }))
          )
          yield* Effect.sleep("1 second")
          // Ten more, expiring one by one within the interval.
          for (let i = 0; i < 10; i++) {
            yield* producer.offer({ partitionKey: `late${i}`, data: `SECRET-PAYLOAD-late-${i}` })
            yield* Effect.sleep("100 millis")
          }
          yield* Effect.sleep("3 seconds")
        })).pipe(
          Effect.provide(Logger.layer([logger])),
          Effect.provideService(References.MinimumLogLevel, "Debug")
        )
        yield* proxy.reset

        // Each record is counted in exactly one line: the first failure at once, the others in a
        // summary per interval (a line per record would make 40).
        const errors = lines.filter((l) => l.level === "Error")
        assert.isAtMost(errors.length, 3, errors.map((l) => l.text).join("\n"))
        assert.strictEqual(errors[0]!.annotations["records"], 1)
        assert.strictEqual(errors.reduce((t, l) => t + (l.annotations["records"] as number), 0), 40)
        for (const line of errors) {
          assert.strictEqual(line.annotations["stream"], stream.streamName)
          assert.strictEqual(line.annotations["shardId"], shardId)
          assert.strictEqual(line.annotations["error"], "RecordExpired")
          assert.strictEqual(line.annotations["errorCode"], "ProvisionedThroughputExceededException")
        }
        // Retries are routine: debug, never above.
        assert.isAbove(lines.filter((l) => l.level === "Debug" && l.text.includes("to retry")).length, 0)
        assert.deepStrictEqual(lines.filter((l) => l.level === "Warn").map((l) => l.text), [])
        for (const line of lines) assert.notInclude(line.text, "SECRET-PAYLOAD")
      }).pipe(Effect.provide(viaProxy))
  )
})

/** The data bytes of `records(n, "m")`. */
const input = (n: number) => records(n, "m").reduce((total, r) => total + r.data.length, 0)
