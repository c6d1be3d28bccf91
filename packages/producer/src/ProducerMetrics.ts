/**
 * What a producer did during an interval: counts, success rate, and HdrHistograms of attempts
 * and latency. Values combine (histograms add), so totals over intervals or over several
 * producers are statistically sound.
 *
 * @since 0.1.0
 */
import * as Hdr from "hdr-histogram-js"

/**
 * An HdrHistogram (from `hdr-histogram-js`): `getValueAtPercentile`, `mean`, `maxValue`,
 * `totalCount`, `summary`…
 *
 * @example
 * ```ts
 * import { ProducerMetrics } from "@effect-kinesis/producer"
 *
 * const p99 = (histogram: ProducerMetrics.Histogram) => histogram.getValueAtPercentile(99)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Histogram = Hdr.Histogram

/**
 * Counts for one shard.
 *
 * @example
 * ```ts
 * import type { ProducerMetrics } from "@effect-kinesis/producer"
 *
 * const shard: ProducerMetrics.ShardMetrics = { userRecordsPut: 10, kinesisRecordsPut: 1, bytesPut: 1000, throttled: 0 }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ShardMetrics {
  readonly userRecordsPut: number
  readonly kinesisRecordsPut: number
  /** Bytes of the Kinesis records written (data + partition keys). */
  readonly bytesPut: number
  /** Kinesis records refused with `ProvisionedThroughputExceededException`. */
  readonly throttled: number
}

/**
 * Producer metrics for the interval `[startTime, endTime]` (epoch milliseconds).
 *
 * @example
 * ```ts
 * import { ProducerMetrics } from "@effect-kinesis/producer"
 *
 * const report = (m: ProducerMetrics.ProducerMetrics) =>
 *   `${m.userRecordsPut} records, p99 ${m.latency.getValueAtPercentile(99)} ms, ` +
 *   `success ${(ProducerMetrics.successRate(m) * 100).toFixed(1)} %`
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ProducerMetrics {
  readonly startTime: number
  readonly endTime: number
  /** User records acknowledged by Kinesis. */
  readonly userRecordsPut: number
  /** Data bytes of the user records acknowledged. */
  readonly userBytesPut: number
  /** Kinesis records written (an aggregate counts once). */
  readonly kinesisRecordsPut: number
  /** Bytes of the Kinesis records written (data + partition keys). */
  readonly kinesisBytesPut: number
  /** Kinesis records sent, counting every attempt. */
  readonly kinesisRecordsSent: number
  /** PutRecords requests completed (successfully or not). */
  readonly requests: number
  /** Whole PutRecords requests that failed (timeouts, 5xx, connection errors…). */
  readonly requestsFailed: number
  /** Kinesis records refused with `ProvisionedThroughputExceededException`. */
  readonly throttled: number
  /** User records sent again after a retryable failure. */
  readonly retried: number
  /** User records that failed for good (expired, refused, retries exhausted, closed). */
  readonly failed: number
  /** Attempts each acknowledged user record needed. */
  readonly attempts: Histogram
  /** Milliseconds from offer to acknowledgement, per acknowledged user record. */
  readonly latency: Histogram
  /** Counts per shard id. */
  readonly shards: ReadonlyMap<string, ShardMetrics>
}

/**
 * A new, empty HdrHistogram of the kind the metrics use (1 to 1 hour in ms, 2 significant
 * digits, resizing as needed).
 *
 * @example
 * ```ts
 * import { ProducerMetrics } from "@effect-kinesis/producer"
 *
 * const histogram = ProducerMetrics.makeHistogram()
 * histogram.recordValue(12)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeHistogram = (): Histogram =>
  Hdr.build({
    bitBucketSize: 32,
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000,
    numberOfSignificantValueDigits: 2,
    autoResize: true,
    useWebAssembly: false
  })

const copyHistogram = (h: Histogram): Histogram => {
  const copy = makeHistogram()
  copy.add(h)
  return copy
}

/**
 * No records, an empty interval. The identity of {@link combine}.
 *
 * @example
 * ```ts
 * import { ProducerMetrics } from "@effect-kinesis/producer"
 *
 * ProducerMetrics.empty().userRecordsPut // 0
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const empty = (): ProducerMetrics => ({
  startTime: Number.POSITIVE_INFINITY,
  endTime: Number.NEGATIVE_INFINITY,
  userRecordsPut: 0,
  userBytesPut: 0,
  kinesisRecordsPut: 0,
  kinesisBytesPut: 0,
  kinesisRecordsSent: 0,
  requests: 0,
  requestsFailed: 0,
  throttled: 0,
  retried: 0,
  failed: 0,
  attempts: makeHistogram(),
  latency: makeHistogram(),
  shards: new Map()
})

const combineShards = (a: ShardMetrics, b: ShardMetrics): ShardMetrics => ({
  userRecordsPut: a.userRecordsPut + b.userRecordsPut,
  kinesisRecordsPut: a.kinesisRecordsPut + b.kinesisRecordsPut,
  bytesPut: a.bytesPut + b.bytesPut,
  throttled: a.throttled + b.throttled
})

/**
 * The metrics of both: counts summed, histograms added, the interval spanning both. Use it to
 * total successive intervals or several producers. Neither argument is modified.
 *
 * @example
 * ```ts
 * import { ProducerMetrics } from "@effect-kinesis/producer"
 * import { Effect, Ref } from "effect"
 *
 * const totals = Ref.makeUnsafe(ProducerMetrics.empty())
 * const onMetrics = (m: ProducerMetrics.ProducerMetrics) => Ref.update(totals, (t) => ProducerMetrics.combine(t, m))
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const combine = (a: ProducerMetrics, b: ProducerMetrics): ProducerMetrics => {
  const shards = new Map(a.shards)
  for (const [id, m] of b.shards) {
    const existing = shards.get(id)
    shards.set(id, existing === undefined ? m : combineShards(existing, m))
  }
  const attempts = copyHistogram(a.attempts)
  attempts.add(b.attempts)
  const latency = copyHistogram(a.latency)
  latency.add(b.latency)
  return {
    startTime: Math.min(a.startTime, b.startTime),
    endTime: Math.max(a.endTime, b.endTime),
    userRecordsPut: a.userRecordsPut + b.userRecordsPut,
    userBytesPut: a.userBytesPut + b.userBytesPut,
    kinesisRecordsPut: a.kinesisRecordsPut + b.kinesisRecordsPut,
    kinesisBytesPut: a.kinesisBytesPut + b.kinesisBytesPut,
    kinesisRecordsSent: a.kinesisRecordsSent + b.kinesisRecordsSent,
    requests: a.requests + b.requests,
    requestsFailed: a.requestsFailed + b.requestsFailed,
    throttled: a.throttled + b.throttled,
    retried: a.retried + b.retried,
    failed: a.failed + b.failed,
    attempts,
    latency,
    shards
  }
}

/**
 * Share of Kinesis records sent that were written, counting every attempt (1 when nothing was
 * sent). Throttling and errors lower it.
 *
 * @example
 * ```ts
 * import { ProducerMetrics } from "@effect-kinesis/producer"
 *
 * ProducerMetrics.successRate(ProducerMetrics.empty()) // 1
 * ```
 *
 * @since 0.1.0
 * @category getters
 */
export const successRate = (m: ProducerMetrics): number =>
  m.kinesisRecordsSent === 0 ? 1 : Math.min(1, m.kinesisRecordsPut / m.kinesisRecordsSent)

/**
 * Average user records per Kinesis record written (1 without aggregation; KPL
 * `UserRecordsPerKinesisRecord`). 0 when nothing was written.
 *
 * @example
 * ```ts
 * import { ProducerMetrics } from "@effect-kinesis/producer"
 *
 * ProducerMetrics.userRecordsPerKinesisRecord(ProducerMetrics.empty()) // 0
 * ```
 *
 * @since 0.1.0
 * @category getters
 */
export const userRecordsPerKinesisRecord = (m: ProducerMetrics): number =>
  m.kinesisRecordsPut === 0 ? 0 : m.userRecordsPut / m.kinesisRecordsPut

/**
 * User records acknowledged per second over the interval (0 for an empty interval).
 *
 * @example
 * ```ts
 * import { ProducerMetrics } from "@effect-kinesis/producer"
 *
 * ProducerMetrics.recordsPerSecond(ProducerMetrics.empty()) // 0
 * ```
 *
 * @since 0.1.0
 * @category getters
 */
export const recordsPerSecond = (m: ProducerMetrics): number => {
  const seconds = (m.endTime - m.startTime) / 1000
  return seconds > 0 && Number.isFinite(seconds) ? m.userRecordsPut / seconds : 0
}
