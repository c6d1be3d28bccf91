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

/**
 * Values being summed up between flushes. It is a `StatisticSet` with plain data fields, so it is
 * recorded as it is (one shape for every set the collector reads).
 */
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

  /**
   * Values that are each 0 or 1 (the KPL's success and error counts) cost two additions: their
   * minimum and maximum follow from the counts (see `seal`).
   */
  ones(count: number): void {
    this.sampleCount += count
    this.sum += count
  }

  zeros(count: number): void {
    this.sampleCount += count
  }

  /** Sets minimum and maximum of a set of zeros and ones. */
  seal(): void {
    this.minimum = this.sum < this.sampleCount ? 0 : 1
    this.maximum = this.sum > 0 ? 1 : 0
  }

  merge(other: Stat): void {
    if (other.sampleCount === 0) return
    this.sampleCount += other.sampleCount
    this.sum += other.sum
    if (other.minimum < this.minimum) this.minimum = other.minimum
    if (other.maximum > this.maximum) this.maximum = other.maximum
  }

  reset(): void {
    this.sampleCount = 0
    this.sum = 0
    this.minimum = Number.POSITIVE_INFINITY
    this.maximum = Number.NEGATIVE_INFINITY
  }
}

type Granularity = ProducerSettings.Resolved["metrics"]["granularity"]

/** The metrics the KPL keeps per shard, in the order of `ShardAcc.stats`. */
const shardMetrics = [
  "UserRecordsPut",
  "UserRecordsDataPut",
  "KinesisRecordsPut",
  "KinesisRecordsDataPut",
  "AllErrors",
  "RetriesPerRecord",
  "UserRecordExpired",
  "BufferingTime",
  "UserRecordsPerKinesisRecord"
] as const satisfies ReadonlyArray<MetricName>

/** Which of those count zeros and ones (see `Stat.ones`). */
const zeroOne = new Set<MetricName>(["UserRecordsPut", "KinesisRecordsPut", "AllErrors", "UserRecordExpired"])

/**
 * What the metrics of one shard sum up between flushes. The engine keeps one on each shard's
 * state, so recording is a few additions with no lookup.
 */
export class ShardAcc {
  readonly userRecordsPut = new Stat()
  readonly userRecordsDataPut = new Stat()
  readonly kinesisRecordsPut = new Stat()
  readonly kinesisRecordsDataPut = new Stat()
  readonly allErrors = new Stat()
  readonly retriesPerRecord = new Stat()
  readonly userRecordExpired = new Stat()
  readonly bufferingTime = new Stat()
  readonly userRecordsPerKinesisRecord = new Stat()
  /** The same sets, in the order of `shardMetrics`. */
  readonly stats: ReadonlyArray<Stat> = [
    this.userRecordsPut,
    this.userRecordsDataPut,
    this.kinesisRecordsPut,
    this.kinesisRecordsDataPut,
    this.allErrors,
    this.retriesPerRecord,
    this.userRecordExpired,
    this.bufferingTime,
    this.userRecordsPerKinesisRecord
  ]
  /** Errors by code, when some Kinesis record of this shard failed. */
  errors: Map<string, Stat> | undefined = undefined
  /** This shard's series, taken the first time it has something to record (`null`: none kept). */
  readonly series: Array<MetricsCollector.Series | null | undefined> = []
  readonly errorSeries = new Map<string, MetricsCollector.Series | null>()
  readonly shardId: string

  constructor(shardId: string) {
    this.shardId = shardId
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
    this.allErrors.ones(1)
    this.userRecordsPerKinesisRecord.add(userRecords)
    const errors = this.errors ??= new Map()
    let stat = errors.get(code)
    if (stat === undefined) errors.set(code, stat = new Stat())
    stat.ones(1)
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
}

/** The stream name of a stream name or ARN (`arn:aws:kinesis:…:stream/<name>`), as the KPL reports it. */
export const streamName = (stream: string): string => {
  if (!stream.startsWith("arn:")) return stream
  const i = stream.indexOf(":stream/")
  return i >= 0 ? stream.slice(i + ":stream/".length) : stream
}

/** A metric's root and stream series (the latter `null` at global granularity). */
interface Upper {
  readonly root: MetricsCollector.Series
  readonly stream: MetricsCollector.Series | null
}

/**
 * A producer's KPL metrics: the shards' accumulators and the per-stream ones, flushed into the
 * collector's series by {@link KplMetrics.flush} (every second and at close), so the data path
 * only adds numbers. Each value goes to every node of the KPL's metric tree down to the configured
 * granularity: no dimensions, `StreamName`, `StreamName` + `ShardId` (for `ErrorsByCode` each
 * below `ErrorCode`, the root being all codes together). A flush sums the shards up first, so the
 * upper nodes take one set per metric, and series are taken the first time they have something to
 * record.
 */
export class KplMetrics {
  private readonly collector: MetricsCollector.MetricsCollector["Service"]
  private readonly namespace: string
  private readonly level: MetricsCollector.MetricsLevel
  private readonly granularity: Granularity
  private readonly stream: string
  private readonly shards = new Map<string, ShardAcc>()
  /** Accumulators of shards no longer open, flushed once more. */
  private retired: Array<ShardAcc> = []

  readonly userRecordsReceived = new Stat()
  readonly userRecordsPending = new Stat()
  readonly requestTime = new Stat()
  readonly kinesisRecordsPerRequest = new Stat()
  readonly userRecordsPerRequest = new Stat()
  /** Whole requests that failed, which the KPL counts per stream (no shard to charge). */
  readonly requestErrors = new Stat()
  readonly requestErrorCodes = new Map<string, Stat>()

  // Sums over the shards, made by `flush`.
  private readonly totals = shardMetrics.map(() => new Stat())
  private readonly errorTotals = new Map<string, Stat>()
  private readonly allErrorCodes = new Stat()
  private readonly upper = new Map<string, Upper | null>()

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

  /** The root and stream nodes of a metric (`errorCode`: of `ErrorsByCode` for that code). */
  private upperOf(name: MetricName, errorCode?: string): Upper | null {
    const key = errorCode === undefined ? name : `${name}\u0000${errorCode}`
    let upper = this.upper.get(key)
    if (upper === undefined) {
      if (!this.enabled(name)) upper = null
      else {
        const base = errorCode === undefined ? [] : [{ name: "ErrorCode", value: errorCode }]
        upper = {
          root: this.series(name, base),
          stream: this.granularity === "global"
            ? null
            : this.series(name, [...base, { name: "StreamName", value: this.stream }])
        }
      }
      this.upper.set(key, upper)
    }
    return upper
  }

  private shardSeries(name: MetricName, shardId: string, errorCode?: string): MetricsCollector.Series | null {
    if (this.granularity !== "shard" || !this.enabled(name)) return null
    const base = errorCode === undefined ? [] : [{ name: "ErrorCode", value: errorCode }]
    return this.series(name, [...base, { name: "StreamName", value: this.stream }, { name: "ShardId", value: shardId }])
  }

  private recordUpper(name: MetricName, stat: Stat, errorCode?: string): void {
    if (stat.sampleCount === 0) return
    const upper = this.upperOf(name, errorCode)
    if (upper !== null) {
      upper.root.recordStatistics(stat)
      upper.stream?.recordStatistics(stat)
    }
    stat.reset()
  }

  /** The accumulator of a shard, made on first use. */
  shard(shardId: string): ShardAcc {
    let acc = this.shards.get(shardId)
    if (acc === undefined) {
      acc = new ShardAcc(shardId)
      this.shards.set(shardId, acc)
    }
    return acc
  }

  /** Forgets the accumulators of shards no longer open (after one more flush). */
  retainShards(open: ReadonlySet<string>): void {
    for (const [id, acc] of this.shards) {
      if (open.has(id)) continue
      this.retired.push(acc)
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
    let stat = this.requestErrorCodes.get(code)
    if (stat === undefined) this.requestErrorCodes.set(code, stat = new Stat())
    stat.ones(1)
  }

  private flushShard(acc: ShardAcc): void {
    const stats = acc.stats
    for (let i = 0; i < stats.length; i++) {
      const stat = stats[i]!
      if (stat.sampleCount === 0) continue
      const name = shardMetrics[i]!
      if (zeroOne.has(name)) stat.seal()
      let series = acc.series[i]
      if (series === undefined) series = acc.series[i] = this.shardSeries(name, acc.shardId)
      series?.recordStatistics(stat)
      this.totals[i]!.merge(stat)
      stat.reset()
    }
    const errors = acc.errors
    if (errors === undefined) return
    for (const [code, stat] of errors) {
      if (stat.sampleCount === 0) continue
      stat.seal()
      let series = acc.errorSeries.get(code)
      if (series === undefined) acc.errorSeries.set(code, series = this.shardSeries("ErrorsByCode", acc.shardId, code))
      series?.recordStatistics(stat)
      this.addError(code, stat)
      stat.reset()
    }
  }

  private addError(code: string, stat: Stat): void {
    let total = this.errorTotals.get(code)
    if (total === undefined) this.errorTotals.set(code, total = new Stat())
    total.merge(stat)
    this.allErrorCodes.merge(stat)
  }

  /** Records what was summed up since the last flush into the collector. */
  flush(received: number, pending: number | undefined): void {
    if (received > 0) this.userRecordsReceived.ones(received)
    if (pending !== undefined) this.userRecordsPending.add(pending)
    for (const acc of this.shards.values()) this.flushShard(acc)
    if (this.retired.length > 0) {
      for (const acc of this.retired) this.flushShard(acc)
      this.retired = []
    }
    // Whole requests that failed count in the stream's errors (the KPL charges them to no shard).
    for (const [code, stat] of this.requestErrorCodes) {
      if (stat.sampleCount === 0) continue
      this.addError(code, stat)
      stat.reset()
    }
    if (this.requestErrors.sampleCount > 0) {
      this.totals[shardMetrics.indexOf("AllErrors")]!.merge(this.requestErrors)
      this.requestErrors.reset()
    }
    for (let i = 0; i < shardMetrics.length; i++) {
      const total = this.totals[i]!
      if (zeroOne.has(shardMetrics[i]!) && total.sampleCount > 0) total.seal()
      this.recordUpper(shardMetrics[i]!, total)
    }
    for (const [code, total] of this.errorTotals) {
      if (total.sampleCount === 0) continue
      total.seal()
      this.recordUpper("ErrorsByCode", total, code)
    }
    if (this.allErrorCodes.sampleCount > 0) {
      this.allErrorCodes.seal()
      this.recordUpper("ErrorsByCode", this.allErrorCodes)
    }
    this.userRecordsReceived.seal()
    this.recordUpper("UserRecordsReceived", this.userRecordsReceived)
    this.recordUpper("UserRecordsPending", this.userRecordsPending)
    this.recordUpper("RequestTime", this.requestTime)
    this.recordUpper("KinesisRecordsPerPutRecordsRequest", this.kinesisRecordsPerRequest)
    this.recordUpper("UserRecordsPerPutRecordsRequest", this.userRecordsPerRequest)
  }
}
