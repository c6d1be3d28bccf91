import type { Context } from "effect"
import { Metric } from "effect"
import * as ProducerMetrics from "../ProducerMetrics.ts"
import type { Entry } from "./entry.ts"

interface MutableShardMetrics {
  userRecordsPut: number
  kinesisRecordsPut: number
  bytesPut: number
  throttled: number
}

const latencyBoundaries = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000]
const attemptBoundaries = [1, 2, 3, 4, 5, 7, 10, 15, 20, 50]

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
 * metrics (updated as responses arrive, counters in bulk per request).
 */
export class Recorder {
  received = 0
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
  expired = 0
  wrongShardAggregates = 0
  private attempts = ProducerMetrics.makeHistogram()
  private latency = ProducerMetrics.makeHistogram()
  private shards = new Map<string, MutableShardMetrics>()
  private startTime: number
  private readonly metrics: ReturnType<typeof effectMetrics>
  private readonly context: Context.Context<never>
  // What the Effect counters have been told so far.
  private reported = {
    user: 0,
    userBytes: 0,
    kinesis: 0,
    kinesisBytes: 0,
    req: 0,
    reqFailed: 0,
    thr: 0,
    ret: 0,
    fail: 0
  }
  private readonly now: () => number

  constructor(stream: string, context: Context.Context<never>, now: () => number) {
    this.metrics = effectMetrics(stream)
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
  }

  kinesisPut(shardId: string, userRecords: number, bytes: number): void {
    this.kinesisRecordsPut++
    this.kinesisBytesPut += bytes
    const m = this.shard(shardId)
    m.kinesisRecordsPut++
    m.userRecordsPut += userRecords
    m.bytesPut += bytes
  }

  userPut(entry: Entry, now: number): void {
    this.userRecordsPut++
    this.userBytesPut += entry.data.length
    const latency = Math.max(1, Math.round(now - entry.enqueuedAt))
    this.latency.recordValue(latency)
    this.attempts.recordValue(entry.attempts)
    this.metrics.latency.updateUnsafe(latency, this.context)
    this.metrics.attempts.updateUnsafe(entry.attempts, this.context)
  }

  /** Pushes the counters' growth since the last call to the Effect metrics. */
  flushEffectMetrics(buffered: number): void {
    const m = this.metrics
    const r = this.reported
    const ctx = this.context
    const push = (metric: Metric.Metric<number, unknown>, total: number, seen: number) => {
      if (total > seen) metric.updateUnsafe(total - seen, ctx)
    }
    push(m.userRecordsPut, this.userRecordsPut, r.user)
    push(m.userBytesPut, this.userBytesPut, r.userBytes)
    push(m.kinesisRecordsPut, this.kinesisRecordsPut, r.kinesis)
    push(m.kinesisBytesPut, this.kinesisBytesPut, r.kinesisBytes)
    push(m.requests, this.requests, r.req)
    push(m.requestsFailed, this.requestsFailed, r.reqFailed)
    push(m.throttled, this.throttled, r.thr)
    push(m.retried, this.retried, r.ret)
    push(m.failed, this.failed, r.fail)
    m.buffered.updateUnsafe(buffered, ctx)
    this.reported = {
      user: this.userRecordsPut,
      userBytes: this.userBytesPut,
      kinesis: this.kinesisRecordsPut,
      kinesisBytes: this.kinesisBytesPut,
      req: this.requests,
      reqFailed: this.requestsFailed,
      thr: this.throttled,
      ret: this.retried,
      fail: this.failed
    }
  }

  /** The metrics since the last snapshot; starts a new interval. */
  snapshot(): ProducerMetrics.ProducerMetrics {
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
    this.reported = {
      user: 0,
      userBytes: 0,
      kinesis: 0,
      kinesisBytes: 0,
      req: 0,
      reqFailed: 0,
      thr: 0,
      ret: 0,
      fail: 0
    }
    this.attempts = ProducerMetrics.makeHistogram()
    this.latency = ProducerMetrics.makeHistogram()
    this.shards = new Map()
    return metrics
  }
}
