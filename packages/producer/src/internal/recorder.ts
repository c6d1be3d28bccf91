import { Context, Metric } from "effect"
import * as ProducerMetrics from "../ProducerMetrics.ts"
import type { ShardTrafficLog } from "./autoSplit.ts"
import type { Entry } from "./entry.ts"
import type { ShardState } from "./shardState.ts"

export interface MutableShardMetrics {
  userRecordsPut: number
  kinesisRecordsPut: number
  bytesPut: number
  throttled: number
}

/** Latencies (ms) and attempt counts below this are counted per response before recording. */
const PENDING_SLOTS = 4096

const latencyBoundaries = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000]
const attemptBoundaries = [1, 2, 3, 4, 5, 7, 10, 15, 20, 50]

/**
 * An Effect histogram series kept by the producer and read by the registry at export time:
 * `Metric.updateUnsafe` looks the series up by key on every call, which per user record cost
 * more than the rest of the acknowledgement. The state is what Effect's own histogram reports.
 */
class HistogramSeries {
  private readonly boundaries: Float64Array
  private readonly values: Float64Array
  private count = 0
  private sum = 0
  private min = Number.MAX_VALUE
  private max = -Number.MAX_VALUE

  constructor(boundaries: ReadonlyArray<number>) {
    this.boundaries = Float64Array.from(boundaries).sort()
    this.values = new Float64Array(boundaries.length + 1)
  }

  update(value: number, count: number): void {
    const boundaries = this.boundaries
    // Values are small (latencies, attempts), so a scan from the low end beats a binary search.
    let i = 0
    while (i < boundaries.length && value > boundaries[i]!) i++
    this.values[i]! += count
    this.count += count
    this.sum += value * count
    if (value < this.min) this.min = value
    if (value > this.max) this.max = value
  }

  state(): Metric.HistogramState {
    const buckets: Array<[number, number]> = []
    let cumulated = 0
    for (let i = 0; i < this.boundaries.length; i++) {
      cumulated += this.values[i]!
      buckets.push([this.boundaries[i]!, cumulated])
    }
    return { buckets, count: this.count, min: this.min, max: this.max, sum: this.sum }
  }
}

// Producers of one stream in one registry share their series, as updates to one metric would.
const seriesByRegistry = new WeakMap<object, Map<string, HistogramSeries>>()

const histogramSeries = (
  metric: Metric.Metric<number, Metric.HistogramState>,
  name: string,
  boundaries: ReadonlyArray<number>,
  context: Context.Context<never>
): HistogramSeries => {
  const registry = Context.get(context, Metric.MetricRegistry)
  let byKey = seriesByRegistry.get(registry)
  if (byKey === undefined) {
    byKey = new Map()
    seriesByRegistry.set(registry, byKey)
  }
  const key = `${name}\u0000${JSON.stringify(metric.attributes ?? {})}\u0000${
    JSON.stringify(Context.get(context, Metric.CurrentMetricAttributes))
  }`
  let series = byKey.get(key)
  if (series === undefined) {
    const created = new HistogramSeries(boundaries)
    series = created
    byKey.set(key, created)
    Metric.registerUnsafe(metric, context, { get: () => created.state(), update: () => {}, modify: () => {} })
  }
  return series
}

/**
 * The Effect `Metric`s a producer updates (tagged with its stream), for OpenTelemetry and other
 * exporters. Names follow the KPL's metrics.
 */
const effectMetrics = (stream: string) => {
  const attributes = { stream }
  const counter = (name: string, description: string) =>
    Metric.counter(name, { description, attributes, incremental: true })
  return {
    userRecordsPut: counter("kinesis_producer_user_records_put", "User records acknowledged by Kinesis"),
    userBytesPut: counter("kinesis_producer_user_bytes_put", "Data bytes of the user records acknowledged"),
    kinesisRecordsPut: counter("kinesis_producer_kinesis_records_put", "Kinesis records written"),
    kinesisBytesPut: counter("kinesis_producer_kinesis_bytes_put", "Bytes of the Kinesis records written"),
    requests: counter("kinesis_producer_requests", "PutRecords requests completed"),
    requestsFailed: counter("kinesis_producer_requests_failed", "PutRecords requests that failed as a whole"),
    throttled: counter("kinesis_producer_throttled", "Kinesis records refused with ProvisionedThroughputExceeded"),
    retried: counter("kinesis_producer_retried", "User records sent again after a retryable failure"),
    failed: counter("kinesis_producer_failed", "User records that failed for good"),
    latency: Metric.histogram("kinesis_producer_latency_ms", {
      description: "Milliseconds from offer to acknowledgement per user record",
      attributes,
      boundaries: latencyBoundaries
    }),
    attempts: Metric.histogram("kinesis_producer_attempts", {
      description: "Attempts per acknowledged user record",
      attributes,
      boundaries: attemptBoundaries
    }),
    buffered: Metric.gauge("kinesis_producer_user_records_pending", {
      description: "User records accepted and not yet settled",
      attributes
    })
  }
}

/**
 * Counts what the engine does, for {@link ProducerMetrics} snapshots (per interval) and Effect
 * metrics (histogram series as responses arrive, counters once per metrics interval).
 */
export class Recorder {
  userRecordsPut = 0
  userBytesPut = 0
  kinesisRecordsPut = 0
  kinesisBytesPut = 0
  kinesisRecordsSent = 0
  requests = 0
  requestsFailed = 0
  throttled = 0
  retried = 0
  failed = 0
  private attempts = ProducerMetrics.makeHistogram()
  private latency = ProducerMetrics.makeHistogram()
  private shards = new Map<string, MutableShardMetrics>()
  private startTime: number
  private readonly metrics: ReturnType<typeof effectMetrics>
  private readonly latencySeries: HistogramSeries
  private readonly attemptsSeries: HistogramSeries
  private readonly context: Context.Context<never>
  /** Bumped by each snapshot, which starts new per-shard counters. */
  private epoch = 0
  // Counts by value of what `userPut` saw and `endResponse` has not yet moved to the histograms.
  private readonly pendingLatency = new Float64Array(PENDING_SLOTS)
  private readonly pendingAttempts = new Float64Array(PENDING_SLOTS)
  private pendingLow = PENDING_SLOTS
  private pendingHigh = -1
  private pendingAttemptsHigh = -1
  // What the Effect counters have been told so far.
  private readonly now: () => number
  /** Per-shard traffic for auto-split, when it is on. */
  traffic: ShardTrafficLog | undefined = undefined

  constructor(stream: string, context: Context.Context<never>, now: () => number) {
    this.metrics = effectMetrics(stream)
    this.latencySeries = histogramSeries(
      this.metrics.latency,
      "kinesis_producer_latency_ms",
      latencyBoundaries,
      context
    )
    this.attemptsSeries = histogramSeries(
      this.metrics.attempts,
      "kinesis_producer_attempts",
      attemptBoundaries,
      context
    )
    this.context = context
    this.now = now
    this.startTime = now()
  }

  private shard(shardId: string): MutableShardMetrics {
    let m = this.shards.get(shardId)
    if (m === undefined) {
      m = { userRecordsPut: 0, kinesisRecordsPut: 0, bytesPut: 0, throttled: 0 }
      this.shards.set(shardId, m)
    }
    return m
  }

  throttledRecord(shardId: string): void {
    this.throttled++
    this.shard(shardId).throttled++
    this.traffic?.sent(shardId, true)
  }

  /** A Kinesis record predicted for `predicted` was written to `shardId` (usually the same). */
  kinesisPut(predicted: ShardState, shardId: string, userRecords: number, bytes: number): void {
    this.kinesisRecordsPut++
    this.kinesisBytesPut += bytes
    this.traffic?.sent(predicted.info.shardId, false)
    let m: MutableShardMetrics
    if (shardId !== predicted.info.shardId) m = this.shard(shardId)
    else if (predicted.metrics !== undefined && predicted.metricsEpoch === this.epoch) m = predicted.metrics
    else {
      // Kept on the shard state so that the common case needs no lookup by id.
      m = this.shard(shardId)
      predicted.metrics = m
      predicted.metricsEpoch = this.epoch
    }
    m.kinesisRecordsPut++
    m.userRecordsPut += userRecords
    m.bytesPut += bytes
  }

  /**
   * A user record was acknowledged. Histograms are updated once per distinct value of a
   * response (`endResponse`), not once per record: latencies are whole milliseconds and the
   * records of a response were mostly admitted within a few of them, and nearly all took one
   * attempt.
   */
  userPut(entry: Entry, now: number): void {
    this.userRecordsPut++
    this.userBytesPut += entry.dataBytes
    if (this.traffic !== undefined) this.traffic.observe(entry.shard!.info.shardId, entry.hashKey.key)
    const latency = Math.max(1, Math.round(now - entry.enqueuedAt))
    const attempts = entry.attempts
    if (latency < PENDING_SLOTS && attempts < PENDING_SLOTS) {
      this.pendingLatency[latency]!++
      this.pendingAttempts[attempts]!++
      if (latency < this.pendingLow) this.pendingLow = latency
      if (latency > this.pendingHigh) this.pendingHigh = latency
      if (attempts > this.pendingAttemptsHigh) this.pendingAttemptsHigh = attempts
    } else {
      this.latency.recordValue(latency)
      this.attempts.recordValue(attempts)
      this.latencySeries.update(latency, 1)
      this.attemptsSeries.update(attempts, 1)
    }
  }

  /** Moves what `userPut` counted into the histograms. */
  endResponse(): void {
    const latencies = this.pendingLatency
    for (let v = this.pendingLow; v <= this.pendingHigh; v++) {
      const count = latencies[v]!
      if (count === 0) continue
      latencies[v] = 0
      this.latency.recordValueWithCount(v, count)
      this.latencySeries.update(v, count)
    }
    this.pendingLow = PENDING_SLOTS
    this.pendingHigh = -1
    const attempts = this.pendingAttempts
    for (let v = 0; v <= this.pendingAttemptsHigh; v++) {
      const count = attempts[v]!
      if (count === 0) continue
      attempts[v] = 0
      this.attempts.recordValueWithCount(v, count)
      this.attemptsSeries.update(v, count)
    }
    this.pendingAttemptsHigh = -1
  }

  /**
   * Adds this interval's counts to the Effect counters. Called right before {@link snapshot},
   * which starts the next interval from zero.
   */
  flushEffectMetrics(buffered: number): void {
    const m = this.metrics
    const ctx = this.context
    const push = (metric: Metric.Metric<number, unknown>, total: number) => {
      if (total > 0) metric.updateUnsafe(total, ctx)
    }
    push(m.userRecordsPut, this.userRecordsPut)
    push(m.userBytesPut, this.userBytesPut)
    push(m.kinesisRecordsPut, this.kinesisRecordsPut)
    push(m.kinesisBytesPut, this.kinesisBytesPut)
    push(m.requests, this.requests)
    push(m.requestsFailed, this.requestsFailed)
    push(m.throttled, this.throttled)
    push(m.retried, this.retried)
    push(m.failed, this.failed)
    m.buffered.updateUnsafe(buffered, ctx)
  }

  /** The metrics since the last snapshot; starts a new interval. */
  snapshot(): ProducerMetrics.ProducerMetrics {
    this.endResponse()
    const endTime = this.now()
    const metrics: ProducerMetrics.ProducerMetrics = {
      startTime: this.startTime,
      endTime,
      userRecordsPut: this.userRecordsPut,
      userBytesPut: this.userBytesPut,
      kinesisRecordsPut: this.kinesisRecordsPut,
      kinesisBytesPut: this.kinesisBytesPut,
      kinesisRecordsSent: this.kinesisRecordsSent,
      requests: this.requests,
      requestsFailed: this.requestsFailed,
      throttled: this.throttled,
      retried: this.retried,
      failed: this.failed,
      attempts: this.attempts,
      latency: this.latency,
      shards: new Map(Array.from(this.shards, ([id, m]) => [id, { ...m }]))
    }
    this.startTime = endTime
    this.userRecordsPut = 0
    this.userBytesPut = 0
    this.kinesisRecordsPut = 0
    this.kinesisBytesPut = 0
    this.kinesisRecordsSent = 0
    this.requests = 0
    this.requestsFailed = 0
    this.throttled = 0
    this.retried = 0
    this.failed = 0
    this.attempts = ProducerMetrics.makeHistogram()
    this.latency = ProducerMetrics.makeHistogram()
    this.shards = new Map()
    this.epoch++
    return metrics
  }
}
