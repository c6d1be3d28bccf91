/**
 * Publishes what producers and consumers record as CloudWatch Embedded Metric Format (EMF) log lines: no API calls.
 * On Lambda, ECS with the `awslogs` driver, or any host running the CloudWatch agent, CloudWatch Logs extracts the
 * metrics from the lines. The layer provides core's `MetricsCollector`; every `interval` the collector is drained
 * and each (namespace, dimension values) group of the interval becomes one JSON line (split at EMF's 100 metrics per
 * line):
 *
 * ```json
 * {"_aws":{"Timestamp":1767225600000,"CloudWatchMetrics":[{"Namespace":"KinesisProducerLibrary",
 *   "Dimensions":[["StreamName","ShardId"]],"Metrics":[{"Name":"UserRecordsPut","Unit":"Count","StorageResolution":60}]}]},
 *  "StreamName":"orders","ShardId":"shardId-000000000000","UserRecordsPut":{"Max":12,"Min":1,"Count":40,"Sum":211}}
 * ```
 *
 * Each value is a statistic set (`Max`, `Min`, `Count`, `Sum`), the form AWS's own EMF libraries write: CloudWatch
 * aggregates it like `PutMetricData`'s `StatisticValues`, so sums, sample counts, averages, minima and maxima stay
 * exact. A single number per interval would make `SampleCount` 1 and `Sum` whatever that number is; an array of
 * values would need every value, which the collector does not keep.
 *
 * @since 0.2.0
 */
import { type InvalidSetting, MetricsCollector } from "@effect-kinesis/core"
import { type Duration, Effect, Layer, type Scope } from "effect"
import * as Emf from "./internal/emf.ts"
import * as ValidateOptions from "./internal/validateOptions.ts"

/**
 * Options of {@link layer}.
 *
 * @example
 * ```ts
 * import type { EmbeddedMetrics } from "@effect-kinesis/cloudwatch"
 *
 * const lines: Array<string> = []
 * const options: EmbeddedMetrics.Options = { interval: "60 seconds", write: (line) => lines.push(line) }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** How often the collector is drained and its interval written. Default 60 s (one data point per minute). */
  readonly interval?: Duration.Input | undefined
  /**
   * Where each line goes (without its newline). Default: standard output, one `write` per line so that lines of
   * concurrent writers never interleave.
   */
  readonly write?: ((line: string) => void) | undefined
}

const LINES_PER_SLICE = 200

const stdout = (line: string): void => {
  process.stdout.write(line + "\n")
}

/**
 * The EMF lines of one interval (one per namespace and dimension values, at most 100 metrics each). Datums EMF cannot
 * carry — more than 30 dimensions, a dimension named like a metric, non-finite values — are left out.
 *
 * @example
 * ```ts
 * import { EmbeddedMetrics } from "@effect-kinesis/cloudwatch"
 *
 * const lines = EmbeddedMetrics.lines({
 *   startTime: 0,
 *   endTime: 60_000,
 *   datums: [{
 *     namespace: "App",
 *     name: "Orders",
 *     unit: "Count",
 *     dimensions: [],
 *     statistics: { sampleCount: 1, sum: 3, minimum: 3, maximum: 3 }
 *   }]
 * })
 * ```
 *
 * @since 0.2.0
 * @category encoding
 */
export const lines = (interval: MetricsCollector.MetricsInterval): ReadonlyArray<string> =>
  Array.from(Emf.lines(interval).lines)

/**
 * A collector whose intervals are written as EMF lines, for the current scope (closing it writes the last interval).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { EmbeddedMetrics } from "@effect-kinesis/cloudwatch"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const collector = yield* EmbeddedMetrics.make({ interval: "10 seconds" })
 *   collector.series({ namespace: "App", name: "Orders", unit: "Count", dimensions: [] }).record(1)
 * }))
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<MetricsCollector.MetricsCollector["Service"], InvalidSetting.InvalidSetting, Scope.Scope> => {
  const invalid = ValidateOptions.interval(options.interval)
  if (invalid !== undefined) return Effect.fail(invalid)
  const write = options.write ?? stdout
  return MetricsCollector.makePublishing(
    (interval) =>
      Effect.gen(function*() {
        const { lines, skipped } = Emf.lines(interval)
        let written = 0
        for (const line of lines) {
          write(line)
          // A large interval (10,000 shards' worth) is written in slices, so the thread is never held for long.
          if (++written % LINES_PER_SLICE === 0) yield* Effect.yieldNow
        }
        if (skipped > 0) yield* Effect.logWarning(`Embedded metrics: ${skipped} datums EMF cannot carry were left out`)
      }),
    { interval: options.interval }
  )
}

/**
 * A `MetricsCollector` written as EMF lines (to standard output by default). Provide it to the producer and the
 * consumer.
 *
 * @example
 * ```ts
 * import { EmbeddedMetrics } from "@effect-kinesis/cloudwatch"
 *
 * const MetricsLive = EmbeddedMetrics.layer({ interval: "60 seconds" })
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<MetricsCollector.MetricsCollector, InvalidSetting.InvalidSetting> =>
  Layer.effect(MetricsCollector.MetricsCollector, make(options))
