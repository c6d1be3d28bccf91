/**
 * Opt-in splitting of hot shards by the producer. When one shard stays throttled (more than
 * `throttledShare` of its Kinesis records refused over the sliding `window`) while the stream is
 * provisioned and under its shard quota, the producer splits that shard with `SplitShard` at the
 * hash key that halves the traffic it observed for it (it sees every record's hash key), not at the
 * middle of the shard's range. One resharding at a time, a cooldown between them, a maximum shard
 * count; nothing for on-demand streams. Every decision is an {@link AutoSplitEvent}, passed to the
 * producer's `onDiagnostic` and counted in {@link metrics}.
 *
 * The producer's own rate limiter keeps throttling low by pacing a shard to its limit; a shard
 * it holds back is as hot as one Kinesis throttles, but only throttling counts here. Lower
 * `throttledShare` (or raise `shardRecordsPerSecond`) to split on the limiter's probing alone.
 *
 * @since 0.3.0
 */
import { Duration, Effect, Metric } from "effect"

/**
 * Auto-split settings (`ProducerSettings.autoSplit`). Off unless `enabled`.
 *
 * @example
 * ```ts
 * import type { AutoSplit } from "@effect-kinesis/producer"
 *
 * const autoSplit: AutoSplit.AutoSplitSettings = { enabled: true, maxShardCount: 32, cooldown: "10 minutes" }
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface AutoSplitSettings {
  /** Default `false`. */
  readonly enabled?: boolean | undefined
  /** A shard is hot when more than this share of its Kinesis records were throttled over `window`. Default 0.1. */
  readonly throttledShare?: number | undefined
  /** The sliding window the share is taken over. Default 1 minute. */
  readonly window?: Duration.Input | undefined
  /** Kinesis records a shard must have been sent over `window` before it can be judged. Default 500. */
  readonly minRecords?: number | undefined
  /** Least time between two splits of the stream (and after a failed one). Default 5 minutes. */
  readonly cooldown?: Duration.Input | undefined
  /** No split takes the stream's open shards above this. Default 64. */
  readonly maxShardCount?: number | undefined
  /** How often shards are judged. Default 5 s. */
  readonly checkInterval?: Duration.Input | undefined
}

/**
 * {@link AutoSplitSettings} with defaults applied and durations in milliseconds.
 *
 * @example
 * ```ts
 * import { AutoSplit } from "@effect-kinesis/producer"
 *
 * AutoSplit.resolve({ enabled: true }).windowMillis // 60000
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface Resolved {
  readonly enabled: boolean
  readonly throttledShare: number
  readonly windowMillis: number
  readonly minRecords: number
  readonly cooldownMillis: number
  readonly maxShardCount: number
  readonly checkIntervalMillis: number
}

const millis = (input: Duration.Input): number => Duration.toMillis(Duration.fromInputUnsafe(input))

/**
 * Applies the defaults; throws a `RangeError` on a value out of range.
 *
 * @example
 * ```ts
 * import { AutoSplit } from "@effect-kinesis/producer"
 *
 * AutoSplit.resolve({}).enabled // false
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const resolve = (settings: AutoSplitSettings = {}): Resolved => {
  const resolved: Resolved = {
    enabled: settings.enabled ?? false,
    throttledShare: settings.throttledShare ?? 0.1,
    windowMillis: Math.max(1, millis(settings.window ?? "1 minute")),
    minRecords: settings.minRecords ?? 500,
    cooldownMillis: millis(settings.cooldown ?? "5 minutes"),
    maxShardCount: settings.maxShardCount ?? 64,
    checkIntervalMillis: Math.max(1, millis(settings.checkInterval ?? "5 seconds"))
  }
  if (!(resolved.throttledShare > 0 && resolved.throttledShare < 1)) {
    throw new RangeError(`AutoSplit.throttledShare must be in (0, 1), got ${resolved.throttledShare}`)
  }
  if (!Number.isSafeInteger(resolved.minRecords) || resolved.minRecords < 1) {
    throw new RangeError(`AutoSplit.minRecords must be a positive integer, got ${resolved.minRecords}`)
  }
  if (!Number.isSafeInteger(resolved.maxShardCount) || resolved.maxShardCount < 1) {
    throw new RangeError(`AutoSplit.maxShardCount must be a positive integer, got ${resolved.maxShardCount}`)
  }
  return resolved
}

/**
 * Why a hot shard was not split.
 *
 * @example
 * ```ts
 * import type { AutoSplit } from "@effect-kinesis/producer"
 *
 * const reason: AutoSplit.SkipReason = "cooldown"
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export type SkipReason =
  /** The stream is on-demand: Kinesis scales it. */
  | "onDemand"
  /** The last split (or failed attempt) is more recent than `cooldown`. */
  | "cooldown"
  /** The stream has `maxShardCount` open shards. */
  | "maxShardCount"
  /** The account has no shard left under its quota (`DescribeLimits`). */
  | "shardLimit"
  /** The stream is not ACTIVE (another resharding is under way). */
  | "streamNotActive"
  /** The observed hash keys are all one key at the shard's start: no split separates them. */
  | "noSplitPoint"

/**
 * One auto-split decision.
 *
 * @example
 * ```ts
 * import type { AutoSplit } from "@effect-kinesis/producer"
 *
 * const describe = (event: AutoSplit.AutoSplitEvent) => `${event._tag} ${event.shardId}`
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export type AutoSplitEvent =
  | {
    /** A hot shard is being split at `newStartingHashKey` (the children: below it, and from it). */
    readonly _tag: "SplitStarted"
    readonly shardId: string
    readonly newStartingHashKey: bigint
    /** Share of the shard's Kinesis records throttled over the window. */
    readonly throttledShare: number
    /** Kinesis records sent to it over the window. */
    readonly records: number
  }
  | {
    /** The split is done and the stream ACTIVE; the producer routes by the new shards. */
    readonly _tag: "SplitCompleted"
    readonly shardId: string
    readonly newStartingHashKey: bigint
    readonly childShardIds: ReadonlyArray<string>
  }
  | {
    /** A hot shard was left alone. Reported once per shard and reason per window. */
    readonly _tag: "SplitSkipped"
    readonly shardId: string
    readonly reason: SkipReason
    readonly throttledShare: number
  }
  | {
    /** `SplitShard` (or the wait for ACTIVE) failed; the cooldown applies. */
    readonly _tag: "SplitFailed"
    readonly shardId: string
    readonly error: string
  }

/**
 * The Effect metric every decision is counted in: `kinesis_producer_auto_split_decisions`, with
 * attributes `stream`, `decision` (the event's tag) and `reason` (for `SplitSkipped`).
 *
 * @example
 * ```ts
 * import { Metric } from "effect"
 * import { AutoSplit } from "@effect-kinesis/producer"
 *
 * const splits = Metric.value(Metric.withAttributes(AutoSplit.metrics.decisions, { decision: "SplitCompleted" }))
 * ```
 *
 * @since 0.3.0
 * @category metrics
 */
export const metrics = {
  decisions: Metric.counter("kinesis_producer_auto_split_decisions", {
    description: "Auto-split decisions of the producer, by decision and reason",
    incremental: true
  })
}

/**
 * Counts `event` in {@link metrics} for `stream`.
 *
 * @example
 * ```ts
 * import { AutoSplit } from "@effect-kinesis/producer"
 *
 * const count = AutoSplit.recordMetrics("orders", { _tag: "SplitFailed", shardId: "shardId-000000000000", error: "x" })
 * ```
 *
 * @since 0.3.0
 * @category metrics
 */
export const recordMetrics = (stream: string, event: AutoSplitEvent): Effect.Effect<void> =>
  Metric.update(
    Metric.withAttributes(metrics.decisions, {
      stream,
      decision: event._tag,
      ...(event._tag === "SplitSkipped" ? { reason: event.reason } : {})
    }),
    1
  )
