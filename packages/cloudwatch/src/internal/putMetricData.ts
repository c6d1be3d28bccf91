/**
 * Turning a collector interval into `PutMetricData` requests within CloudWatch's limits.
 *
 * @internal
 */
import type { MetricDatum as SdkDatum, PutMetricDataInput } from "@aws-sdk/client-cloudwatch"
import type { MetricsCollector } from "@effect-kinesis/core"

/**
 * `PutMetricData` limits (API reference, 2026): at most 1000 datums and 1 MB per request, 30 dimensions per datum,
 * names 1–255 characters, dimension values 1–1024, values within ±2^360 and finite.
 *
 * @internal
 */
export const MAX_DATUMS_PER_REQUEST = 1000
/**
 * The request limit is 1 MB (1,048,576 bytes in CloudWatch's 413 message); batches are cut at a smaller estimate of
 * the uncompressed JSON body, so that the estimate's error and the envelope never push a request over.
 *
 * @internal
 */
export const MAX_REQUEST_BYTES = 1_000_000
const MAX_DIMENSIONS = 30
const MAX_NAME = 255
const MAX_DIMENSION_VALUE = 1024
const MAX_MAGNITUDE = 2 ** 360

/** One request: a namespace and at most 1000 datums whose JSON stays under the size budget. @internal */
export interface Batch {
  readonly input: PutMetricDataInput & { MetricData: Array<SdkDatum> }
}

/** Batches of an interval, and how many datums CloudWatch would reject (skipped, with the first reason). @internal */
export interface Batched {
  readonly batches: ReadonlyArray<Batch>
  readonly skipped: number
  readonly skipReason: string | undefined
}

const jsonBytes = (text: string): number => Buffer.byteLength(JSON.stringify(text))

const valid = (x: number): boolean => Number.isFinite(x) && Math.abs(x) <= MAX_MAGNITUDE

const problem = (datum: MetricsCollector.MetricDatum): string | undefined => {
  if (datum.namespace.length < 1 || datum.namespace.length > MAX_NAME || datum.namespace.startsWith("AWS/")) {
    return `namespace ${JSON.stringify(datum.namespace)}`
  }
  if (datum.name.length < 1 || datum.name.length > MAX_NAME) return `metric name ${JSON.stringify(datum.name)}`
  if (datum.dimensions.length > MAX_DIMENSIONS) return `${datum.dimensions.length} dimensions on ${datum.name}`
  for (const d of datum.dimensions) {
    if (d.name.length < 1 || d.name.length > MAX_NAME || d.value.length < 1 || d.value.length > MAX_DIMENSION_VALUE) {
      return `dimension ${JSON.stringify(d.name)} of ${datum.name}`
    }
  }
  const s = datum.statistics
  if (!(s.sampleCount > 0) || !valid(s.sampleCount) || !valid(s.sum) || !valid(s.minimum) || !valid(s.maximum)) {
    return `non-finite or out-of-range statistics of ${datum.name}`
  }
  return undefined
}

// Field names, punctuation and four numbers of one serialised datum, rounded up: `{"MetricName":…,"Dimensions":[…],
// "Timestamp":1700000000.123,"StatisticValues":{"SampleCount":…,"Sum":…,"Minimum":…,"Maximum":…},"Unit":"…",
// "StorageResolution":60}`.
const DATUM_OVERHEAD = 200
const DIMENSION_OVERHEAD = 20

const estimate = (datum: MetricsCollector.MetricDatum): number => {
  let bytes = DATUM_OVERHEAD + jsonBytes(datum.name) + jsonBytes(datum.unit)
  for (const d of datum.dimensions) bytes += DIMENSION_OVERHEAD + jsonBytes(d.name) + jsonBytes(d.value)
  const s = datum.statistics
  bytes += String(s.sampleCount).length + String(s.sum).length + String(s.minimum).length + String(s.maximum).length
  return bytes
}

/**
 * Groups an interval's datums by namespace (one namespace per request) and cuts each group into requests of at most
 * {@link MAX_DATUMS_PER_REQUEST} datums and {@link MAX_REQUEST_BYTES} estimated bytes. Every datum is a statistic set
 * timestamped at the interval's end, at standard (60 s) resolution.
 *
 * @internal
 */
export const batches = (interval: MetricsCollector.MetricsInterval): Batched => {
  const timestamp = new Date(interval.endTime)
  const byNamespace = new Map<string, Array<MetricsCollector.MetricDatum>>()
  let skipped = 0
  let skipReason: string | undefined
  for (const datum of interval.datums) {
    const reason = problem(datum)
    if (reason !== undefined) {
      skipped++
      skipReason ??= reason
      continue
    }
    let group = byNamespace.get(datum.namespace)
    if (group === undefined) byNamespace.set(datum.namespace, group = [])
    group.push(datum)
  }
  const out: Array<Batch> = []
  for (const [namespace, datums] of byNamespace) {
    const envelope = 40 + jsonBytes(namespace)
    let current: Array<SdkDatum> = []
    let bytes = envelope
    for (const datum of datums) {
      const size = estimate(datum) + 1
      if (current.length === MAX_DATUMS_PER_REQUEST || (current.length > 0 && bytes + size > MAX_REQUEST_BYTES)) {
        out.push({ input: { Namespace: namespace, MetricData: current } })
        current = []
        bytes = envelope
      }
      current.push({
        MetricName: datum.name,
        Dimensions: datum.dimensions.map((d) => ({ Name: d.name, Value: d.value })),
        Timestamp: timestamp,
        StatisticValues: {
          SampleCount: datum.statistics.sampleCount,
          Sum: datum.statistics.sum,
          Minimum: datum.statistics.minimum,
          Maximum: datum.statistics.maximum
        },
        Unit: datum.unit,
        StorageResolution: 60
      })
      bytes += size
    }
    if (current.length > 0) out.push({ input: { Namespace: namespace, MetricData: current } })
  }
  return { batches: out, skipped, skipReason }
}
