/**
 * A fake CloudWatch endpoint on loopback for wire tests: the real `@aws-sdk/client-cloudwatch` talks to it through
 * its `endpoint` option. It decodes `PutMetricData` as the client sends it — AWS JSON 1.0 (the installed client's
 * protocol, with `awsQueryCompatible` error codes), the `awsQuery` form encoding, or Smithy RPC v2 CBOR (a client
 * configured with that protocol), gzip-compressed or not — checks
 * each request against CloudWatch's limits (at most 1000 datums and 1 MiB per request, 30 dimensions per datum, names
 * of 1–255 characters, finite values, one of `Value` / `Values` / `StatisticValues`…) and rejects an over-limit
 * request with CloudWatch's own error (`InvalidParameterValue`, `413 RequestEntityTooLarge`), so batching bugs fail
 * tests. Accepted calls are recorded, decoded, for assertions.
 *
 * It can be told to fail (500, 503, throttling) or to hang (hold the request without an answer) — a CloudWatch
 * outage, seen from the client.
 *
 * @since 0.2.0
 */
import { Context, Effect, Layer, type Scope } from "effect"
import { CloudWatchServer, LIMITS } from "./internal/cloudWatchServer.ts"

/**
 * What the endpoint injects instead of answering: `"none"` (default), a 500 `InternalServiceError`, a 503
 * `ServiceUnavailable`, a 400 `Throttling`, or `"hang"` (no answer until the endpoint closes).
 *
 * @example
 * ```ts
 * import type { CloudWatchEndpoint } from "@effect-kinesis/testing"
 *
 * const outage: Partial<CloudWatchEndpoint.EndpointSettings> = { fault: "hang" }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface EndpointSettings {
  /** Default `"none"`. */
  readonly fault: "none" | "InternalFailure" | "ServiceUnavailable" | "Throttling" | "hang"
  /** Probability that a request meets the fault. Default 1. */
  readonly faultRate: number
  /**
   * Reject datums timestamped more than two weeks in the past or two hours in the future, as CloudWatch does.
   * Default true; turn it off for tests on a `TestClock`.
   */
  readonly checkTimestamps: boolean
  /**
   * Metric names whose datums are refused with `InvalidParameterValue`, refusing their whole request as CloudWatch
   * does: a rule the publisher does not know, to test what it does then. Default none.
   */
  readonly refuseMetricNames: ReadonlyArray<string>
}

/**
 * The settings an endpoint starts with: no faults, timestamps checked.
 *
 * @example
 * ```ts
 * import { CloudWatchEndpoint } from "@effect-kinesis/testing"
 *
 * CloudWatchEndpoint.defaultSettings.fault // "none"
 * ```
 *
 * @since 0.2.0
 * @category constants
 */
export const defaultSettings: EndpointSettings = {
  fault: "none",
  faultRate: 1,
  checkTimestamps: true,
  refuseMetricNames: []
}

/**
 * CloudWatch's `PutMetricData` limits the endpoint enforces (API reference of `PutMetricData` and `MetricDatum`).
 *
 * @example
 * ```ts
 * import { CloudWatchEndpoint } from "@effect-kinesis/testing"
 *
 * CloudWatchEndpoint.limits.maxDatumsPerRequest // 1000
 * ```
 *
 * @since 0.2.0
 * @category constants
 */
export const limits: typeof LIMITS = LIMITS

/**
 * One metric datum as received, decoded. `timestamp` is in epoch milliseconds.
 *
 * @example
 * ```ts
 * import type { CloudWatchEndpoint } from "@effect-kinesis/testing"
 *
 * const average = (datum: CloudWatchEndpoint.Datum) =>
 *   datum.statisticValues === undefined ? datum.value : datum.statisticValues.sum / datum.statisticValues.sampleCount
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Datum {
  readonly namespace: string
  readonly metricName: string
  readonly unit: string | undefined
  readonly dimensions: ReadonlyArray<{ readonly name: string; readonly value: string }>
  readonly timestamp: number | undefined
  readonly storageResolution: number | undefined
  readonly value: number | undefined
  readonly values: ReadonlyArray<number> | undefined
  readonly counts: ReadonlyArray<number> | undefined
  readonly statisticValues:
    | { readonly sampleCount: number; readonly sum: number; readonly minimum: number; readonly maximum: number }
    | undefined
}

/**
 * An accepted `PutMetricData` call: protocol, whether it came gzip-compressed, its decoded size, and its datums.
 *
 * @example
 * ```ts
 * import type { CloudWatchEndpoint } from "@effect-kinesis/testing"
 *
 * const datums = (calls: ReadonlyArray<CloudWatchEndpoint.PutMetricDataCall>) => calls.flatMap((call) => call.datums)
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface PutMetricDataCall {
  readonly protocol: "json" | "query" | "cbor"
  readonly compressed: boolean
  /** Body size after decompression. */
  readonly bytes: number
  readonly namespace: string
  readonly datums: ReadonlyArray<Datum>
}

/**
 * A request rejected for breaking a limit: the error code CloudWatch would answer with, and why.
 *
 * @example
 * ```ts
 * import type { CloudWatchEndpoint } from "@effect-kinesis/testing"
 *
 * const tooLarge = (r: CloudWatchEndpoint.Rejection) => r.code === "RequestEntityTooLarge"
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Rejection {
  readonly code: string
  readonly message: string
  readonly bytes: number
}

/**
 * Request counters: received, accepted, rejected (limits), failed (injected faults) and hung.
 *
 * @example
 * ```ts
 * import type { CloudWatchEndpoint } from "@effect-kinesis/testing"
 *
 * const answered = (stats: CloudWatchEndpoint.EndpointStats) => stats.accepted + stats.rejected + stats.failed
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface EndpointStats {
  readonly requests: number
  readonly accepted: number
  readonly rejected: number
  readonly failed: number
  readonly hung: number
}

/**
 * A running fake endpoint. Build the CloudWatch client from `clientConfig` (or pass `endpoint`).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CloudWatchEndpoint } from "@effect-kinesis/testing"
 *
 * const received = Effect.gen(function*() {
 *   const endpoint = yield* CloudWatchEndpoint.CloudWatchEndpoint
 *   const calls = yield* endpoint.calls
 *   return calls.flatMap((call) => call.datums.map((datum) => datum.metricName))
 * })
 * ```
 *
 * @since 0.2.0
 * @category services
 */
export class CloudWatchEndpoint extends Context.Service<CloudWatchEndpoint, {
  /** e.g. `http://127.0.0.1:45123` */
  readonly endpoint: string
  /** Endpoint, region and dummy static credentials for a client of this endpoint. */
  readonly clientConfig: {
    readonly endpoint: string
    readonly region: string
    readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string }
  }
  /** Accepted `PutMetricData` calls, oldest first. */
  readonly calls: Effect.Effect<ReadonlyArray<PutMetricDataCall>>
  /** Requests rejected for breaking a limit. */
  readonly rejections: Effect.Effect<ReadonlyArray<Rejection>>
  readonly stats: Effect.Effect<EndpointStats>
  readonly settings: Effect.Effect<EndpointSettings>
  /** Changes the given settings; dies on a `faultRate` outside `[0, 1]`. Hung requests stay hung. */
  update(settings: Partial<EndpointSettings>): Effect.Effect<void>
  /** Forgets recorded calls, rejections and counters. */
  readonly clear: Effect.Effect<void>
}>()("@effect-kinesis/testing/CloudWatchEndpoint") {}

const merge = (current: EndpointSettings, patch: Partial<EndpointSettings>): Effect.Effect<EndpointSettings> =>
  Effect.suspend(() => {
    const next = { ...current, ...patch }
    return next.faultRate >= 0 && next.faultRate <= 1
      ? Effect.succeed(next)
      : Effect.die(new RangeError(`CloudWatchEndpoint: faultRate must be in [0, 1], got ${next.faultRate}`))
  })

/**
 * Starts an endpoint for the current scope; closing the scope ends hung requests and closes the server.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CloudWatchEndpoint } from "@effect-kinesis/testing"
 *
 * const url = Effect.map(CloudWatchEndpoint.make({ fault: "Throttling", faultRate: 0.5 }), (e) => e.endpoint)
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (
  settings: Partial<EndpointSettings> = {}
): Effect.Effect<CloudWatchEndpoint["Service"], never, Scope.Scope> =>
  Effect.gen(function*() {
    let current = yield* merge(defaultSettings, settings)
    const server = yield* Effect.acquireRelease(
      Effect.promise(() => CloudWatchServer.start(() => current)),
      (server) => Effect.promise(() => server.close())
    )
    const endpoint = `http://127.0.0.1:${server.port}`
    return CloudWatchEndpoint.of({
      endpoint,
      clientConfig: { endpoint, region: "us-east-1", credentials: { accessKeyId: "fake", secretAccessKey: "fake" } },
      calls: Effect.sync(() => server.calls()),
      rejections: Effect.sync(() => server.rejections()),
      stats: Effect.sync(() => server.stats()),
      settings: Effect.sync(() => current),
      update: (patch) =>
        Effect.flatMap(Effect.suspend(() => merge(current, patch)), (next) =>
          Effect.sync(() => {
            current = next
          })),
      clear: Effect.sync(() => server.clear())
    })
  })

/**
 * A layer running one endpoint for as long as the layer lives.
 *
 * @example
 * ```ts
 * import { CloudWatchEndpoint } from "@effect-kinesis/testing"
 *
 * const FakeCloudWatch = CloudWatchEndpoint.layer()
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (settings: Partial<EndpointSettings> = {}): Layer.Layer<CloudWatchEndpoint> =>
  Layer.effect(CloudWatchEndpoint, make(settings))
