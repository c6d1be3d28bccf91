/**
 * Collector intervals as CloudWatch Embedded Metric Format log lines.
 *
 * @internal
 */
import type { MetricsCollector } from "@effect-kinesis/core"

/** EMF: at most 100 metric definitions per directive, 30 dimensions per dimension set. @internal */
export const MAX_METRICS_PER_LINE = 100
/** @internal */
export const MAX_DIMENSIONS = 30
/**
 * A log event is at most 256 KB (CloudWatch Logs; EMF inherits it). Lines are cut well below it, leaving room for
 * what a log agent or Lambda prepends.
 *
 * @internal
 */
export const MAX_LINE_BYTES = 200_000

const valid = (x: number): boolean => Number.isFinite(x) && Math.abs(x) <= 2 ** 360

interface Group {
  readonly namespace: string
  readonly dimensions: ReadonlyArray<MetricsCollector.Dimension>
  readonly datums: Array<MetricsCollector.MetricDatum>
}

const groupKey = (datum: MetricsCollector.MetricDatum): string => {
  const dims = datum.dimensions.length <= 1
    ? datum.dimensions
    : [...datum.dimensions].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  let key = datum.namespace
  for (const d of dims) key += `\u0000${d.name}\u0001${d.value}`
  return key
}

/**
 * The lines of one interval, built one at a time as they are taken (so that a large interval can be written in
 * slices), and the count of datums EMF cannot carry (too many dimensions, non-finite values).
 *
 * @internal
 */
export const lines = (interval: MetricsCollector.MetricsInterval): {
  readonly lines: Generator<string>
  readonly skipped: number
} => {
  const groups = new Map<string, Group>()
  let skipped = 0
  for (const datum of interval.datums) {
    const s = datum.statistics
    const dimensionClash = datum.dimensions.some((d) => d.name === datum.name || d.name === "_aws")
    if (
      datum.dimensions.length > MAX_DIMENSIONS || dimensionClash || !(s.sampleCount > 0) ||
      !valid(s.sum) || !valid(s.minimum) || !valid(s.maximum)
    ) {
      skipped++
      continue
    }
    const key = groupKey(datum)
    let group = groups.get(key)
    if (group === undefined) {
      groups.set(key, group = { namespace: datum.namespace, dimensions: datum.dimensions, datums: [] })
    }
    group.datums.push(datum)
  }
  return { lines: render(interval.endTime, groups.values()), skipped }
}

function* render(timestamp: number, groups: Iterable<Group>): Generator<string> {
  for (const group of groups) {
    let metrics: Array<{ Name: string; Unit: string; StorageResolution: 60 }> = []
    let root: Record<string, unknown> = {}
    let bytes = 0
    const line = (): string => {
      const line: Record<string, unknown> = {
        _aws: {
          Timestamp: timestamp,
          CloudWatchMetrics: [{
            Namespace: group.namespace,
            Dimensions: [group.dimensions.map((d) => d.name)],
            Metrics: metrics
          }]
        }
      }
      for (const d of group.dimensions) line[d.name] = d.value
      Object.assign(line, root)
      metrics = []
      root = {}
      bytes = 0
      return JSON.stringify(line)
    }
    for (const datum of group.datums) {
      const s = datum.statistics
      // A statistic set, as AWS's own EMF libraries write one: CloudWatch takes it like PutMetricData's
      // StatisticValues, so Sum, SampleCount, Average, Minimum and Maximum stay exact over any period.
      const value = { Max: s.maximum, Min: s.minimum, Count: s.sampleCount, Sum: s.sum }
      const size = datum.name.length * 2 + 120
      // One value per name in a line: a second unit of the same name starts a new line.
      if (metrics.length === MAX_METRICS_PER_LINE || datum.name in root || bytes + size > MAX_LINE_BYTES) yield line()
      metrics.push({ Name: datum.name, Unit: datum.unit, StorageResolution: 60 })
      root[datum.name] = value
      bytes += size
    }
    if (metrics.length > 0) yield line()
  }
}
