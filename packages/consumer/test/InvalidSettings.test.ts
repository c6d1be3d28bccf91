import {
  BatchProcessing,
  Consumer,
  ErrorHandling,
  LeaseRepository,
  Parallel,
  ShardAssignment
} from "@effect-kinesis/consumer"
import { Client, ExtendedSequenceNumber, KinesisError, Serde } from "@effect-kinesis/core"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Layer, Schedule, Stream } from "effect"
import type * as InternalCheckpointerModule from "../src/internal/checkpointer.ts"
import type * as Internal from "../src/internal/validateSettings.ts"

// An internal module, loaded by path (a static import across the src and test projects does not compile).
const ValidateSettings: typeof Internal = await import(
  new URL("../src/internal/validateSettings.ts", import.meta.url).href
)
const InternalCheckpointer: typeof InternalCheckpointerModule = await import(
  new URL("../src/internal/checkpointer.ts", import.meta.url).href
)

// A stream that does not exist: a consumer whose settings pass fails with StreamNotFound at its
// first call, so that "accepted" is told from "refused" without a Kinesis.
const gone = new KinesisError.StreamNotFound({ operation: "ListShards", message: "no such stream" })
const NoStream = Layer.succeed(
  Client.Client,
  new Proxy({}, {
    get: (_, method) =>
      method === "listShards" || method === "listStreams" || method === "subscribeToShard" ||
        method === "listStreamConsumers"
        ? () => Stream.fail(gone)
        : () => Effect.fail(gone)
  }) as Client.Client["Service"]
)
const ConsumerLive = Consumer.layer.pipe(Layer.provide([NoStream, LeaseRepository.layerMemory]))

const base = { stream: "orders", applicationName: "billing", deserializer: Serde.string }

type Options = Partial<
  BatchProcessing.ConsumeBatchesOptions<string, never, never> & Consumer.ConsumeWithOptions<string, never, never>
>

const run = (options: Options, batches = false) =>
  (batches
    ? BatchProcessing.consumeBatchesWith(
      () => Effect.void,
      { ...base, ...options } as BatchProcessing.ConsumeBatchesOptions<string, never, never>
    )
    : Consumer.consumeWith(
      () => Effect.void,
      { ...base, ...options } as Consumer.ConsumeWithOptions<string, never, never>
    )).pipe(
      Effect.provide(ConsumerLive),
      Effect.timeout("20 seconds"),
      Effect.exit
    )

const failureOf = (exit: Exit.Exit<unknown, unknown>) => {
  const reason = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
  return (reason?._tag === "Fail" ? reason.error : reason) as
    | { readonly _tag: string; readonly setting?: string; readonly message?: string }
    | undefined
}

type Case = readonly [setting: string, options: Options, batches?: boolean]

const counts = (build: (value: number) => Options, setting: string, values: ReadonlyArray<number>): Array<Case> =>
  values.map((value) => [setting, build(value)])
const durations = (build: (value: any) => Options, setting: string, values: ReadonlyArray<unknown>): Array<Case> =>
  values.map((value) => [setting, build(value)])

const notPositive = [0, -1, "-1 seconds", "soon", NaN, Infinity]
const negative = [-1, "-1 seconds", "soon", NaN]
const notCount = [0, -1, 1.5, NaN, Infinity]

const invalid: ReadonlyArray<Case> = [
  ["applicationName", { applicationName: "" }],
  ["workerId", { workerId: "" }],
  ["initialPosition", { initialPosition: "EARLIEST" as never }],
  ["initialPosition", { initialPosition: { atTimestamp: new Date(NaN) } }],
  ...counts((batchSize) => ({ fetch: { batchSize } }), "fetch.batchSize", [...notCount, 10_001]),
  ...durations((pollInterval) => ({ fetch: { pollInterval } }), "fetch.pollInterval", [...negative, Infinity]),
  ...counts((maxCallsPerSecond) => ({ fetch: { maxCallsPerSecond } }), "fetch.maxCallsPerSecond", [
    0,
    -1,
    NaN,
    Infinity
  ]),
  ...counts((bufferedBatches) => ({ fetch: { bufferedBatches } }), "fetch.bufferedBatches", notCount),
  ...(["expiry", "renewInterval", "takeInterval", "scanInterval", "shardSyncInterval"] as const).flatMap((name) =>
    durations((value) => ({ lease: { [name]: value } }), `lease.${name}`, notPositive)
  ),
  ["lease.renewInterval", { lease: { renewInterval: "10 seconds" } }],
  ["lease.renewInterval", { lease: { expiry: "2 seconds" } }],
  ["lease.renewInterval", { lease: { expiry: "5 seconds", renewInterval: "6 seconds" } }],
  ["lease.coordination", { lease: { coordination: "boss" as never } }],
  ["lease.coordination", { lease: { coordination: "leader" }, shardAssignment: ShardAssignment.manual((ids) => ids) }],
  ["enhancedFanOut.consumerName", { enhancedFanOut: { consumerName: "" } }],
  ...(["stallTimeout", "shardEndCheckInterval", "registrationPollInterval"] as const).flatMap((name) =>
    durations((value) => ({ enhancedFanOut: { [name]: value } }), `enhancedFanOut.${name}`, notPositive)
  ),
  ...durations(
    (resourceInUseDelay) => ({ enhancedFanOut: { resourceInUseDelay } }),
    "enhancedFanOut.resourceInUseDelay",
    [...negative, Infinity]
  ),
  ...counts(
    (maxSubscribesPerSecond) => ({ enhancedFanOut: { maxSubscribesPerSecond } }),
    "enhancedFanOut.maxSubscribesPerSecond",
    [0, -1, NaN, Infinity]
  ),
  ...counts((bufferedBatches) => ({ enhancedFanOut: { bufferedBatches } }), "enhancedFanOut.bufferedBatches", notCount),
  ["metrics.level", { metrics: { level: "all" as never } }],
  ["metrics.namespace", { metrics: { namespace: "" } }],
  ["metrics.dimensions", { metrics: { dimensions: ["StreamName" as never] } }],
  ...counts(
    (maxStealsPerRound) => ({ shardAssignment: ShardAssignment.balanced({ maxStealsPerRound }) }),
    "shardAssignment.maxStealsPerRound",
    [-1, 1.5, NaN, Infinity]
  ),
  ...counts(
    (tolerance) => ({ shardAssignment: ShardAssignment.byThroughput({ tolerance }) }),
    "shardAssignment.tolerance",
    [0, -0.1, 1.5, NaN, Infinity]
  ),
  ...durations(
    (minMoveInterval) => ({ shardAssignment: ShardAssignment.byThroughput({ minMoveInterval }) }),
    "shardAssignment.minMoveInterval",
    [...negative, Infinity]
  ),
  ["onDecodeFailure", { onDecodeFailure: "ignore" as never }],
  ...durations((shutdownGracePeriod) => ({ shutdownGracePeriod }), "shutdownGracePeriod", negative),
  ...counts((records) => ({ checkpoint: { records } }), "checkpoint.records", notCount),
  ...durations((interval) => ({ checkpoint: { interval } }), "checkpoint.interval", notPositive),
  // The deprecated former names, checked under those names.
  ...counts((checkpointBatchSize) => ({ checkpointBatchSize }), "checkpointBatchSize", notCount),
  ...durations((checkpointInterval) => ({ checkpointInterval }), "checkpointInterval", notPositive),
  ...counts((parallelism) => ({ parallelism }), "parallelism", notCount),
  ...counts(
    (retries) => ({ errorHandling: { mode: ErrorHandling.retryAndSkip(retries) } }),
    "errorHandling.mode.retries",
    [-1, 1.5, NaN]
  ),
  ...counts(
    (retries) => ({ errorHandling: { mode: ErrorHandling.retryAndStop(retries) } }),
    "errorHandling.mode.retries",
    [-1]
  ),
  ...durations(
    (maxRecordAge) => ({ errorHandling: { mode: ErrorHandling.retryAndSkip(1), maxRecordAge } }),
    "errorHandling.maxRecordAge",
    notPositive
  ),
  // consumeBatchesWith
  ...counts((batchSize) => ({ batchSize }), "batchSize", [...notCount, 10_001]).map(([s, o]): Case => [s, o, true]),
  ...durations((batchWindow) => ({ batchWindow }), "batchWindow", [...negative, Infinity]).map((
    [s, o]
  ): Case => [s, o, true]),
  ...counts((maxRetryAttempts) => ({ maxRetryAttempts }), "maxRetryAttempts", [-1, 1.5, NaN]).map((
    [s, o]
  ): Case => [s, o, true]),
  ...durations((maxRecordAge) => ({ maxRecordAge }), "maxRecordAge", notPositive).map(([s, o]): Case => [s, o, true]),
  ...counts((checkpointBatchSize) => ({ checkpointBatchSize }), "checkpointBatchSize", [0]).map((
    [s, o]
  ): Case => [s, o, true]),
  ...durations((checkpointInterval) => ({ checkpointInterval }), "checkpointInterval", [0]).map((
    [s, o]
  ): Case => [s, o, true]),
  ...counts((batchSize) => ({ fetch: { batchSize } }), "fetch.batchSize", [0]).map(([s, o]): Case => [s, o, true])
]

// The boundary values that work.
const valid: ReadonlyArray<readonly [options: Options, batches?: boolean]> = [
  [{}],
  [{ workerId: "w", initialPosition: "LATEST" }],
  [{ initialPosition: { atTimestamp: new Date(0) } }],
  [{ fetch: { batchSize: 1, pollInterval: 0, maxCallsPerSecond: 0.5, bufferedBatches: 1 } }],
  [{ fetch: { batchSize: 10_000 } }],
  [{ lease: { expiry: 2, renewInterval: 1, takeInterval: 1, scanInterval: 1, shardSyncInterval: 1 } }],
  [{ lease: { expiry: "3001 millis" } }],
  [{ lease: { renewInterval: "9999 millis" } }],
  [{ lease: { coordination: "leader" } }],
  [{ lease: { coordination: "workers" }, shardAssignment: ShardAssignment.manual((ids) => ids) }],
  [{
    enhancedFanOut: {
      consumerName: "c",
      stallTimeout: 1,
      maxSubscribesPerSecond: 0.1,
      resourceInUseDelay: 0,
      shardEndCheckInterval: 1,
      bufferedBatches: 1,
      registrationPollInterval: 1
    }
  }],
  [{ metrics: { level: "none", namespace: "N", dimensions: [] } }],
  [{ shardAssignment: ShardAssignment.balanced({ maxStealsPerRound: 0 }) }],
  [{ shardAssignment: ShardAssignment.byThroughput({ tolerance: 1, minMoveInterval: 0, maxStealsPerRound: 1 }) }],
  [{ onDecodeFailure: "fail", shutdownGracePeriod: 0 }],
  [{ shutdownGracePeriod: Infinity }],
  [{ checkpoint: { records: 1, interval: 1 }, parallelism: 1 }],
  [{ checkpointBatchSize: 1, checkpointInterval: 1 }],
  [{ parallelism: 64 }],
  [{ errorHandling: { mode: ErrorHandling.retryAndSkip(0), maxRecordAge: 1 } }],
  [{ errorHandling: { mode: ErrorHandling.retryAndStop(Infinity) } }],
  [{
    batchSize: 1,
    batchWindow: 0,
    maxRetryAttempts: 0,
    maxRecordAge: 1,
    checkpointBatchSize: 1,
    checkpointInterval: 1
  }, true],
  [{ batchSize: 10_000, maxRetryAttempts: Infinity, batchWindow: "1 second" }, true]
]

const show = (options: Options) =>
  JSON.stringify(
    options,
    (_, v) => typeof v === "number" && !Number.isFinite(v) ? String(v) : typeof v === "function" ? "fn" : v
  )

describe("Consumer settings", () => {
  for (const [setting, options, batches] of invalid) {
    it.effect(`${batches ? "consumeBatchesWith" : "consumeWith"} refuses ${show(options)} with InvalidSetting(${setting})`, () =>
      Effect.gen(function*() {
        const failure = failureOf(yield* run(options, batches))
        assert.strictEqual(failure?._tag, "InvalidSetting")
        assert.strictEqual(failure?.setting, setting)
      }))
  }

  for (const [options, batches] of valid) {
    it.effect(`${batches ? "consumeBatchesWith" : "consumeWith"} accepts ${show(options)}`, () =>
      Effect.gen(function*() {
        // Past the settings: the consumer went on to read the stream.
        assert.deepStrictEqual(failureOf(yield* run(options, batches)), gone)
      }))
  }

  it.effect("leader coordination on a store without a leader lock fails with InvalidSetting(lease.coordination)", () =>
    Effect.gen(function*() {
      const memory = yield* LeaseRepository.makeMemory()
      const store = LeaseRepository.LeaseRepository.of({ ...memory, forApplication: undefined, leaderLock: undefined })
      const exit = yield* Consumer.consumeWith(() => Effect.void, { ...base, lease: { coordination: "leader" } }).pipe(
        Effect.provide(
          Consumer.layer.pipe(Layer.provide([NoStream, Layer.succeed(LeaseRepository.LeaseRepository, store)]))
        ),
        Effect.timeout("20 seconds"),
        Effect.exit
      )
      const failure = failureOf(exit)
      assert.strictEqual(failure?._tag, "InvalidSetting")
      assert.strictEqual(failure?.setting, "lease.coordination")
      // The same store in the default mode gets past the settings.
      const workers = yield* Consumer.consumeWith(() => Effect.void, base).pipe(
        Effect.provide(
          Consumer.layer.pipe(Layer.provide([NoStream, Layer.succeed(LeaseRepository.LeaseRepository, store)]))
        ),
        Effect.timeout("20 seconds"),
        Effect.exit
      )
      assert.deepStrictEqual(failureOf(workers), gone)
    }))

  it.effect("the error names the setting, the value and the rule", () =>
    Effect.gen(function*() {
      const failure = failureOf(yield* run({ lease: { expiry: "2 seconds" } }))
      assert.strictEqual(
        failure?.message,
        `lease.renewInterval must be shorter than lease.expiry (2s), got "3 seconds"`
      )
    }))
})

describe("checkpoint settings", () => {
  it("checkpoint.records and checkpoint.interval are what consumeWith checkpoints by; the deprecated names still work", () => {
    assert.deepStrictEqual(ValidateSettings.checkpointBatched({}), { records: 1000, interval: "5 seconds" })
    assert.deepStrictEqual(
      ValidateSettings.checkpointBatched({ checkpoint: { records: 10, interval: "1 second" } }),
      { records: 10, interval: "1 second" }
    )
    assert.deepStrictEqual(
      ValidateSettings.checkpointBatched({ checkpointBatchSize: 7, checkpointInterval: "2 seconds" }),
      { records: 7, interval: "2 seconds" }
    )
    assert.deepStrictEqual(
      ValidateSettings.checkpointBatched({ checkpoint: { records: 10 }, checkpointBatchSize: 7 }),
      { records: 10, interval: "5 seconds" }
    )
  })
})

// The combinators check their options before they touch the shard.
const noShard = {} as Consumer.ShardStream<string>

const collectFailure = <E>(stream: Stream.Stream<unknown, E>) =>
  Effect.map(Effect.exit(Stream.runDrain(stream)), failureOf)

describe("the combinators' options", () => {
  const combinatorCases: ReadonlyArray<readonly [string, string, () => Stream.Stream<unknown, unknown>]> = [
    [
      "Parallel.processShard",
      "parallelism",
      () => Parallel.processShard(noShard, () => Effect.void, { parallelism: 0 })
    ],
    [
      "Parallel.processShard",
      "window",
      () => Parallel.processShard(noShard, () => Effect.void, { parallelism: 8, window: 4 })
    ],
    [
      "Parallel.processShard",
      "errorHandling.mode.retries",
      () =>
        Parallel.processShard(noShard, () => Effect.void, {
          parallelism: 2,
          errorHandling: { mode: ErrorHandling.retryAndSkip(-1) }
        })
    ],
    [
      "ErrorHandling.processShard",
      "mode.retries",
      () => ErrorHandling.processShard(noShard, () => Effect.void, { mode: ErrorHandling.retryAndStop(-1) })
    ],
    [
      "ErrorHandling.processShard",
      "maxRecordAge",
      () =>
        ErrorHandling.processShard(noShard, () => Effect.void, { mode: ErrorHandling.retryAndSkip(1), maxRecordAge: 0 })
    ],
    [
      "BatchProcessing.processBatches",
      "batchSize",
      () => BatchProcessing.processBatches(noShard, () => Effect.void, { batchSize: 0 })
    ],
    [
      "BatchProcessing.processBatches",
      "maxRetryAttempts",
      () => BatchProcessing.processBatches(noShard, () => Effect.void, { maxRetryAttempts: -1 })
    ]
  ]
  for (const [combinator, setting, stream] of combinatorCases) {
    it.effect(`${combinator} refuses an invalid ${setting} with InvalidSetting(${setting})`, () =>
      Effect.gen(function*() {
        const failure = yield* collectFailure(stream())
        assert.strictEqual(failure?._tag, "InvalidSetting")
        assert.strictEqual(failure?.setting, setting)
      }))
  }

  for (
    const [records, interval, setting] of [[0, "1 second", "records"], [1.5, "1 second", "records"], [
      10,
      0,
      "interval"
    ], [10, "-1 seconds", "interval"]] as const
  ) {
    it.effect(`checkpointBatched refuses ${setting} ${String(setting === "records" ? records : interval)}`, () =>
      Effect.gen(function*() {
        const { checkpointer } = InternalCheckpointer.make({
          shardId: "shardId-000000000000",
          initial: ExtendedSequenceNumber.trimHorizon,
          write: () => Effect.void,
          retrySchedule: Schedule.recurs(0),
          gracePeriod: Duration.seconds(1),
          stopping: () => false
        } as never)
        const failure = yield* collectFailure(
          Stream.make(1).pipe(checkpointer.checkpointBatched({ records, interval }))
        )
        assert.strictEqual(failure?._tag, "InvalidSetting")
        assert.strictEqual(failure?.setting, setting)
      }))
  }
})
