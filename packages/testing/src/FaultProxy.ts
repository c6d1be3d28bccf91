/**
 * A fault-injecting HTTP/1.1 proxy in front of a `KinesisEmulator`. Emulators never throttle nor fail; real Kinesis
 * does. Clients pointed at the proxy's endpoint meet the same answers real Kinesis gives — per-shard write limits
 * with `ProvisionedThroughputExceededException` per record, random throttling, 500/503 answers (before or after the
 * write), latency, dropped connections, GetRecords throttling and stalled SubscribeToShard streams — so retry,
 * backoff and rate limiting are tested against real responses. Everything else passes through unchanged.
 *
 * Settings can be changed while tests run; counters tell what the proxy did.
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Layer, type Scope } from "effect"
import type { EmulatorClientConfig } from "./Emulator.ts"
import { FaultProxyServer } from "./internal/faultProxyServer.ts"
import { KinesisEmulator } from "./KinesisEmulator.ts"

/**
 * What the proxy injects. Probabilities are in `[0, 1]`; everything is off by default.
 *
 * @example
 * ```ts
 * import type { FaultProxy } from "@effect-kinesis/testing"
 *
 * const flaky: Partial<FaultProxy.FaultSettings> = { serverErrorRate: 0.1, latency: "20 millis" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface FaultSettings {
  /**
   * Enforce Kinesis' per-shard write limits on PutRecords/PutRecord: token buckets of `shardRecordsPerSecond`
   * records and `shardBytesPerSecond` bytes (data + partition key) per shard, each holding one second's worth.
   * Records over budget fail with `ProvisionedThroughputExceededException`. A record larger than a second's bytes
   * (a stream may accept up to 10 MiB) passes on a full bucket and leaves it in debt, as Kinesis bursts for it.
   * Default false.
   */
  readonly shardLimits: boolean
  /** Default 1000. */
  readonly shardRecordsPerSecond: number
  /** Default 1 MiB. */
  readonly shardBytesPerSecond: number
  /** Probability that a record is throttled regardless of the limits. Default 0. */
  readonly throttleRate: number
  /** Operations that throttling (limits and `throttleRate`) applies to. Default both. */
  readonly throttleOperations: ReadonlyArray<"PutRecords" | "PutRecord">
  /** Probability that a GetRecords call fails with `ProvisionedThroughputExceededException`. Default 0. */
  readonly getRecordsThrottleRate: number
  /** Probability of a 5xx answer instead of forwarding: nothing is written. Default 0. */
  readonly serverErrorRate: number
  /**
   * Probability of a 5xx answer after forwarding: the request took effect but the client sees an error — how
   * duplicates arise in the real world. Default 0.
   */
  readonly serverErrorAfterForwardRate: number
  /** Which 5xx: 500 `InternalFailure`, 503 `ServiceUnavailable`, or either at random. Default `InternalFailure`. */
  readonly serverError: "InternalFailure" | "ServiceUnavailable" | "random"
  /** Probability of closing the connection without an answer, before forwarding. Default 0. */
  readonly dropRate: number
  /** Probability of closing the connection without an answer, after forwarding. Default 0. */
  readonly dropAfterForwardRate: number
  /** Added to every request. Default 0. */
  readonly latency: Duration.Input
  /** A uniformly random extra delay in `[0, latencyJitter)`. Default 0. */
  readonly latencyJitter: Duration.Input
  /** Operations (`"PutRecords"`, `"GetRecords"`, …) that 5xx answers, drops and latency apply to. Default `"all"`. */
  readonly faultOperations: ReadonlyArray<string> | "all"
  /**
   * After this many `SubscribeToShardEvent`s a subscription goes silent: no more bytes, connection held open. Default
   * `undefined` (never).
   */
  readonly stallSubscriptionsAfterEvents: number | undefined
  /**
   * Rejects a PutRecords (or PutRecord) request as a whole, with `400 InvalidArgumentException` and nothing
   * written, when any user record in it matches: how Kinesis answers a request with one record it finds invalid.
   * Aggregated (KPL) records are unpacked, so a matching user record inside an aggregate rejects its request too.
   * Default `undefined` (never).
   */
  readonly rejectRequestsWith: ((record: RejectCandidate) => boolean) | undefined
}

/**
 * A user record of a PutRecords request, as {@link FaultSettings.rejectRequestsWith} sees it (unpacked from its
 * aggregate if it was aggregated).
 *
 * @example
 * ```ts
 * import type { FaultProxy } from "@effect-kinesis/testing"
 *
 * const poisoned = (record: FaultProxy.RejectCandidate) => new TextDecoder().decode(record.data) === "poison"
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface RejectCandidate {
  readonly partitionKey: string
  readonly explicitHashKey: string | undefined
  readonly data: Uint8Array
}

/**
 * The settings a proxy starts with: no faults at all.
 *
 * @example
 * ```ts
 * import { FaultProxy } from "@effect-kinesis/testing"
 *
 * FaultProxy.defaultSettings.shardRecordsPerSecond // 1000
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultSettings: FaultSettings = {
  shardLimits: false,
  shardRecordsPerSecond: 1000,
  shardBytesPerSecond: 1024 * 1024,
  throttleRate: 0,
  throttleOperations: ["PutRecords", "PutRecord"],
  getRecordsThrottleRate: 0,
  serverErrorRate: 0,
  serverErrorAfterForwardRate: 0,
  serverError: "InternalFailure",
  dropRate: 0,
  dropAfterForwardRate: 0,
  latency: Duration.zero,
  latencyJitter: Duration.zero,
  faultOperations: "all",
  stallSubscriptionsAfterEvents: undefined,
  rejectRequestsWith: undefined
}

/**
 * Write counters of one shard, as seen by the proxy.
 *
 * @example
 * ```ts
 * import type { FaultProxy } from "@effect-kinesis/testing"
 *
 * const total = (stats: FaultProxy.ShardStats) => stats.forwardedRecords + stats.throttledRecords
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ShardStats {
  /** Records the emulator accepted into this shard through the proxy. */
  readonly forwardedRecords: number
  /** Their data + partition key bytes. */
  readonly forwardedBytes: number
  /** Records the proxy throttled for this shard (by its prediction of the shard). */
  readonly throttledRecords: number
}

/**
 * What the proxy has done since it started or since `resetStats`.
 *
 * @example
 * ```ts
 * import type { FaultProxy } from "@effect-kinesis/testing"
 *
 * const putCalls = (stats: FaultProxy.FaultStats) => stats.requests["PutRecords"] ?? 0
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface FaultStats {
  /** Requests received, by operation (`PutRecords`, `ListShards`, …). */
  readonly requests: Readonly<Record<string, number>>
  readonly injectedServerErrors: number
  readonly droppedConnections: number
  /** Records answered with `ProvisionedThroughputExceededException` (limits and random throttling). */
  readonly throttledRecords: number
  readonly throttledGetRecords: number
  readonly stalledSubscriptions: number
  /** PutRecords/PutRecord requests answered with `InvalidArgumentException` by `rejectRequestsWith`. */
  readonly rejectedRequests: number
  /** Per stream name, per shard id. */
  readonly shards: Readonly<Record<string, Readonly<Record<string, ShardStats>>>>
}

/**
 * A running fault proxy. Point clients at `endpoint` (or build them from `clientConfig`) instead of the emulator's.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { FaultProxy } from "@effect-kinesis/testing"
 *
 * const overloaded = Effect.gen(function*() {
 *   const proxy = yield* FaultProxy.FaultProxy
 *   yield* proxy.update({ shardLimits: true, serverErrorRate: 0.05 })
 * })
 * ```
 *
 * @since 0.1.0
 * @category services
 */
export class FaultProxy extends Context.Service<FaultProxy, {
  /** e.g. `http://127.0.0.1:45123` */
  readonly endpoint: string
  /** The emulator's client configuration with the proxy's endpoint. */
  readonly clientConfig: EmulatorClientConfig
  readonly settings: Effect.Effect<FaultSettings>
  /** Changes the given settings; the others keep their values. Dies on a probability outside `[0, 1]`. */
  update(settings: Partial<FaultSettings>): Effect.Effect<void>
  /** Back to the settings the layer was built with; counters cleared, shard budgets full. */
  readonly reset: Effect.Effect<void>
  readonly stats: Effect.Effect<FaultStats>
  readonly resetStats: Effect.Effect<void>
}>()("@effect-kinesis/testing/FaultProxy") {}

const probabilities = [
  "throttleRate",
  "getRecordsThrottleRate",
  "serverErrorRate",
  "serverErrorAfterForwardRate",
  "dropRate",
  "dropAfterForwardRate"
] as const

const validate = (settings: FaultSettings): string | undefined => {
  for (const name of probabilities) {
    const value = settings[name]
    if (!(value >= 0 && value <= 1)) return `FaultProxy: ${name} must be in [0, 1], got ${value}`
  }
  if (!(settings.shardRecordsPerSecond >= 0) || !(settings.shardBytesPerSecond >= 0)) {
    return "FaultProxy: shard limits must be non-negative"
  }
  return undefined
}

const merge = (current: FaultSettings, patch: Partial<FaultSettings>): Effect.Effect<FaultSettings> =>
  Effect.suspend(() => {
    const next: FaultSettings = { ...current, ...patch }
    const problem = validate(next)
    return problem === undefined ? Effect.succeed(next) : Effect.die(new RangeError(problem))
  })

/**
 * Starts a proxy in front of the `KinesisEmulator` in the context, for the current scope.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { FaultProxy } from "@effect-kinesis/testing"
 *
 * const endpoint = Effect.map(FaultProxy.make({ shardLimits: true }), (proxy) => proxy.endpoint)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  settings: Partial<FaultSettings> = {}
): Effect.Effect<FaultProxy["Service"], never, KinesisEmulator | Scope.Scope> =>
  Effect.gen(function*() {
    const emulator = yield* KinesisEmulator
    const initial = yield* merge(defaultSettings, settings)
    let current = initial
    const server = yield* Effect.acquireRelease(
      Effect.promise(() =>
        FaultProxyServer.start({
          upstream: new URL(emulator.endpoint),
          accountId: emulator.accountId,
          settings: () => current
        })
      ),
      (server) => Effect.promise(() => server.close())
    )
    const endpoint = `http://127.0.0.1:${server.port}`
    return FaultProxy.of({
      endpoint,
      clientConfig: { ...emulator.clientConfig, endpoint },
      settings: Effect.sync(() => current),
      update: (patch) =>
        Effect.flatMap(Effect.suspend(() => merge(current, patch)), (next) =>
          Effect.sync(() => {
            current = next
          })),
      reset: Effect.sync(() => {
        current = initial
        server.resetStats()
        server.resetBudgets()
      }),
      stats: Effect.sync(() => server.stats()),
      resetStats: Effect.sync(() => server.resetStats())
    })
  })

/**
 * A layer running one proxy in front of the `KinesisEmulator` for as long as the layer lives.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { FaultProxy, KinesisEmulator } from "@effect-kinesis/testing"
 *
 * const TestKinesis = FaultProxy.layer({ shardLimits: true }).pipe(Layer.provideMerge(KinesisEmulator.layer()))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (settings: Partial<FaultSettings> = {}): Layer.Layer<FaultProxy, never, KinesisEmulator> =>
  Layer.effect(FaultProxy, make(settings))
