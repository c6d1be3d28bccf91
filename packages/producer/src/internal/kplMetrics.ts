import { MetricsCollector } from "@effect-kinesis/core"
import type * as ProducerSettings from "../ProducerSettings.ts"

/**
 * The KPL's producer metrics (`aws/metrics/metrics_constants.cc` and where `aws/kinesis/core`
 * records them), with the KPL's level and unit, and whether the KPL keeps it per shard (`shard`)
 * or only per stream and overall.
 */
export const definitions = {
  UserRecordsReceived: { unit: "Count", level: "detailed", shard: false },
  UserRecordsPending: { unit: "Count", level: "detailed", shard: false },
  UserRecordsPut: { unit: "Count", level: "summary", shard: true },
  UserRecordsDataPut: { unit: "Bytes", level: "detailed", shard: true },
  KinesisRecordsPut: { unit: "Count", level: "summary", shard: true },
  KinesisRecordsDataPut: { unit: "Bytes", level: "detailed", shard: true },
  ErrorsByCode: { unit: "Count", level: "summary", shard: true },
  AllErrors: { unit: "Count", level: "summary", shard: true },
  RetriesPerRecord: { unit: "Count", level: "detailed", shard: true },
  UserRecordExpired: { unit: "Count", level: "summary", shard: true },
  BufferingTime: { unit: "Milliseconds", level: "summary", shard: true },
  RequestTime: { unit: "Milliseconds", level: "detailed", shard: false },
  UserRecordsPerKinesisRecord: { unit: "Count", level: "detailed", shard: true },
  KinesisRecordsPerPutRecordsRequest: { unit: "Count", level: "detailed", shard: false },
  UserRecordsPerPutRecordsRequest: { unit: "Count", level: "detailed", shard: false }
} as const satisfies Record<
  string,
  { unit: MetricsCollector.MetricUnit; level: "summary" | "detailed"; shard: boolean }
>

export type MetricName = keyof typeof definitions

/** Values being summed up between flushes. It is a `StatisticSet`, so it is recorded as it is. */
export class Stat implements MetricsCollector.StatisticSet {
  sampleCount = 0
  sum = 0
  minimum = Number.POSITIVE_INFINITY
  maximum = Number.NEGATIVE_INFINITY

  add(value: number): void {
    this.sampleCount++
    this.sum += value
    if (value < this.minimum) this.minimum = value
    if (value > this.maximum) this.maximum = value
  }

  reset(): void {
    this.sampleCount = 0
    this.sum = 0
    this.minimum = Number.POSITIVE_INFINITY
    this.maximum = Number.NEGATIVE_INFINITY
  }
}

/**
 * Values that are each 0 or 1 (the KPL's success and error counts): two additions per value, the
 * minimum and maximum follow from the counts.
 */
export class Tally implements MetricsCollector.StatisticSet {
  sampleCount = 0
  sum = 0

  get minimum(): number {
    return this.sum < this.sampleCount ? 0 : 1
  }

  get maximum(): number {
    return this.sum > 0 ? 1 : 0
  }

  ones(count: number): void {
    this.sampleCount += count
    this.sum += count
  }

  zeros(count: number): void {
    this.sampleCount += count
  }

  reset(): void {
    this.sampleCount = 0
    this.sum = 0
  }
}

type Granularity = ProducerSettings.Resolved["metrics"]["granularity"]

/** Where one node of the KPL's metric tree is recorded: its series at each granularity kept. */
type Targets = ReadonlyArray<MetricsCollector.Series>

const record = (targets: Targets, stat: MetricsCollector.StatisticSet): void => {
  for (let i = 0; i < targets.length; i++) targets[i]!.recordStatistics(stat)
}

/** Errors by code, a `Tally` of ones each, with the series of each code taken on first sight. */
class ErrorCounts {
  private readonly counts = new Map<string, { readonly tally: Tally; readonly targets: Targets }>()
  private readonly owner: KplMetrics
  private readonly shardId: string | undefined
  constructor(owner: KplMetrics, shardId: string | undefined) {
    this.owner = owner
    this.shardId = shardId
  }

  add(code: string): void {
    let entry = this.counts.get(code)
    if (entry === undefined) {
      entry = { tally: new Tally(), targets: this.owner.errorTargets(code, this.shardId) }
      this.counts.set(code, entry)
    }
    entry.tally.ones(1)
  }

  flush(): void {
    for (const { tally, targets } of this.counts.values()) {
      if (tally.sampleCount === 0) continue
      record(targets, tally)
      tally.reset()
    }
  }
}

/**
 * What the metrics of one shard sum up between flushes. The engine keeps one on each shard's
 * state, so recording is a few additions with no lookup; the series are taken once, here.
 */
export class ShardAcc {
  readonly userRecordsPut = new Tally()
  readonly userRecordsDataPut = new Stat()
  readonly kinesisRecordsPut = new Tally()
  readonly kinesisRecordsDataPut = new Stat()
  readonly allErrors = new Tally()
  readonly retriesPerRecord = new Stat()
  readonly userRecordExpired = new Tally()
  readonly bufferingTime = new Stat()
  readonly userRecordsPerKinesisRecord = new Stat()
  private readonly errors: ErrorCounts
  private readonly targets: Record<
    | "UserRecordsPut"
    | "UserRecordsDataPut"
    | "KinesisRecordsPut"
    | "KinesisRecordsDataPut"
    | "AllErrors"
    | "RetriesPerRecord"
    | "UserRecordExpired"
    | "BufferingTime"
    | "UserRecordsPerKinesisRecord",
    Targets
  >

  constructor(owner: KplMetrics, shardId: string) {
    const t = (name: MetricName) => owner.targets(name, shardId)
    this.targets = {
      UserRecordsPut: t("UserRecordsPut"),
      UserRecordsDataPut: t("UserRecordsDataPut"),
      KinesisRecordsPut: t("KinesisRecordsPut"),
      KinesisRecordsDataPut: t("KinesisRecordsDataPut"),
      AllErrors: t("AllErrors"),
      RetriesPerRecord: t("RetriesPerRecord"),
      UserRecordExpired: t("UserRecordExpired"),
      BufferingTime: t("BufferingTime"),
      UserRecordsPerKinesisRecord: t("UserRecordsPerKinesisRecord")
    }
    this.errors = new ErrorCounts(owner, shardId)
  }

  /** A Kinesis record of `userRecords` user records (`bytes` with its partition key) was written. */
  kinesisRecordPut(userRecords: number, bytes: number): void {
    this.kinesisRecordsPut.ones(1)
    this.kinesisRecordsDataPut.add(bytes)
    this.allErrors.zeros(1)
    this.userRecordsPerKinesisRecord.add(userRecords)
  }

  /** Kinesis refused a Kinesis record of `userRecords` user records with `code`. */
  kinesisRecordFailed(userRecords: number, code: string): void {
    this.kinesisRecordsPut.zeros(1)
    this.errors.add(code)
    this.allErrors.ones(1)
    this.userRecordsPerKinesisRecord.add(userRecords)
  }

  /** A user record failed for good after `attempts` attempts. */
  userRecordFailed(attempts: number, expired: boolean): void {
    this.userRecordsPut.zeros(1)
    this.retriesPerRecord.add(attempts > 0 ? attempts - 1 : 0)
    if (expired) this.userRecordExpired.ones(1)
  }

  /** A user record was written, after `attempts` attempts. */
  userRecordPut(dataBytes: number, attempts: number): void {
    this.userRecordsPut.ones(1)
    this.userRecordsDataPut.add(dataBytes)
    this.retriesPerRecord.add(attempts - 1)
  }

  flush(): void {
    const t = this.targets
    flushStat(t.UserRecordsPut, this.userRecordsPut)
    flushStat(t.UserRecordsDataPut, this.userRecordsDataPut)
    flushStat(t.KinesisRecordsPut, this.kinesisRecordsPut)
    flushStat(t.KinesisRecordsDataPut, this.kinesisRecordsDataPut)
    flushStat(t.AllErrors, this.allErrors)
    flushStat(t.RetriesPerRecord, this.retriesPerRecord)
    flushStat(t.UserRecordExpired, this.userRecordExpired)
    flushStat(t.BufferingTime, this.bufferingTime)
    flushStat(t.UserRecordsPerKinesisRecord, this.userRecordsPerKinesisRecord)
    this.errors.flush()
  }
}

const flushStat = (targets: Targets, stat: Stat | Tally): void => {
  if (stat.sampleCount === 0) return
  record(targets, stat)
  stat.reset()
}

/** The stream name of a stream name or ARN (`arn:aws:kinesis:…:stream/<name>`), as the KPL reports it. */
export const streamName = (stream: string): string => {
  if (!stream.startsWith("arn:")) return stream
  const i = stream.indexOf(":stream/")
  return i >= 0 ? stream.slice(i + ":stream/".length) : stream
}

/**
 * A producer's KPL metrics: the shards' accumulators and the per-stream ones, flushed into the
 * collector's series by {@link KplMetrics.flush} (every 200 ms and at close), so the data path
 * only adds numbers. Each value goes to every node of the KPL's metric tree down to the configured
 * granularity: no dimensions, `StreamName`, `StreamName` + `ShardId` (for `ErrorsByCode` each
 * below `ErrorCode`).
 */
export class KplMetrics {
  private readonly collector: MetricsCollector.MetricsCollector["Service"]
  private readonly namespace: string
  private readonly level: MetricsCollector.MetricsLevel
  private readonly granularity: Granularity
  private readonly stream: string
  private readonly shards = new Map<string, ShardAcc>()

  readonly userRecordsReceived = new Tally()
  readonly userRecordsPending = new Stat()
  readonly requestTime = new Stat()
  readonly kinesisRecordsPerRequest = new Stat()
  readonly userRecordsPerRequest = new Stat()
  /** Whole requests that failed, which the KPL counts per stream (no shard to charge). */
  readonly requestErrors = new Tally()
  private readonly requestErrorCodes: ErrorCounts
  private readonly streamTargets: {
    readonly received: Targets
    readonly pending: Targets
    readonly requestTime: Targets
    readonly kinesisRecordsPerRequest: Targets
    readonly userRecordsPerRequest: Targets
    readonly allErrors: Targets
  }

  constructor(
    collector: MetricsCollector.MetricsCollector["Service"],
    settings: ProducerSettings.Resolved["metrics"],
    stream: string
  ) {
    this.collector = collector
    this.namespace = settings.namespace
    this.level = settings.level
    this.granularity = settings.granularity
    this.stream = streamName(stream)
    this.streamTargets = {
      received: this.targets("UserRecordsReceived", undefined),
      pending: this.targets("UserRecordsPending", undefined),
      requestTime: this.targets("RequestTime", undefined),
      kinesisRecordsPerRequest: this.targets("KinesisRecordsPerPutRecordsRequest", undefined),
      userRecordsPerRequest: this.targets("UserRecordsPerPutRecordsRequest", undefined),
      allErrors: this.targets("AllErrors", undefined)
    }
    this.requestErrorCodes = new ErrorCounts(this, undefined)
  }

  private series(
    name: MetricName,
    dimensions: ReadonlyArray<MetricsCollector.Dimension>
  ): MetricsCollector.Series {
    return this.collector.series({ namespace: this.namespace, name, unit: definitions[name].unit, dimensions })
  }

  private enabled(name: MetricName): boolean {
    return MetricsCollector.isEnabled(this.level, definitions[name].level)
  }

  /**
   * The series a value of `name` recorded for `shardId` (or for the stream) goes to: the tree's
   * nodes from the root down to the granularity configured, or down to the stream for the
   * metrics the KPL does not keep per shard.
   */
  targets(name: MetricName, shardId: string | undefined): Targets {
    if (!this.enabled(name)) return []
    const out = [this.series(name, [])]
    if (this.granularity === "global") return out
    const stream = { name: "StreamName", value: this.stream }
    out.push(this.series(name, [stream]))
    if (this.granularity === "shard" && shardId !== undefined && definitions[name].shard) {
      out.push(this.series(name, [stream, { name: "ShardId", value: shardId }]))
    }
    return out
  }

  /** `ErrorsByCode`'s nodes for one code: the root, then `ErrorCode`, then the stream and the shard. */
  errorTargets(code: string, shardId: string | undefined): Targets {
    if (!this.enabled("ErrorsByCode")) return []
    const errorCode = { name: "ErrorCode", value: code }
    const out = [this.series("ErrorsByCode", []), this.series("ErrorsByCode", [errorCode])]
    if (this.granularity === "global") return out
    const stream = { name: "StreamName", value: this.stream }
    out.push(this.series("ErrorsByCode", [errorCode, stream]))
    if (this.granularity === "shard" && shardId !== undefined) {
      out.push(this.series("ErrorsByCode", [errorCode, stream, { name: "ShardId", value: shardId }]))
    }
    return out
  }

  /** The accumulator of a shard, made on first use. */
  shard(shardId: string): ShardAcc {
    let acc = this.shards.get(shardId)
    if (acc === undefined) {
      acc = new ShardAcc(this, shardId)
      this.shards.set(shardId, acc)
    }
    return acc
  }

  /** Flushes and forgets the accumulators of shards no longer open. */
  retainShards(open: ReadonlySet<string>): void {
    for (const [id, acc] of this.shards) {
      if (open.has(id)) continue
      acc.flush()
      this.shards.delete(id)
    }
  }

  /** A PutRecords request was answered (or failed) after `millis`. */
  request(millis: number, kinesisRecords: number, userRecords: number): void {
    this.requestTime.add(millis)
    this.kinesisRecordsPerRequest.add(kinesisRecords)
    this.userRecordsPerRequest.add(userRecords)
  }

  /** A PutRecords request failed as a whole with `code`. */
  requestFailed(code: string): void {
    this.requestErrors.ones(1)
    this.requestErrorCodes.add(code)
  }

  /** Records what was summed up since the last flush into the collector. */
  flush(received: number, pending: number | undefined): void {
    if (received > 0) this.userRecordsReceived.ones(received)
    if (pending !== undefined) this.userRecordsPending.add(pending)
    // Every shard, touched or not: a few comparisons each, every 200 ms.
    for (const acc of this.shards.values()) acc.flush()
    const t = this.streamTargets
    flushStat(t.received, this.userRecordsReceived)
    flushStat(t.pending, this.userRecordsPending)
    flushStat(t.requestTime, this.requestTime)
    flushStat(t.kinesisRecordsPerRequest, this.kinesisRecordsPerRequest)
    flushStat(t.userRecordsPerRequest, this.userRecordsPerRequest)
    flushStat(t.allErrors, this.requestErrors)
    this.requestErrorCodes.flush()
  }
}
