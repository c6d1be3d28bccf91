import { Client, KinesisError, Serde } from "@effect-kinesis/core"
import { Producer, type ProducerSettings } from "@effect-kinesis/producer"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Stream } from "effect"

// A stream that does not exist: a producer whose settings pass fails with StreamNotFound at once,
// so that "accepted" is told from "refused" without a Kinesis.
const gone = new KinesisError.StreamNotFound({ operation: "ListShards", message: "no such stream" })
const NoStream = Layer.succeed(
  Client.Client,
  {
    describeStreamSummary: () => Effect.fail(gone),
    listShards: () => Stream.fail(gone)
  } as unknown as Client.Client["Service"]
)

const start = (settings: Partial<ProducerSettings.ProducerSettings>) =>
  Effect.scoped(Producer.make({ stream: "orders", serializer: Serde.string, settings })).pipe(
    Effect.provide(NoStream),
    Effect.exit
  )

type Case = readonly [setting: string, settings: Partial<ProducerSettings.ProducerSettings>]

// Every numeric and duration setting, with each kind of value it must refuse.
const invalid: ReadonlyArray<Case> = [
  ...([
    "bufferSize",
    "bufferBytes",
    "maxRecordBytes",
    "maxRequestBytes",
    "maxRecordsPerRequest",
    "maxInFlightRequests",
    "maxAggregateBytes",
    "shardBytesPerSecond",
    "shardRecordsPerSecond",
    "maxAttempts"
  ] as const)
    .flatMap((name): Array<Case> =>
      [0, -1, 1.5, NaN, Infinity].map((value) => [`settings.${name}`, { [name]: value }])
    ),
  ["settings.maxRecordsPerRequest", { maxRecordsPerRequest: 501 }],
  ...([
    "shardBurst",
    "recordTtl",
    "retryBaseDelay",
    "retryMaxDelay",
    "requestTimeout",
    "shardRefreshInterval",
    "metricsInterval"
  ] as const)
    .flatMap((name): Array<Case> =>
      [0, -1, "-1 seconds", "soon", NaN].map((value) => [`settings.${name}`, { [name]: value }])
    ),
  ...(["shardBurst", "retryBaseDelay", "retryMaxDelay", "shardRefreshInterval", "metricsInterval"] as const)
    .map((name): Case => [`settings.${name}`, { [name]: Infinity }]),
  ...(["lingerTime", "closeTimeout"] as const)
    .flatMap((name): Array<Case> =>
      [-1, "-1 seconds", "soon", NaN].map((value) => [`settings.${name}`, { [name]: value }])
    ),
  ["settings.lingerTime", { lingerTime: Infinity }],
  ["settings.whenBufferFull", { whenBufferFull: "drop" as never }],
  ["settings.retryMaxDelay", { retryBaseDelay: "2 seconds", retryMaxDelay: "1 second" }],
  ["settings.retryMaxDelay", { retryBaseDelay: "10 seconds" }],
  ["settings.metrics.level", { metrics: { level: "all" as never } }],
  ["settings.metrics.granularity", { metrics: { granularity: "record" as never } }],
  ["settings.metrics.namespace", { metrics: { namespace: "" } }],
  ["settings.tracing.recordSpansPerSecond", { tracing: { recordSpansPerSecond: -1 } }],
  ["settings.tracing.recordSpansPerSecond", { tracing: { recordSpansPerSecond: NaN } }],
  ["settings.logging.failureSummaryInterval", { logging: { failureSummaryInterval: 0 } }],
  ["settings.autoSplit.throttledShare", { autoSplit: { enabled: true, throttledShare: 2 } }],
  ["settings.autoSplit.throttledShare", { autoSplit: { enabled: true, throttledShare: 0 } }],
  ["settings.autoSplit.cooldown", { autoSplit: { enabled: true, cooldown: "-5 seconds" } }],
  ["settings.autoSplit.window", { autoSplit: { enabled: true, window: 0 } }],
  ["settings.autoSplit.minRecords", { autoSplit: { enabled: true, minRecords: 0 } }],
  ["settings.autoSplit.maxShardCount", { autoSplit: { enabled: true, maxShardCount: 1.5 } }],
  ["settings.autoSplit.checkInterval", { autoSplit: { enabled: true, checkInterval: "soon" as never } }],
  // Rules between settings that ProducerSettings.resolve checks itself.
  // Above Kinesis' 10 MiB ceiling (a record above `maxRequestBytes` is fine: it goes alone).
  ["settings.maxRecordBytes", { maxRecordBytes: 11 * 1024 * 1024 }],
  ["settings.bufferBytes", { bufferBytes: 1000, maxRecordBytes: 2000 }],
  // An aggregate is one Kinesis record in one request: at most `maxRequestBytes` (5 MiB).
  ["settings.maxAggregateBytes", { maxAggregateBytes: 6_000_000 }]
]

// The smallest (or largest) values that work.
const valid: ReadonlyArray<Partial<ProducerSettings.ProducerSettings>> = [
  {},
  {
    bufferSize: 1,
    maxRecordBytes: 1,
    bufferBytes: 1,
    maxRequestBytes: 1,
    maxRecordsPerRequest: 1,
    maxInFlightRequests: 1,
    maxAggregateBytes: 1,
    shardBytesPerSecond: 1,
    shardRecordsPerSecond: 1,
    maxAttempts: 1
  },
  { maxRecordsPerRequest: 500, whenBufferFull: "fail" },
  { lingerTime: 0, closeTimeout: 0 },
  { closeTimeout: Infinity, recordTtl: Infinity, requestTimeout: Infinity },
  { shardBurst: 1, recordTtl: 1, retryBaseDelay: 1, retryMaxDelay: 1, requestTimeout: 1 },
  { shardRefreshInterval: "1 millis", metricsInterval: "1 millis", logging: { failureSummaryInterval: 1 } },
  { tracing: { recordSpansPerSecond: 0 }, metrics: { level: "none", granularity: "global", namespace: "App" } }
]

describe("Producer settings", () => {
  for (const [setting, settings] of invalid) {
    it.effect(`refuses ${JSON.stringify(settings, (_, v) => typeof v === "number" && !Number.isFinite(v) ? String(v) : v)} with InvalidSetting(${setting})`, () =>
      Effect.gen(function*() {
        const exit = yield* start(settings)
        assert.isTrue(Exit.isFailure(exit))
        const error = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
        assert.strictEqual(error?._tag, "Fail")
        const failure = error?._tag === "Fail" ? error.error : undefined
        assert.strictEqual(failure?._tag, "InvalidSetting")
        assert.strictEqual(failure?._tag === "InvalidSetting" ? failure.setting : undefined, setting)
      }))
  }

  for (const settings of valid) {
    it.effect(`accepts ${JSON.stringify(settings, (_, v) => typeof v === "number" && !Number.isFinite(v) ? String(v) : v)}`, () =>
      Effect.gen(function*() {
        const exit = yield* start(settings)
        // Past the settings: the producer went on to list the stream's shards.
        assert.deepStrictEqual(exit, Exit.fail(gone))
      }))
  }

  it.effect("the error names the setting, the value and the rule", () =>
    Effect.gen(function*() {
      const exit = yield* start({ bufferSize: 0 })
      assert.deepStrictEqual(
        Exit.isFailure(exit) && exit.cause.reasons[0]?._tag === "Fail"
          ? exit.cause.reasons[0].error.message
          : undefined,
        "settings.bufferSize must be an integer >= 1, got 0"
      )
    }))
})
