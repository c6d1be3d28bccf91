/**
 * A fault-injecting HTTP/1.1 proxy in front of a `DynamoEmulator`. dynalite never throttles nor fails; real DynamoDB
 * does. Clients pointed at the proxy's endpoint meet the answers real DynamoDB gives — throttling
 * (`ProvisionedThroughputExceededException`), `InternalServerError` before or after the request took effect, latency
 * and dropped connections — per operation (`UpdateItem`, `Scan`, …), so a lease store's retries, its handling of
 * writes whose answer was lost and its lease timing are tested against real responses.
 *
 * Settings can be changed while tests run, also from another process through {@link control}; counters tell what
 * the proxy did.
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Layer, type Scope } from "effect"
import { DynamoEmulator } from "./DynamoEmulator.ts"
import type { EmulatorClientConfig } from "./Emulator.ts"
import { CONTROL_PATH, DynamoFaultProxyServer } from "./internal/dynamoFaultProxyServer.ts"

/**
 * What the proxy injects, in this order per request: latency, a dropped connection, throttling, a 5xx before
 * forwarding, then (after forwarding) a dropped connection or a 5xx. Probabilities are in `[0, 1]`; everything is off
 * by default.
 *
 * @example
 * ```ts
 * import type { DynamoFaultProxy } from "@effect-kinesis/testing"
 *
 * const flakyWrites: Partial<DynamoFaultProxy.DynamoFaultSettings> = {
 *   serverErrorAfterForwardRate: 0.1,
 *   operations: ["UpdateItem", "PutItem"]
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface DynamoFaultSettings {
  /** Probability of a 400 `ProvisionedThroughputExceededException` instead of forwarding. Default 0. */
  readonly throttleRate: number
  /** Probability of a 500 `InternalServerError` instead of forwarding: nothing is applied. Default 0. */
  readonly serverErrorRate: number
  /**
   * Probability of a 500 `InternalServerError` after forwarding: the request took effect (a conditional write was
   * applied) but the client sees an error. Default 0.
   */
  readonly serverErrorAfterForwardRate: number
  /** Probability of closing the connection without an answer, before forwarding. Default 0. */
  readonly dropRate: number
  /** Probability of closing the connection without an answer, after forwarding (the request took effect). Default 0. */
  readonly dropAfterForwardRate: number
  /** Added to every request. Default 0. */
  readonly latency: Duration.Input
  /** A uniformly random extra delay in `[0, latencyJitter)`. Default 0. */
  readonly latencyJitter: Duration.Input
  /** Operations (`"UpdateItem"`, `"Scan"`, …, the part after `DynamoDB_20120810.`) faults apply to. Default `"all"`. */
  readonly operations: ReadonlyArray<string> | "all"
}

/**
 * The settings a proxy starts with: no faults at all.
 *
 * @example
 * ```ts
 * import { DynamoFaultProxy } from "@effect-kinesis/testing"
 *
 * DynamoFaultProxy.defaultSettings.throttleRate // 0
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultSettings: DynamoFaultSettings = {
  throttleRate: 0,
  serverErrorRate: 0,
  serverErrorAfterForwardRate: 0,
  dropRate: 0,
  dropAfterForwardRate: 0,
  latency: Duration.zero,
  latencyJitter: Duration.zero,
  operations: "all"
}

/**
 * What the proxy has done since it started or since `resetStats`.
 *
 * @example
 * ```ts
 * import type { DynamoFaultProxy } from "@effect-kinesis/testing"
 *
 * const injected = (stats: DynamoFaultProxy.DynamoFaultStats) =>
 *   stats.throttled + stats.injectedServerErrors + stats.serverErrorsAfterForward
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface DynamoFaultStats {
  /** Requests received, by operation (`UpdateItem`, `Scan`, …). */
  readonly requests: Readonly<Record<string, number>>
  /** Requests passed to dynalite (including those whose answer was then replaced by a fault). */
  readonly forwarded: number
  readonly throttled: number
  /** 5xx answers instead of forwarding. */
  readonly injectedServerErrors: number
  /** 5xx answers to requests that dynalite applied. */
  readonly serverErrorsAfterForward: number
  /** Connections closed before forwarding. */
  readonly droppedConnections: number
  /** Connections closed after dynalite applied the request. */
  readonly droppedAfterForward: number
}

/**
 * Steers a proxy: in the process that runs it (the {@link DynamoFaultProxy} service) or from any other through its
 * control endpoint ({@link control}).
 *
 * @example
 * ```ts
 * import type { DynamoFaultProxy } from "@effect-kinesis/testing"
 *
 * const calm = (proxy: DynamoFaultProxy.DynamoFaultControl) => proxy.reset
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface DynamoFaultControl {
  readonly settings: Effect.Effect<DynamoFaultSettings>
  /** Changes the given settings; the others keep their values. Dies on a probability outside `[0, 1]`. */
  update(settings: Partial<DynamoFaultSettings>): Effect.Effect<void>
  /** Back to the settings the proxy was started with; counters cleared. */
  readonly reset: Effect.Effect<void>
  readonly stats: Effect.Effect<DynamoFaultStats>
  readonly resetStats: Effect.Effect<void>
}

/**
 * A running proxy. Point DynamoDB clients at `endpoint` (or build them from `clientConfig`) instead of dynalite's.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { DynamoFaultProxy } from "@effect-kinesis/testing"
 *
 * const overloaded = Effect.gen(function*() {
 *   const proxy = yield* DynamoFaultProxy.DynamoFaultProxy
 *   yield* proxy.update({ throttleRate: 0.3, latency: "50 millis" })
 * })
 * ```
 *
 * @since 0.1.0
 * @category services
 */
export class DynamoFaultProxy extends Context.Service<
  DynamoFaultProxy,
  DynamoFaultControl & {
    /** e.g. `http://127.0.0.1:45123` */
    readonly endpoint: string
    /** The emulator's client configuration with the proxy's endpoint. */
    readonly clientConfig: EmulatorClientConfig
  }
>()("@effect-kinesis/testing/DynamoFaultProxy") {}

const probabilities = [
  "throttleRate",
  "serverErrorRate",
  "serverErrorAfterForwardRate",
  "dropRate",
  "dropAfterForwardRate"
] as const

const validate = (settings: DynamoFaultSettings): string | undefined => {
  for (const name of probabilities) {
    const value = settings[name]
    if (!(typeof value === "number" && value >= 0 && value <= 1)) {
      return `DynamoFaultProxy: ${name} must be in [0, 1], got ${String(value)}`
    }
  }
  for (const name of ["latency", "latencyJitter"] as const) {
    const duration = Duration.fromInput(settings[name])
    if (duration._tag === "None" || !Duration.isFinite(duration.value) || Duration.toMillis(duration.value) < 0) {
      return `DynamoFaultProxy: ${name} must be a finite, non-negative duration`
    }
  }
  if (settings.operations !== "all" && !Array.isArray(settings.operations)) {
    return "DynamoFaultProxy: operations must be \"all\" or a list of operation names"
  }
  return undefined
}

/**
 * Starts a proxy in front of the `DynamoEmulator` in the context, for the current scope.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { DynamoFaultProxy } from "@effect-kinesis/testing"
 *
 * const endpoint = Effect.map(DynamoFaultProxy.make({ throttleRate: 0.1 }), (proxy) => proxy.endpoint)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  settings: Partial<DynamoFaultSettings> = {}
): Effect.Effect<DynamoFaultProxy["Service"], never, DynamoEmulator | Scope.Scope> =>
  Effect.gen(function*() {
    const dynamo = yield* DynamoEmulator
    const initial: DynamoFaultSettings = { ...defaultSettings, ...settings }
    const invalid = validate(initial)
    if (invalid !== undefined) return yield* Effect.die(new RangeError(invalid))
    let current = initial
    const apply = (patch: Partial<DynamoFaultSettings>): string | undefined => {
      const next: DynamoFaultSettings = { ...current, ...patch }
      const problem = validate(next)
      if (problem === undefined) current = next
      return problem
    }
    const server = yield* Effect.acquireRelease(
      Effect.promise(() =>
        DynamoFaultProxyServer.start({
          upstream: new URL(dynamo.endpoint),
          settings: () => current,
          update: apply,
          reset: () => {
            current = initial
          }
        })
      ),
      (server) => Effect.promise(() => server.close())
    )
    const endpoint = `http://127.0.0.1:${server.port}`
    return DynamoFaultProxy.of({
      endpoint,
      clientConfig: { ...dynamo.clientConfig, endpoint },
      settings: Effect.sync(() => current),
      update: (patch) =>
        Effect.suspend(() => {
          const problem = apply(patch)
          return problem === undefined ? Effect.void : Effect.die(new RangeError(problem))
        }),
      reset: Effect.sync(() => {
        current = initial
        server.resetStats()
      }),
      stats: Effect.sync(() => server.stats()),
      resetStats: Effect.sync(() => server.resetStats())
    })
  })

/**
 * A layer running one proxy in front of the `DynamoEmulator` for as long as the layer lives.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { DynamoEmulator, DynamoFaultProxy } from "@effect-kinesis/testing"
 *
 * const TestDynamo = DynamoFaultProxy.layer().pipe(Layer.provideMerge(DynamoEmulator.layer()))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  settings: Partial<DynamoFaultSettings> = {}
): Layer.Layer<DynamoFaultProxy, never, DynamoEmulator> => Layer.effect(DynamoFaultProxy, make(settings))

// Durations travel as milliseconds: a `Duration` value does not survive JSON.
const toWire = (patch: Partial<DynamoFaultSettings>): Record<string, unknown> => {
  const wire: Record<string, unknown> = { ...patch }
  for (const name of ["latency", "latencyJitter"] as const) {
    const value = patch[name]
    if (value !== undefined) wire[name] = Duration.toMillis(Duration.fromInputUnsafe(value))
  }
  return wire
}

const request = (url: string, init?: RequestInit): Effect.Effect<unknown> =>
  Effect.promise(async (signal) => {
    const response = await fetch(url, { ...init, signal })
    const json: unknown = await response.json()
    if (!response.ok) {
      throw new RangeError(
        `DynamoFaultProxy control: ${response.status} ${(json as { message?: string } | null)?.message ?? ""}`
      )
    }
    return json
  })

/**
 * Steers a proxy running in another process, given its endpoint (the `endpoint` its owner handed out): a chaos test
 * runner can start the proxy and let a worker process change faults, or the other way round. Calls die when the
 * proxy cannot be reached or rejects a setting.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { DynamoFaultProxy } from "@effect-kinesis/testing"
 *
 * const slowDown = (endpoint: string) => DynamoFaultProxy.control(endpoint).update({ latency: "200 millis" })
 * const throttled = (endpoint: string) =>
 *   Effect.map(DynamoFaultProxy.control(endpoint).stats, (stats) => stats.throttled)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const control = (endpoint: string): DynamoFaultControl => {
  const base = `${endpoint.replace(/\/+$/, "")}${CONTROL_PATH}`
  const post = (path: string, body: unknown = {}) =>
    request(`${base}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body)
    })
  return {
    settings: Effect.map(request(`${base}/settings`), (json) => json as DynamoFaultSettings),
    update: (patch) => Effect.asVoid(post("/settings", toWire(patch))),
    reset: Effect.asVoid(post("/reset")),
    stats: Effect.map(request(`${base}/stats`), (json) => json as DynamoFaultStats),
    resetStats: Effect.asVoid(post("/stats/reset"))
  }
}
