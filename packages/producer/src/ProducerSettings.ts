/**
 * How a producer batches, paces, retries and closes. Plain data with defaults that are right
 * for production; override only what you need.
 *
 * @since 0.1.0
 */
import type { MetricsCollector } from "@effect-kinesis/core"
import { Duration } from "effect"
import * as AutoSplit from "./AutoSplit.ts"

/**
 * The KPL-named metrics a producer records into the `MetricsCollector` in its context (see
 * `MetricsCollector` in `@effect-kinesis/core`; nothing is recorded without one). As the KPL's
 * `MetricsLevel`, `MetricsGranularity` and `MetricsNamespace`.
 *
 * @example
 * ```ts
 * import type { ProducerSettings } from "@effect-kinesis/producer"
 *
 * const metrics: ProducerSettings.MetricsSettings = { level: "summary", granularity: "stream" }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface MetricsSettings {
  /**
   * `"none"`, `"summary"` (UserRecordsPut, KinesisRecordsPut, ErrorsByCode, AllErrors,
   * UserRecordExpired, BufferingTime) or `"detailed"` (all). Default `"detailed"`, as the KPL.
   */
  readonly level?: MetricsCollector.MetricsLevel | undefined
  /**
   * Each metric is recorded without dimensions (`"global"`), and also per `StreamName`
   * (`"stream"`), and also per `StreamName` and `ShardId` (`"shard"`) for the metrics the KPL
   * keeps per shard. Default `"shard"`, as the KPL.
   */
  readonly granularity?: "global" | "stream" | "shard" | undefined
  /** The CloudWatch namespace. Default `"KinesisProducerLibrary"`, the KPL's. */
  readonly namespace?: string | undefined
}

/**
 * The producer's spans, recorded when a tracer other than Effect's built-in one is in the context
 * at creation (an OpenTelemetry layer, for example); without one, tracing costs nothing.
 *
 * @example
 * ```ts
 * import type { ProducerSettings } from "@effect-kinesis/producer"
 *
 * const tracing: ProducerSettings.TracingSettings = { recordSpansPerSecond: 10 }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface TracingSettings {
  /** A span per PutRecords request, `kinesis.producer.PutRecords`. Default `true`. */
  readonly requestSpans?: boolean | undefined
  /**
   * At most this many records per second get a span of their own, `kinesis.producer.record`,
   * from the offer to the acknowledgement (or failure). Only records offered inside a sampled
   * span are candidates, so a record span always belongs to a trace the application asked for;
   * the cap keeps a batch job offering millions of records inside one span from flooding the
   * tracer. `0` turns record spans off. Default 100.
   */
  readonly recordSpansPerSecond?: number | undefined
}

/**
 * How the producer logs (through Effect's logger, so the application decides where lines go and
 * which levels pass).
 *
 * @example
 * ```ts
 * import type { ProducerSettings } from "@effect-kinesis/producer"
 *
 * const logging: ProducerSettings.LoggingSettings = { failureSummaryInterval: "1 minute" }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface LoggingSettings {
  /**
   * Records that failed for good are logged at error level, one line per shard and error code:
   * the first at once, those that follow within this interval as one line with their count at
   * its end. Default 10 s.
   */
  readonly failureSummaryInterval?: Duration.Input | undefined
}

/**
 * Producer settings. Every field has a default (see {@link defaults}).
 *
 * @example
 * ```ts
 * import type { ProducerSettings } from "@effect-kinesis/producer"
 *
 * const settings: Partial<ProducerSettings.ProducerSettings> = {
 *   aggregate: true,
 *   lingerTime: "50 millis",
 *   whenBufferFull: "fail"
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ProducerSettings {
  /**
   * User records accepted but not yet acknowledged, at most. Default 65,536. A request carries
   * at most a quarter of them (only aggregating requests come near that), so that several are in
   * flight while the next fills.
   */
  readonly bufferSize: number
  /**
   * Bytes (data plus partition keys) of those records, at most; at least `maxRecordBytes` when
   * that is set (otherwise it caps the largest record too). Default 64 MiB, so that large records
   * cannot make the record count a memory hazard.
   */
  readonly bufferBytes: number
  /**
   * What an offer does when the buffer is full: `"suspend"` the caller until there is room
   * (default, backpressure), or `"fail"` at once with `BufferFull`.
   */
  readonly whenBufferFull: "suspend" | "fail"
  /**
   * Largest record (data + partition key bytes) the producer accepts, at most 10 MiB. The stream's
   * own maximum (`MaxRecordSizeInKiB`, read once at start; 1 MiB unless raised with
   * `AdminClient.updateMaxRecordSize`) applies below it. Default 10 MiB, so the stream decides. A
   * record larger than `maxRequestBytes` is sent alone in its request, never aggregated.
   */
  readonly maxRecordBytes: number
  /** Largest PutRecords request (data + partition keys). Default 5 MiB. */
  readonly maxRequestBytes: number
  /** Most records in one PutRecords request. Default 500, the Kinesis limit. */
  readonly maxRecordsPerRequest: number
  /**
   * How long a record may wait to fill a batch (KPL `RecordMaxBufferedTime`). Default 0:
   * send as soon as a request slot is free; under load batches fill while requests are in
   * flight. Independently of this, while some shard's records wait for its rate limit, a
   * partial request is held up to 20 ms to fill, rather than sending a request per trickle.
   */
  readonly lingerTime: Duration.Input
  /** PutRecords requests in flight at once. Default 16. */
  readonly maxInFlightRequests: number
  /**
   * `"byPartitionKey"` (default): the records of one partition key are stored in the order they
   * were offered, through parallel requests, throttling, errors and retries. A key never has two
   * Kinesis records in flight at once: its next record waits for the answer to the previous one,
   * or travels in the same aggregate, and a record sent again goes before the key's later
   * records; other keys keep flowing meanwhile. Without aggregation that is one record per key
   * per round trip, so keys with many records per second want `aggregate: true`. A record that
   * fails for good is reported with its error, and the key's later records follow it.
   * `"unordered"` drops the rule, for the most throughput from a few hot keys without
   * aggregation: a record refused or retried can then land after later records of its key.
   */
  readonly ordering: "byPartitionKey" | "unordered"
  /**
   * Pack user records bound for one shard into KPL aggregated records (readable by the KCL and
   * by this library's consumer). Default `false`. With per-key order, a shard's next aggregate
   * goes when the one it has out is answered, unless a whole aggregate's worth (`maxAggregateBytes`)
   * is queued: records wait at most one round trip more, and ride in fuller aggregates.
   */
  readonly aggregate: boolean
  /** Largest aggregated record. Default 51,200 bytes, as the KPL. */
  readonly maxAggregateBytes: number
  /**
   * Pace writes per predicted shard with token buckets that back off on throttling, and hold
   * every shard to `shardBytesPerSecond` and `shardRecordsPerSecond` within any one second (by
   * the time requests leave; a record larger than a second's bytes goes alone in its second).
   * The limits are this producer's, per shard of its shard map: producers writing to one stream
   * share nothing, and until the map is refreshed after resharding, the shards predicted differ
   * from Kinesis's. Requests can reach Kinesis closer together than they left: for headroom, set
   * the limits a few percent under Kinesis's. Default `true`.
   */
  readonly rateLimit: boolean
  /** Write limit per shard, bytes per second. Default 1 MiB. */
  readonly shardBytesPerSecond: number
  /** Write limit per shard, Kinesis records per second. Default 1000. */
  readonly shardRecordsPerSecond: number
  /**
   * Burst a shard's bucket allows, as a time at the full rate. Default 200 ms: large enough
   * for full batches, small enough not to overrun the shard after idling. The burst stays within
   * the second's limits: a shard that idled may send it at once, but no second holds more than
   * the limit.
   */
  readonly shardBurst: Duration.Input
  /** A record not written within this time fails with `RecordExpired`. Default 30 s (KPL). */
  readonly recordTtl: Duration.Input
  /** Attempts per record before it fails with `PutFailed` (`retryable: true`). Default 20. */
  readonly maxAttempts: number
  /** First retry delay; doubles per attempt, with full jitter. Default 100 ms. */
  readonly retryBaseDelay: Duration.Input
  /** Longest retry delay. Default 5 s. */
  readonly retryMaxDelay: Duration.Input
  /**
   * A PutRecords request whose answer has not started within this is abandoned and its records
   * retried; on HTTP/2 the client's pooled connections are dropped too, so that the retry opens a
   * new one. Default 10 s. Replaces the `Client`'s `requestTimeout` for PutRecords.
   */
  readonly requestTimeout: Duration.Input
  /** How often the shard map is listed again. Default 1 minute. */
  readonly shardRefreshInterval: Duration.Input
  /** How long closing waits for buffered and in-flight records. Default 30 s. */
  readonly closeTimeout: Duration.Input
  /** How often metrics are delivered to `onMetrics`. Default 30 s. */
  readonly metricsInterval: Duration.Input
  /** The KPL-named metrics recorded into a `MetricsCollector` (see {@link MetricsSettings}). */
  readonly metrics: MetricsSettings
  /** Spans (see {@link TracingSettings}). */
  readonly tracing: TracingSettings
  /** Logs (see {@link LoggingSettings}). */
  readonly logging: LoggingSettings
  /** Splitting hot shards (see `AutoSplit.AutoSplitSettings`). Off by default. */
  readonly autoSplit: AutoSplit.AutoSplitSettings
}

/**
 * The default settings.
 *
 * @example
 * ```ts
 * import { ProducerSettings } from "@effect-kinesis/producer"
 *
 * ProducerSettings.defaults.maxRecordsPerRequest // 500
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults: ProducerSettings = {
  bufferSize: 65_536,
  bufferBytes: 64 * 1_048_576,
  whenBufferFull: "suspend",
  maxRecordBytes: 10 * 1_048_576,
  maxRequestBytes: 5 * 1_048_576,
  maxRecordsPerRequest: 500,
  lingerTime: 0,
  maxInFlightRequests: 16,
  ordering: "byPartitionKey",
  aggregate: false,
  maxAggregateBytes: 51_200,
  rateLimit: true,
  shardBytesPerSecond: 1_048_576,
  shardRecordsPerSecond: 1000,
  shardBurst: "200 millis",
  recordTtl: "30 seconds",
  maxAttempts: 20,
  retryBaseDelay: "100 millis",
  retryMaxDelay: "5 seconds",
  requestTimeout: "10 seconds",
  shardRefreshInterval: "1 minute",
  closeTimeout: "30 seconds",
  metricsInterval: "30 seconds",
  metrics: { level: "detailed", granularity: "shard", namespace: "KinesisProducerLibrary" },
  tracing: { requestSpans: true, recordSpansPerSecond: 100 },
  logging: { failureSummaryInterval: "10 seconds" },
  autoSplit: { enabled: false }
}

/**
 * Settings with every duration in milliseconds, checked; what the producer runs on.
 *
 * @example
 * ```ts
 * import { ProducerSettings } from "@effect-kinesis/producer"
 *
 * const resolved: ProducerSettings.Resolved = ProducerSettings.resolve({ aggregate: true })
 * resolved.lingerMillis // 0
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Resolved {
  readonly bufferSize: number
  readonly bufferBytes: number
  readonly whenBufferFull: "suspend" | "fail"
  readonly maxRecordBytes: number
  readonly maxRequestBytes: number
  readonly maxRecordsPerRequest: number
  readonly lingerMillis: number
  readonly maxInFlightRequests: number
  readonly ordering: "byPartitionKey" | "unordered"
  readonly aggregate: boolean
  readonly maxAggregateBytes: number
  readonly rateLimit: boolean
  readonly shardBytesPerSecond: number
  readonly shardRecordsPerSecond: number
  readonly shardBurstMillis: number
  readonly recordTtlMillis: number
  readonly maxAttempts: number
  readonly retryBaseMillis: number
  readonly retryMaxMillis: number
  readonly requestTimeoutMillis: number
  readonly shardRefreshMillis: number
  readonly closeTimeoutMillis: number
  readonly metricsIntervalMillis: number
  readonly metrics: {
    readonly level: MetricsCollector.MetricsLevel
    readonly granularity: "global" | "stream" | "shard"
    readonly namespace: string
  }
  readonly tracing: { readonly requestSpans: boolean; readonly recordSpansPerSecond: number }
  readonly logging: { readonly failureSummaryMillis: number }
  readonly autoSplit: AutoSplit.Resolved
}

/** The largest record any stream accepts (`UpdateMaxRecordSize` allows up to 10240 KiB). */
const MAX_RECORD_BYTES = 10 * 1_048_576

const millis = (input: Duration.Input): number => Duration.toMillis(Duration.fromInputUnsafe(input))

const positiveInt = (name: string, value: number, max = Number.MAX_SAFE_INTEGER): number => {
  if (!Number.isSafeInteger(value) || value <= 0 || value > max) {
    throw new RangeError(`ProducerSettings.${name} must be an integer in [1, ${max}], got ${value}`)
  }
  return value
}

const oneOf = <const T extends string>(name: string, value: string, allowed: ReadonlyArray<T>): T => {
  if (!allowed.includes(value as T)) {
    throw new RangeError(`ProducerSettings.${name} must be one of ${allowed.join(", ")}, got ${value}`)
  }
  return value as T
}

const nonNegative = (name: string, value: number): number => {
  if (!(value >= 0) || !Number.isFinite(value)) {
    throw new RangeError(`ProducerSettings.${name} must be a finite number >= 0, got ${value}`)
  }
  return value
}

/** `group`'s fields over `base`'s, an `undefined` field keeping the default. */
const withDefaults = <G extends object>(
  base: G,
  group: G | undefined
): { [K in keyof G]-?: Exclude<G[K], undefined> } => {
  const merged: Record<string, unknown> = { ...(base as Record<string, unknown>) }
  if (group !== undefined) {
    for (const [key, value] of Object.entries(group)) if (value !== undefined) merged[key] = value
  }
  return merged as { [K in keyof G]-?: Exclude<G[K], undefined> }
}

/**
 * Merges `settings` over {@link defaults} and converts durations to milliseconds. Throws a
 * `RangeError` on a value Kinesis cannot accept (e.g. `maxRecordsPerRequest` above 500).
 *
 * @example
 * ```ts
 * import { ProducerSettings } from "@effect-kinesis/producer"
 *
 * ProducerSettings.resolve({ recordTtl: "1 minute" }).recordTtlMillis // 60000
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolve = (settings: Partial<ProducerSettings> = {}): Resolved => {
  const s = { ...defaults, ...settings }
  // Groups merge field by field: `{ metrics: { level: "summary" } }` keeps the other defaults.
  const metrics = withDefaults(defaults.metrics, settings.metrics)
  const tracing = withDefaults(defaults.tracing, settings.tracing)
  const logging = withDefaults(defaults.logging, settings.logging)
  const maxRequestBytes = positiveInt("maxRequestBytes", s.maxRequestBytes)
  // Kinesis' ceiling; a record larger than `maxRequestBytes` goes alone in its request.
  const maxRecordBytes = positiveInt("maxRecordBytes", s.maxRecordBytes, MAX_RECORD_BYTES)
  // A record must fit in the buffer: an explicit maximum must fit, the default is capped by it.
  const bufferBytes = positiveInt("bufferBytes", s.bufferBytes)
  if (settings.maxRecordBytes !== undefined && bufferBytes < maxRecordBytes) {
    throw new RangeError(
      `ProducerSettings.bufferBytes must be at least maxRecordBytes (${maxRecordBytes}), got ${bufferBytes}`
    )
  }
  return {
    bufferSize: positiveInt("bufferSize", s.bufferSize),
    bufferBytes,
    whenBufferFull: s.whenBufferFull,
    maxRecordBytes: Math.min(maxRecordBytes, bufferBytes),
    maxRequestBytes,
    maxRecordsPerRequest: positiveInt("maxRecordsPerRequest", s.maxRecordsPerRequest, 500),
    lingerMillis: millis(s.lingerTime),
    maxInFlightRequests: positiveInt("maxInFlightRequests", s.maxInFlightRequests),
    ordering: oneOf("ordering", s.ordering, ["byPartitionKey", "unordered"] as const),
    aggregate: s.aggregate,
    // An aggregate shares requests with other records: it must fit in one.
    maxAggregateBytes: positiveInt(
      "maxAggregateBytes",
      s.maxAggregateBytes,
      Math.min(maxRecordBytes, bufferBytes, maxRequestBytes)
    ),
    rateLimit: s.rateLimit,
    shardBytesPerSecond: positiveInt("shardBytesPerSecond", s.shardBytesPerSecond),
    shardRecordsPerSecond: positiveInt("shardRecordsPerSecond", s.shardRecordsPerSecond),
    shardBurstMillis: Math.max(1, millis(s.shardBurst)),
    recordTtlMillis: millis(s.recordTtl),
    maxAttempts: positiveInt("maxAttempts", s.maxAttempts),
    retryBaseMillis: millis(s.retryBaseDelay),
    retryMaxMillis: millis(s.retryMaxDelay),
    requestTimeoutMillis: millis(s.requestTimeout),
    shardRefreshMillis: Math.max(1, millis(s.shardRefreshInterval)),
    closeTimeoutMillis: millis(s.closeTimeout),
    metricsIntervalMillis: Math.max(1, millis(s.metricsInterval)),
    metrics: {
      level: oneOf("metrics.level", metrics.level, ["none", "summary", "detailed"] as const),
      granularity: oneOf("metrics.granularity", metrics.granularity, ["global", "stream", "shard"] as const),
      namespace: metrics.namespace
    },
    tracing: {
      requestSpans: tracing.requestSpans,
      recordSpansPerSecond: nonNegative("tracing.recordSpansPerSecond", tracing.recordSpansPerSecond)
    },
    logging: { failureSummaryMillis: Math.max(1, millis(logging.failureSummaryInterval)) },
    autoSplit: AutoSplit.resolve(s.autoSplit)
  }
}
