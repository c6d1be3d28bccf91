/**
 * Turning a collector interval into `PutMetricData` requests within CloudWatch's limits.
 *
 * @internal
 */
import type { MetricDatum as SdkDatum, PutMetricDataInput } from "@aws-sdk/client-cloudwatch"
import type { MetricsCollector } from "@effect-kinesis/core"

/**
 * `PutMetricData` limits (API reference, 2026): at most 1000 datums and 1 MB per request, 30 dimensions per datum
 * with distinct names, names 1–255 characters, dimension values 1–1024 (printable ASCII, not blank; a dimension name
 * does not start with `:`; a namespace is printable ASCII too, not starting with `:` nor `AWS/`), values within ±2^360
 * and finite.
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

/**
 * An interval's datums by namespace (one namespace per request), and how many datums CloudWatch would reject
 * (skipped, with the first reason).
 *
 * @internal
 */
export interface Plan {
  readonly timestamp: Date
  readonly namespaces: ReadonlyMap<string, ReadonlyArray<MetricsCollector.MetricDatum>>
  readonly skipped: number
  readonly skipReason: string | undefined
}

/** The UTF-8 size of `JSON.stringify(text)`, without building it: this runs for every string of every datum. */
const jsonBytes = (text: string): number => {
  let bytes = 2
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22 || c === 0x5c) bytes += 2
    else if (c < 0x20) bytes += 6
    else if (c < 0x80) bytes += 1
    else if (c < 0x800) bytes += 2
    else if (c >= 0xd800 && c < 0xe000) bytes += 3 // a surrogate: 4 bytes a pair, or a 6-byte escape alone (rounded)
    else bytes += 3
  }
  return bytes
}

/**
 * CloudWatch's rule for dimension names and values: printable ASCII only and not blank. One bad dimension makes
 * CloudWatch refuse the whole request, so such a datum is skipped here rather than sent.
 */
const dimensionText = (text: string): boolean => {
  let blank = true
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x20 || c > 0x7e) return false
    if (c !== 0x20) blank = false
  }
  return !blank
}

const valid = (x: number): boolean => Number.isFinite(x) && Math.abs(x) <= MAX_MAGNITUDE

const problem = (datum: MetricsCollector.MetricDatum): string | undefined => {
  if (
    datum.namespace.length > MAX_NAME || datum.namespace.startsWith("AWS/") || datum.namespace.charCodeAt(0) === 0x3a ||
    !dimensionText(datum.namespace)
  ) {
    return `namespace ${JSON.stringify(datum.namespace)}`
  }
  if (datum.name.length < 1 || datum.name.length > MAX_NAME) return `metric name ${JSON.stringify(datum.name)}`
  if (datum.dimensions.length > MAX_DIMENSIONS) return `${datum.dimensions.length} dimensions on ${datum.name}`
  for (let i = 0; i < datum.dimensions.length; i++) {
    const d = datum.dimensions[i]!
    if (
      d.name.length > MAX_NAME || d.value.length > MAX_DIMENSION_VALUE || !dimensionText(d.name) ||
      !dimensionText(d.value) || d.name.charCodeAt(0) === 0x3a
    ) {
      return `dimension ${JSON.stringify(d.name)} of ${datum.name}`
    }
    for (let j = 0; j < i; j++) {
      if (datum.dimensions[j]!.name === d.name) return `dimension ${JSON.stringify(d.name)} twice on ${datum.name}`
    }
  }
  const s = datum.statistics
  if (
    !(s.sampleCount > 0) || !valid(s.sampleCount) || !valid(s.sum) || !valid(s.minimum) || !valid(s.maximum) ||
    s.minimum > s.maximum
  ) {
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
 * Checks an interval's datums against CloudWatch's limits and groups them by namespace; one pass, no batches built
 * yet.
 *
 * @internal
 */
export const plan = (interval: MetricsCollector.MetricsInterval): Plan => {
  const namespaces = new Map<string, Array<MetricsCollector.MetricDatum>>()
  let skipped = 0
  let skipReason: string | undefined
  for (const datum of interval.datums) {
    const reason = problem(datum)
    if (reason !== undefined) {
      skipped++
      skipReason ??= reason
      continue
    }
    let group = namespaces.get(datum.namespace)
    if (group === undefined) namespaces.set(datum.namespace, group = [])
    group.push(datum)
  }
  return { timestamp: new Date(interval.endTime), namespaces, skipped, skipReason }
}

/**
 * The requests of a plan, built one at a time as they are taken, so that an interval of 100,000 datums never holds
 * the thread for more than one request's worth: at most {@link MAX_DATUMS_PER_REQUEST} datums and
 * {@link MAX_REQUEST_BYTES} estimated bytes each, statistic sets timestamped at the interval's end, standard (60 s)
 * resolution.
 *
 * @internal
 */
export function* batches(plan: Plan): Generator<Batch> {
  for (const [namespace, datums] of plan.namespaces) {
    const envelope = 40 + jsonBytes(namespace)
    let current: Array<SdkDatum> = []
    let bytes = envelope
    for (const datum of datums) {
      const size = estimate(datum) + 1
      if (current.length === MAX_DATUMS_PER_REQUEST || (current.length > 0 && bytes + size > MAX_REQUEST_BYTES)) {
        yield { input: { Namespace: namespace, MetricData: current } }
        current = []
        bytes = envelope
      }
      current.push({
        MetricName: datum.name,
        Dimensions: datum.dimensions.map((d) => ({ Name: d.name, Value: d.value })),
        Timestamp: plan.timestamp,
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
    if (current.length > 0) yield { input: { Namespace: namespace, MetricData: current } }
  }
}
