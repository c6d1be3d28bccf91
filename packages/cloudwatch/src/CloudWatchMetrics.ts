/**
 * Publishes what producers and consumers record (the KPL's and the KCL's metric names) to CloudWatch with
 * `PutMetricData`. The layer provides core's `MetricsCollector`; every `interval` the collector is drained into a
 * bounded buffer, and a fiber of its own sends the buffered intervals as statistic sets, batched within
 * `PutMetricData`'s limits (one namespace per request, at most 1000 datums and 1 MB each).
 *
 * Recording never waits for CloudWatch: it is synchronous and touches only the collector. A CloudWatch that fails or
 * hangs costs at most `maxBufferedIntervals` intervals of memory: older ones are dropped, counted and logged. Every
 * call has a timeout; throttling, 5xx and network failures are retried with backoff; other failures (access denied,
 * a rejected request) are logged and the batch dropped. When the layer closes, the last interval is drained and sent,
 * within `closeTimeout`.
 *
 * @since 0.2.0
 */
import { CloudWatchClient, PutMetricDataCommand } from "@aws-sdk/client-cloudwatch"
import { Client, type InvalidSetting, MetricsCollector, TransportFailure } from "@effect-kinesis/core"
import {
  Cause,
  Config,
  Context,
  Duration,
  Effect,
  Fiber,
  Layer,
  Metric,
  Option,
  Queue,
  Schedule,
  type Scope
} from "effect"
import * as PutMetricData from "./internal/putMetricData.ts"
import * as ValidateOptions from "./internal/validateOptions.ts"

/**
 * Options of {@link layer}. Every field is optional.
 *
 * @example
 * ```ts
 * import type { CloudWatchMetrics } from "@effect-kinesis/cloudwatch"
 *
 * const options: CloudWatchMetrics.Options = { region: "eu-west-1", interval: "60 seconds", maxBufferedIntervals: 10 }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** AWS region. Default: the SDK's chain (`AWS_REGION`, profile); `us-east-1` when an endpoint is set. */
  readonly region?: string | undefined
  /** Endpoint override (a fake endpoint in tests). Default: CloudWatch in the region. */
  readonly endpoint?: string | undefined
  /** Static credentials. Default: the AWS SDK's default credential provider chain. */
  readonly credentials?: Client.StaticCredentials | undefined
  /**
   * How often the collector is drained and an interval queued for sending. Default 60 s, the KPL's default upload
   * delay: with standard (60 s) resolution CloudWatch keeps one data point per minute anyway, and one statistic set
   * per metric per minute is the fewest calls (and the lowest bill) that loses nothing.
   */
  readonly interval?: Duration.Input | undefined
  /**
   * Intervals kept while CloudWatch cannot take them (waiting to be sent, besides the one being sent). When one more
   * arrives, the oldest is dropped, counted and logged. Default 10: ten minutes of metrics ride out a short outage,
   * while memory stays bounded. A buffered datum takes about 145 bytes (measured), so with the producer's ~10 metrics
   * per shard an interval is ~1.5 KB per shard: 100 shards hold at most ~1.6 MB, 10,000 shards ~160 MB (lower it
   * there, or use Embedded Metric Format, which buffers nothing).
   */
  readonly maxBufferedIntervals?: number | undefined
  /** Time allowed for one `PutMetricData` call, answer included. Default 10 s. */
  readonly requestTimeout?: Duration.Input | undefined
  /** Retries of a request after throttling, a 5xx, a timeout or a network failure, with backoff. Default 3. */
  readonly maxRetries?: number | undefined
  /** Requests in flight at once while an interval is sent. Default 4. */
  readonly concurrency?: number | undefined
  /** Time allowed, when the layer closes, to send what is buffered and the last interval. Default 10 s. */
  readonly closeTimeout?: Duration.Input | undefined
}

/**
 * What the publisher has done so far.
 *
 * @example
 * ```ts
 * import type { CloudWatchMetrics } from "@effect-kinesis/cloudwatch"
 *
 * const healthy = (status: CloudWatchMetrics.Status) => status.droppedIntervals === 0 && status.failedRequests === 0
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Status {
  /** Intervals waiting to be sent, besides the one being sent. */
  readonly bufferedIntervals: number
  /** Intervals dropped, oldest first, because the buffer was full. */
  readonly droppedIntervals: number
  /** Intervals whose every batch was sent. */
  readonly sentIntervals: number
  readonly sentRequests: number
  readonly sentDatums: number
  /** Requests given up on (retries exhausted, or an error that retrying cannot fix); their datums are lost. */
  readonly failedRequests: number
  /** Datums CloudWatch would reject (too many dimensions, names too long, non-finite values), never sent. */
  readonly skippedDatums: number
}

/**
 * The publisher's status, provided alongside the `MetricsCollector` by {@link layer}.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CloudWatchMetrics } from "@effect-kinesis/cloudwatch"
 *
 * const dropped = Effect.gen(function*() {
 *   const publisher = yield* CloudWatchMetrics.CloudWatchMetrics
 *   const status = yield* publisher.status
 *   return status.droppedIntervals
 * })
 * ```
 *
 * @since 0.2.0
 * @category services
 */
export class CloudWatchMetrics extends Context.Service<CloudWatchMetrics, {
  readonly status: Effect.Effect<Status>
}>()("@effect-kinesis/cloudwatch/CloudWatchMetrics") {}

/**
 * Intervals dropped because CloudWatch could not take them in time, as an Effect `Metric` (for OTLP/Prometheus).
 *
 * @example
 * ```ts
 * import { Effect, Metric } from "effect"
 * import { CloudWatchMetrics } from "@effect-kinesis/cloudwatch"
 *
 * const dropped = Effect.map(Metric.value(CloudWatchMetrics.droppedIntervals), (state) => state.count)
 * ```
 *
 * @since 0.2.0
 * @category metrics
 */
export const droppedIntervals: Metric.Counter<number> = Metric.counter("effect_kinesis.cloudwatch.dropped_intervals", {
  description: "Metric intervals dropped because CloudWatch did not take them in time"
})

/**
 * `PutMetricData` requests given up on, as an Effect `Metric`.
 *
 * @example
 * ```ts
 * import { Effect, Metric } from "effect"
 * import { CloudWatchMetrics } from "@effect-kinesis/cloudwatch"
 *
 * const failed = Effect.map(Metric.value(CloudWatchMetrics.failedRequests), (state) => state.count)
 * ```
 *
 * @since 0.2.0
 * @category metrics
 */
export const failedRequests: Metric.Counter<number> = Metric.counter("effect_kinesis.cloudwatch.failed_requests", {
  description: "PutMetricData requests given up on"
})

const RETRYABLE_CODES = new Set([
  "Throttling",
  "ThrottlingException",
  "ServiceUnavailable",
  "InternalServiceError",
  "InternalServiceFault",
  "InternalFailure",
  "RequestTimeout",
  "RequestTimeoutException",
  "TimeoutError"
])

// What CloudWatch answers when it refuses what a request carries rather than the call: it takes a request whole or not
// at all, so one datum it refuses (or a request over its size) costs every datum of the request.
const REFUSED_CODES = new Set([
  "InvalidParameterValue",
  "InvalidParameterValueException",
  "InvalidParameterCombination",
  "InvalidParameterCombinationException",
  "MissingParameter",
  "MissingRequiredParameterException",
  "RequestEntityTooLarge"
])

interface SendFailure {
  readonly retryable: boolean
  /** Refused for its content: its halves may be taken. */
  readonly refused: boolean
  readonly description: string
}

/** Name, code and status only: an SDK error's other fields (the request, headers) are never logged. */
const describe = (error: unknown): SendFailure => {
  const e = (typeof error === "object" && error !== null ? error : {}) as Record<string, unknown>
  const name = typeof e["name"] === "string" ? e["name"] : "Error"
  const code = typeof e["Code"] === "string" ? e["Code"] : name
  const status = (e["$metadata"] as { httpStatusCode?: number } | undefined)?.httpStatusCode
  const message = typeof e["message"] === "string" ? e["message"].slice(0, 300) : ""
  const retryable = RETRYABLE_CODES.has(code) || RETRYABLE_CODES.has(name) || (status !== undefined && status >= 500) ||
    TransportFailure.isTransient(error)
  const refused = !retryable && (REFUSED_CODES.has(code) || REFUSED_CODES.has(name) || status === 413)
  return { retryable, refused, description: `${code}${status === undefined ? "" : ` (HTTP ${status})`}: ${message}` }
}

const timedOut = (millis: number): SendFailure => ({
  retryable: true,
  refused: false,
  description: `TimeoutError: no answer within ${millis} ms`
})

/** The datums `[from, to)` of a batch, as a request of their own. */
const slice = (batch: PutMetricData.Batch, from: number, to?: number): PutMetricData.Batch => ({
  input: { ...batch.input, MetricData: batch.input.MetricData.slice(from, to) }
})

/**
 * A `MetricsCollector` published to CloudWatch with the SDK client given (which the caller owns), plus the
 * publisher's status. Needs a `Scope`: closing it sends the last interval.
 *
 * @example
 * ```ts
 * import { CloudWatchClient } from "@aws-sdk/client-cloudwatch"
 * import { Effect } from "effect"
 * import { CloudWatchMetrics } from "@effect-kinesis/cloudwatch"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const { collector } = yield* CloudWatchMetrics.make(new CloudWatchClient({ region: "eu-west-1" }))
 *   collector.series({ namespace: "App", name: "Orders", unit: "Count", dimensions: [] }).record(1)
 * }))
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (
  sdk: CloudWatchClient,
  options: Options = {}
): Effect.Effect<
  {
    readonly collector: MetricsCollector.MetricsCollector["Service"]
    readonly publisher: CloudWatchMetrics["Service"]
  },
  InvalidSetting.InvalidSetting,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const invalid = ValidateOptions.validate(options)
    if (invalid !== undefined) return yield* invalid
    const capacity = Math.max(1, options.maxBufferedIntervals ?? 10)
    const requestTimeoutMillis = Duration.toMillis(Duration.fromInputUnsafe(options.requestTimeout ?? "10 seconds"))
    const closeTimeout = Duration.fromInputUnsafe(options.closeTimeout ?? "10 seconds")
    const concurrency = Math.max(1, options.concurrency ?? 4)
    const retry = Schedule.exponential("500 millis").pipe(
      Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(10)))),
      Schedule.jittered
    )
    const counts = {
      dropped: 0,
      sentIntervals: 0,
      sentRequests: 0,
      sentDatums: 0,
      failedRequests: 0,
      skippedDatums: 0
    }
    const buffer = yield* Queue.sliding<MetricsCollector.MetricsInterval, Cause.Done>(capacity)

    const call = (batch: PutMetricData.Batch) =>
      Effect.tryPromise({
        try: (abortSignal) => sdk.send(new PutMetricDataCommand(batch.input), { abortSignal }),
        catch: describe
      }).pipe(
        Effect.timeoutOrElse({
          duration: Duration.millis(requestTimeoutMillis),
          orElse: () => Effect.fail(timedOut(requestTimeoutMillis))
        })
      )

    // What a request and the halves it was sent again in lost, logged once for them all.
    interface Loss {
      requests: number
      datums: number
      first: string | undefined
    }

    // `splits`: how many more refused requests of this batch may be halved. Enough to isolate a couple of refused
    // datums (one per halving each); a refusal of every datum costs a few dozen requests, not one per datum.
    const attempt = (
      batch: PutMetricData.Batch,
      splits: { left: number },
      loss: Loss
    ): Effect.Effect<void> =>
      call(batch).pipe(
        Effect.retry({ while: (failure) => failure.retryable, schedule: retry, times: options.maxRetries ?? 3 }),
        Effect.matchEffect({
          onSuccess: () =>
            Effect.sync(() => {
              counts.sentRequests++
              counts.sentDatums += batch.input.MetricData.length
            }),
          onFailure: (failure) =>
            // Halves, one after the other, until the datums refused are alone: a few more requests (about two per
            // halving) instead of the whole request lost, interval after interval.
            failure.refused && batch.input.MetricData.length > 1 && splits.left > 0
              ? Effect.suspend(() => {
                splits.left--
                const half = Math.ceil(batch.input.MetricData.length / 2)
                return Effect.andThen(
                  attempt(slice(batch, 0, half), splits, loss),
                  attempt(slice(batch, half), splits, loss)
                )
              })
              : Effect.sync(() => {
                counts.failedRequests++
                loss.requests++
                loss.datums += batch.input.MetricData.length
                loss.first ??= failure.description
              }).pipe(Effect.andThen(Metric.update(failedRequests, 1)))
        })
      )

    /** Sends one request (and its halves, if refused); whether every datum arrived. */
    const send = (batch: PutMetricData.Batch): Effect.Effect<boolean> =>
      Effect.suspend(() => {
        const loss: Loss = { requests: 0, datums: 0, first: undefined }
        const splits = { left: 2 * Math.ceil(Math.log2(Math.max(2, batch.input.MetricData.length))) }
        return attempt(batch, splits, loss).pipe(
          Effect.andThen(
            Effect.suspend(() =>
              loss.requests === 0 ? Effect.succeed(true) : Effect.logWarning(
                `CloudWatch metrics: PutMetricData failed, ${loss.datums} datums of ${batch.input.Namespace} lost${
                  loss.requests > 1 ? ` (in ${loss.requests} requests)` : ""
                }: ${loss.first}`
              ).pipe(Effect.as(false))
            )
          )
        )
      })

    const sendInterval = (interval: MetricsCollector.MetricsInterval) =>
      Effect.gen(function*() {
        const plan = PutMetricData.plan(interval)
        counts.skippedDatums += plan.skipped
        if (plan.skipped > 0) {
          yield* Effect.logWarning(
            `CloudWatch metrics: ${plan.skipped} datums CloudWatch would reject were not sent (first: ${plan.skipReason})`
          )
        }
        // `concurrency` workers take requests from one lazy sequence: each is built just before it is sent.
        const requests = PutMetricData.batches(plan)
        let allSent = true
        const worker = Effect.gen(function*() {
          while (true) {
            const next = requests.next()
            if (next.done === true) return
            if (!(yield* send(next.value))) allSent = false
          }
        })
        yield* Effect.all(Array.from({ length: concurrency }, () => worker), {
          concurrency: "unbounded",
          discard: true
        })
        if (allSent) counts.sentIntervals++
      })

    const sender = yield* Effect.forkScoped(
      Effect.forever(Effect.flatMap(Queue.take(buffer), (interval) =>
        sendInterval(interval).pipe(
          // A defect (a bug) costs one interval, not the publisher.
          Effect.catchCause((cause) => Effect.logError("CloudWatch metrics: sending an interval failed", cause))
        ))).pipe(
          // Ends when the queue is ended at close and empty.
          Effect.ignore
        )
    )

    // Runs after the collector's own finalizer (registered below, so it runs first) has queued the last interval.
    yield* Effect.addFinalizer(() =>
      Queue.end(buffer).pipe(
        Effect.andThen(Fiber.join(sender).pipe(Effect.timeoutOption(closeTimeout))),
        Effect.flatMap((joined) =>
          Option.isSome(joined) ? Effect.void : Effect.logWarning(
            `CloudWatch metrics: not everything was sent within ${Duration.format(closeTimeout)} of closing; ${
              Queue.sizeUnsafe(buffer)
            } intervals left unsent`
          ).pipe(Effect.andThen(Fiber.interrupt(sender)))
        )
      )
    )

    const enqueue = (interval: MetricsCollector.MetricsInterval) =>
      Effect.suspend(() => {
        const full = Queue.sizeUnsafe(buffer) >= capacity
        // A sliding queue drops its oldest interval to take the new one.
        Queue.offerUnsafe(buffer, interval)
        if (!full) return Effect.void
        counts.dropped++
        return Metric.update(droppedIntervals, 1).pipe(
          Effect.andThen(Effect.logWarning(
            `CloudWatch metrics: CloudWatch is not keeping up, the oldest buffered interval was dropped (${counts.dropped} dropped so far)`
          ))
        )
      })

    const collector = yield* MetricsCollector.makePublishing(enqueue, { interval: options.interval })
    const publisher = CloudWatchMetrics.of({
      status: Effect.sync(() => ({
        bufferedIntervals: Queue.sizeUnsafe(buffer),
        droppedIntervals: counts.dropped,
        sentIntervals: counts.sentIntervals,
        sentRequests: counts.sentRequests,
        sentDatums: counts.sentDatums,
        failedRequests: counts.failedRequests,
        skippedDatums: counts.skippedDatums
      }))
    })
    return { collector, publisher }
  })

/**
 * The CloudWatch client of {@link layer}: region, endpoint and credentials as given (default: the SDK's chains),
 * HTTP/1.1 keep-alive, one attempt per call (the publisher retries itself).
 *
 * @example
 * ```ts
 * import { CloudWatchMetrics } from "@effect-kinesis/cloudwatch"
 *
 * const sdk = CloudWatchMetrics.makeClient({ region: "eu-west-1" })
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeClient = (options: Options = {}): CloudWatchClient =>
  new CloudWatchClient(
    Client.sdkOptions({
      region: options.region,
      endpoint: options.endpoint,
      credentials: options.credentials,
      httpHandler: "http1",
      maxSockets: Math.max(1, options.concurrency ?? 4)
    })
  )

/**
 * A `MetricsCollector` whose metrics go to CloudWatch, and the publisher's {@link Status}. Provide it to the producer
 * and the consumer; the SDK client is created with the layer and destroyed after the last interval is sent.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MetricsCollector } from "@effect-kinesis/core"
 * import { CloudWatchMetrics } from "@effect-kinesis/cloudwatch"
 *
 * const program = Effect.gen(function*() {
 *   const collector = yield* MetricsCollector.MetricsCollector
 *   collector.series({ namespace: "App", name: "Orders", unit: "Count", dimensions: [] }).record(1)
 * }).pipe(Effect.provide(CloudWatchMetrics.layer({ region: "eu-west-1" })))
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<MetricsCollector.MetricsCollector | CloudWatchMetrics, InvalidSetting.InvalidSetting> =>
  Layer.effectContext(
    Effect.gen(function*() {
      const sdk = yield* Effect.acquireRelease(
        Effect.sync(() => makeClient(options)),
        (sdk) => Effect.sync(() => sdk.destroy())
      )
      const { collector, publisher } = yield* make(sdk, options)
      return Context.make(MetricsCollector.MetricsCollector, collector).pipe(
        Context.add(CloudWatchMetrics, publisher)
      )
    })
  )

/**
 * The options read from Effect `Config` (environment variables by default):
 *
 * | variable | meaning |
 * |---|---|
 * | `CLOUDWATCH_ENDPOINT` | endpoint override (unset: AWS) |
 * | `AWS_REGION` | region (unset: the SDK's chain) |
 * | `CLOUDWATCH_METRICS_INTERVAL` | e.g. `60 seconds` (default) |
 * | `CLOUDWATCH_METRICS_MAX_BUFFERED_INTERVALS` | default 10 |
 *
 * Credentials always come from the SDK's default chain.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CloudWatchMetrics } from "@effect-kinesis/cloudwatch"
 *
 * const options = Effect.runSync(CloudWatchMetrics.config)
 * ```
 *
 * @since 0.2.0
 * @category config
 */
export const config: Config.Config<Options> = Config.all({
  endpoint: Config.option(Config.String("CLOUDWATCH_ENDPOINT")),
  region: Config.option(Config.String("AWS_REGION")),
  interval: Config.Duration("CLOUDWATCH_METRICS_INTERVAL").pipe(Config.withDefault(Duration.seconds(60))),
  maxBufferedIntervals: Config.Int("CLOUDWATCH_METRICS_MAX_BUFFERED_INTERVALS").pipe(Config.withDefault(10))
}).pipe(Config.map((c) => ({
  endpoint: Option.getOrUndefined(c.endpoint),
  region: Option.getOrUndefined(c.region),
  interval: c.interval,
  maxBufferedIntervals: c.maxBufferedIntervals
})))

/**
 * {@link layer} configured from the environment, see {@link config}.
 *
 * @example
 * ```ts
 * import { CloudWatchMetrics } from "@effect-kinesis/cloudwatch"
 *
 * const MetricsLive = CloudWatchMetrics.layerConfig
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig: Layer.Layer<
  MetricsCollector.MetricsCollector | CloudWatchMetrics,
  Config.ConfigError | InvalidSetting.InvalidSetting
> = Layer
  .unwrap(Effect.map(config, layer))

/**
 * The former name of {@link config}.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CloudWatchMetrics } from "@effect-kinesis/cloudwatch"
 *
 * const options = Effect.runSync(CloudWatchMetrics.config)
 * ```
 *
 * @deprecated Use `CloudWatchMetrics.config` (every module's `Config` of its `layerConfig` is named `config`).
 * @since 0.2.0
 * @category config
 */
export const options: Config.Config<Options> = config
