/**
 * Where the producer and the consumer record their CloudWatch-style metrics (the KPL's and the
 * KCL's names, units and dimensions). A collector keeps one statistic set (sample count, sum,
 * minimum, maximum) per metric and dimension set for the current interval; a publisher (the
 * `@effect-kinesis/cloudwatch` package: PutMetricData or Embedded Metric Format, or an Effect
 * `Metric` bridge) drains it once per interval.
 *
 * Recording is synchronous and allocation-free on the hot path: code asks for a {@link Series}
 * once (per shard, per stream…) and calls `record` on it. Nothing is recorded when no collector
 * is provided, so metrics cost nothing unless a publisher layer is in the context.
 *
 * @since 0.2.0
 */
import { Clock, Context, Duration, Effect, Layer, Metric, type Scope } from "effect"

/**
 * How much is recorded, as the KPL and the KCL define it: `none`; `summary` (the few metrics a
 * dashboard needs); `detailed` (everything, the default of both).
 *
 * @example
 * ```ts
 * import type { MetricsCollector } from "@effect-kinesis/core"
 *
 * const level: MetricsCollector.MetricsLevel = "summary"
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export type MetricsLevel = "none" | "summary" | "detailed"

/**
 * The CloudWatch units the library's metrics use.
 *
 * @example
 * ```ts
 * import type { MetricsCollector } from "@effect-kinesis/core"
 *
 * const unit: MetricsCollector.MetricUnit = "Milliseconds"
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export type MetricUnit =
  | "Count"
  | "Bytes"
  | "Milliseconds"
  | "Seconds"
  | "Percent"
  | "Count/Second"
  | "Bytes/Second"
  | "None"

/**
 * One CloudWatch dimension.
 *
 * @example
 * ```ts
 * import type { MetricsCollector } from "@effect-kinesis/core"
 *
 * const dimension: MetricsCollector.Dimension = { name: "StreamName", value: "orders" }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Dimension {
  readonly name: string
  readonly value: string
}

/**
 * What identifies a metric: namespace, name, unit and dimensions (their order does not matter).
 *
 * @example
 * ```ts
 * import type { MetricsCollector } from "@effect-kinesis/core"
 *
 * const key: MetricsCollector.MetricKey = {
 *   namespace: "KinesisProducerLibrary",
 *   name: "UserRecordsPut",
 *   unit: "Count",
 *   dimensions: [{ name: "StreamName", value: "orders" }]
 * }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface MetricKey {
  readonly namespace: string
  readonly name: string
  readonly unit: MetricUnit
  readonly dimensions: ReadonlyArray<Dimension>
}

/**
 * The statistics of the values recorded in one interval, as CloudWatch's `StatisticValues`.
 *
 * @example
 * ```ts
 * import type { MetricsCollector } from "@effect-kinesis/core"
 *
 * const set: MetricsCollector.StatisticSet = { sampleCount: 2, sum: 30, minimum: 10, maximum: 20 }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface StatisticSet {
  readonly sampleCount: number
  readonly sum: number
  readonly minimum: number
  readonly maximum: number
}

/**
 * A metric's statistics over one interval.
 *
 * @example
 * ```ts
 * import type { MetricsCollector } from "@effect-kinesis/core"
 *
 * const average = (datum: MetricsCollector.MetricDatum) => datum.statistics.sum / datum.statistics.sampleCount
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface MetricDatum extends MetricKey {
  readonly statistics: StatisticSet
}

/**
 * Everything recorded in `[startTime, endTime)` (epoch milliseconds): one datum per metric key
 * that received at least one value.
 *
 * @example
 * ```ts
 * import type { MetricsCollector } from "@effect-kinesis/core"
 *
 * const names = (interval: MetricsCollector.MetricsInterval) => interval.datums.map((datum) => datum.name)
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface MetricsInterval {
  readonly startTime: number
  readonly endTime: number
  readonly datums: ReadonlyArray<MetricDatum>
}

/**
 * A handle on one metric key: `record` adds one value, `recordStatistics` a set of values
 * already summarised (for example every record of a request at once). Both are synchronous and
 * cheap; take the series once and keep it.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MetricsCollector } from "@effect-kinesis/core"
 *
 * const program = Effect.gen(function*() {
 *   const collector = yield* MetricsCollector.MetricsCollector
 *   const put = collector.series({ namespace: "App", name: "Orders", unit: "Count", dimensions: [] })
 *   put.record(1)
 * })
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Series {
  readonly key: MetricKey
  readonly record: (value: number) => void
  readonly recordStatistics: (statistics: StatisticSet) => void
}

/**
 * The collector service. `series` returns the handle for a key (the same one for equal keys);
 * `drain` closes the current interval at the clock's time and returns it.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MetricsCollector } from "@effect-kinesis/core"
 *
 * const program = Effect.gen(function*() {
 *   const collector = yield* MetricsCollector.MetricsCollector
 *   collector.series({ namespace: "App", name: "Latency", unit: "Milliseconds", dimensions: [] }).record(12)
 *   const interval = yield* collector.drain
 *   return interval.datums[0]?.statistics.maximum // 12
 * }).pipe(Effect.provide(MetricsCollector.layer))
 * ```
 *
 * @since 0.2.0
 * @category services
 */
export class MetricsCollector extends Context.Service<MetricsCollector, {
  readonly series: (key: MetricKey) => Series
  readonly drain: Effect.Effect<MetricsInterval>
}>()("@effect-kinesis/core/MetricsCollector") {}

/**
 * Whether a metric of level `required` is recorded at level `configured`.
 *
 * @example
 * ```ts
 * import { MetricsCollector } from "@effect-kinesis/core"
 *
 * MetricsCollector.isEnabled("summary", "detailed") // false
 * ```
 *
 * @since 0.2.0
 * @category levels
 */
export const isEnabled = (configured: MetricsLevel, required: "summary" | "detailed"): boolean =>
  configured === "detailed" || (configured === "summary" && required === "summary")

/**
 * A series that records nothing, for metrics below the configured level.
 *
 * @example
 * ```ts
 * import { MetricsCollector } from "@effect-kinesis/core"
 *
 * MetricsCollector.disabled.record(1) // no effect
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const disabled: Series = {
  key: { namespace: "", name: "", unit: "None", dimensions: [] },
  record: () => {},
  recordStatistics: () => {}
}

/** A series idle for this many intervals leaves the collector's index (its handle still works). */
const idleIntervalsBeforeEviction = 2

const keyString = (key: MetricKey): string => {
  const dimensions = key.dimensions.length <= 1
    ? key.dimensions
    : [...key.dimensions].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  let s = `${key.namespace}\u0000${key.name}\u0000${key.unit}`
  for (const d of dimensions) s += `\u0000${d.name}\u0001${d.value}`
  return s
}

class SeriesImpl implements Series {
  sampleCount = 0
  sum = 0
  minimum = Infinity
  maximum = -Infinity
  idleIntervals = 0
  active = false
  readonly key: MetricKey
  readonly id: string
  private readonly activate: (series: SeriesImpl) => void
  constructor(key: MetricKey, id: string, activate: (series: SeriesImpl) => void) {
    this.key = key
    this.id = id
    this.activate = activate
  }
  record = (value: number): void => {
    if (!this.active) this.activate(this)
    this.sampleCount++
    this.sum += value
    if (value < this.minimum) this.minimum = value
    if (value > this.maximum) this.maximum = value
  }
  recordStatistics = (statistics: StatisticSet): void => {
    if (statistics.sampleCount <= 0) return
    if (!this.active) this.activate(this)
    this.sampleCount += statistics.sampleCount
    this.sum += statistics.sum
    if (statistics.minimum < this.minimum) this.minimum = statistics.minimum
    if (statistics.maximum > this.maximum) this.maximum = statistics.maximum
  }
}

/**
 * A new collector whose first interval starts now.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MetricsCollector } from "@effect-kinesis/core"
 *
 * const program = Effect.gen(function*() {
 *   const collector = yield* MetricsCollector.make
 *   return yield* collector.drain
 * })
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const make: Effect.Effect<MetricsCollector["Service"]> = Effect.map(Clock.currentTimeMillis, (start) => {
  const index = new Map<string, SeriesImpl>()
  let active: Array<SeriesImpl> = []
  let intervalStart = start
  const activate = (series: SeriesImpl) => {
    series.active = true
    series.idleIntervals = 0
    active.push(series)
    if (!index.has(series.id)) index.set(series.id, series)
  }
  const series = (key: MetricKey): Series => {
    const id = keyString(key)
    const existing = index.get(id)
    if (existing !== undefined) return existing
    const created = new SeriesImpl(key, id, activate)
    index.set(id, created)
    return created
  }
  const drain = Effect.map(Clock.currentTimeMillis, (now): MetricsInterval => {
    const drained = active
    active = []
    // Two handles for one key (one evicted, then re-created) still give one datum.
    const byKey = new Map<
      string,
      { key: MetricKey; sampleCount: number; sum: number; minimum: number; maximum: number }
    >()
    for (const s of drained) {
      s.active = false
      const merged = byKey.get(s.id)
      if (merged === undefined) {
        byKey.set(s.id, { key: s.key, sampleCount: s.sampleCount, sum: s.sum, minimum: s.minimum, maximum: s.maximum })
      } else {
        merged.sampleCount += s.sampleCount
        merged.sum += s.sum
        merged.minimum = Math.min(merged.minimum, s.minimum)
        merged.maximum = Math.max(merged.maximum, s.maximum)
      }
      s.sampleCount = 0
      s.sum = 0
      s.minimum = Infinity
      s.maximum = -Infinity
    }
    for (const [id, s] of index) {
      if (!s.active && ++s.idleIntervals >= idleIntervalsBeforeEviction) index.delete(id)
    }
    const datums: Array<MetricDatum> = []
    for (const m of byKey.values()) {
      if (m.sampleCount === 0) continue
      datums.push({
        ...m.key,
        statistics: { sampleCount: m.sampleCount, sum: m.sum, minimum: m.minimum, maximum: m.maximum }
      })
    }
    const interval = { startTime: intervalStart, endTime: now, datums }
    intervalStart = now
    return interval
  })
  return { series, drain }
})

/**
 * A collector on its own, for tests and for publishers built on it.
 *
 * @example
 * ```ts
 * import { MetricsCollector } from "@effect-kinesis/core"
 *
 * const CollectorLive = MetricsCollector.layer
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer: Layer.Layer<MetricsCollector> = Layer.effect(MetricsCollector, make)

/**
 * Options of {@link makePublishing}.
 *
 * @since 0.2.0
 * @category models
 */
export interface PublishingOptions {
  /**
   * How often the collector is drained and the interval handed to the publisher. Default 60 s: the
   * KPL's `MetricsUploadDelay` and CloudWatch's standard resolution (one datum per metric per
   * minute), so one interval is one CloudWatch data point. Shorter than 10 ms counts as 10 ms.
   */
  readonly interval?: Duration.Input | undefined
}

/**
 * A collector drained in the background: every `interval` the interval just ended is handed to
 * `publish` (empty intervals are skipped), and when the scope closes the last one is drained and
 * published too. `publish` runs on the draining fiber, so it should hand the interval off quickly
 * (a publisher that calls a service buffers and sends from a fiber of its own); recording never
 * waits for it either way. A failure or defect of `publish` is logged and the next interval
 * goes on.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { MetricsCollector } from "@effect-kinesis/core"
 *
 * const LogMetrics = Layer.effect(
 *   MetricsCollector.MetricsCollector,
 *   MetricsCollector.makePublishing(
 *     (interval) => Effect.log(`${interval.datums.length} metrics`),
 *     { interval: "10 seconds" }
 *   )
 * )
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const makePublishing = <R>(
  publish: (interval: MetricsInterval) => Effect.Effect<void, unknown, R>,
  options: PublishingOptions = {}
): Effect.Effect<MetricsCollector["Service"], never, R | Scope.Scope> =>
  Effect.gen(function*() {
    const collector = yield* make
    // A zero or negative interval would drain in a busy loop.
    const every = Duration.max(Duration.fromInputUnsafe(options.interval ?? "60 seconds"), Duration.millis(10))
    const tick = Effect.flatMap(
      collector.drain,
      (interval) =>
        interval.datums.length === 0 ? Effect.void : publish(interval).pipe(
          Effect.catchCause((cause) => Effect.logWarning("metrics: publishing an interval failed", cause))
        )
    )
    // Registered before the loop is forked, so it runs after the loop is interrupted: the last
    // drain cannot race a periodic one.
    yield* Effect.addFinalizer(() => tick)
    yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(every), tick)))
    return collector
  })

/**
 * Options of {@link publishEffectMetrics} and {@link layerEffectMetrics}.
 *
 * @since 0.2.0
 * @category models
 */
export interface EffectMetricsOptions extends PublishingOptions {
  /**
   * Names of `Count` / `Bytes` metrics that are levels or per-request distributions rather than
   * running totals, published as gauges like the time metrics. Default {@link defaultGaugeNames}.
   */
  readonly gauges?: Iterable<string> | undefined
}

/**
 * The KPL's and the KCL's `Count` metrics that are not totals: pending records, lease and worker
 * counts, and per-record / per-request distributions. A sum of them over time means nothing.
 *
 * @example
 * ```ts
 * import { MetricsCollector } from "@effect-kinesis/core"
 *
 * MetricsCollector.defaultGaugeNames.has("CurrentLeases") // true
 * ```
 *
 * @since 0.2.0
 * @category constants
 */
export const defaultGaugeNames: ReadonlySet<string> = new Set([
  "UserRecordsPending",
  "RetriesPerRecord",
  "UserRecordsPerKinesisRecord",
  "KinesisRecordsPerPutRecordsRequest",
  "UserRecordsPerPutRecordsRequest",
  "CurrentLeases",
  "TotalLeases",
  "NeededLeases",
  "NumWorkers",
  "LeasesToTake"
])

/**
 * Publishes one interval as Effect `Metric`s, so that Effect's exporters (OTLP, Prometheus) see
 * what the collector holds, with the namespace (attribute `Namespace`) and each dimension as
 * attributes:
 *
 * - a `Count` or `Bytes` metric (a running total: records put, bytes processed, errors) adds its
 *   interval sum to the counter of the same name;
 * - any other metric (times, lag, and the `Count` levels named in `gauges`) sets three gauges:
 *   `<name>` to the interval's average, `<name>.max` and `<name>.min`.
 *
 * The producer records each KPL value at every level of the KPL's tree down to its granularity
 * (no dimensions, `StreamName`, `StreamName` + `ShardId`), as CloudWatch expects; an OTLP or
 * Prometheus query that sums a counter should therefore sum one level (say, the series with a
 * `ShardId`), not all of them.
 *
 * @example
 * ```ts
 * import { Effect, Metric } from "effect"
 * import { MetricsCollector } from "@effect-kinesis/core"
 *
 * const program = Effect.gen(function*() {
 *   const collector = yield* MetricsCollector.make
 *   collector.series({ namespace: "App", name: "Orders", unit: "Count", dimensions: [] }).record(3)
 *   yield* MetricsCollector.publishEffectMetrics()(yield* collector.drain)
 *   return yield* Metric.value(Metric.withAttributes(Metric.counter("Orders"), { Namespace: "App" })) // { count: 3, … }
 * })
 * ```
 *
 * @since 0.2.0
 * @category publishers
 */
export const publishEffectMetrics = (
  options: EffectMetricsOptions = {}
): (interval: MetricsInterval) => Effect.Effect<void> => {
  const gauges = options.gauges === undefined ? defaultGaugeNames : new Set(options.gauges)
  return (interval) =>
    Effect.map(Effect.context<never>(), (context) => {
      // The fiber's context, so that a `MetricRegistry` provided by the caller is the one updated.
      for (const datum of interval.datums) {
        // The namespace too: two KCL applications (namespace = application name) reading shards of the same id
        // would otherwise add into one counter and overwrite each other's gauges.
        const attributes: Record<string, string> = { Namespace: datum.namespace }
        for (const d of datum.dimensions) attributes[d.name] = d.value
        const { maximum, minimum, sampleCount, sum } = datum.statistics
        if ((datum.unit === "Count" || datum.unit === "Bytes") && !gauges.has(datum.name)) {
          Metric.counter(datum.name, { attributes }).updateUnsafe(sum, context)
        } else {
          Metric.gauge(datum.name, { attributes }).updateUnsafe(sum / sampleCount, context)
          Metric.gauge(`${datum.name}.max`, { attributes }).updateUnsafe(maximum, context)
          Metric.gauge(`${datum.name}.min`, { attributes }).updateUnsafe(minimum, context)
        }
      }
    })
}

/**
 * A collector whose intervals are published as Effect `Metric`s (see {@link publishEffectMetrics}),
 * for Effect's OTLP or Prometheus exporters; no AWS involved.
 *
 * @example
 * ```ts
 * import { MetricsCollector } from "@effect-kinesis/core"
 *
 * const MetricsLive = MetricsCollector.layerEffectMetrics({ interval: "15 seconds" })
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerEffectMetrics = (options: EffectMetricsOptions = {}): Layer.Layer<MetricsCollector> =>
  Layer.effect(MetricsCollector, makePublishing(publishEffectMetrics(options), options))
