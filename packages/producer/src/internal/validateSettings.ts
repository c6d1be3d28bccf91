import { InvalidSetting } from "@effect-kinesis/core"
import { Duration } from "effect"
import { defaults, type ProducerSettings } from "../ProducerSettings.ts"

const { checkDuration, checkInteger, checkNumber } = InvalidSetting

const oneOf = (setting: string, value: string | undefined, allowed: ReadonlyArray<string>) =>
  value === undefined || allowed.includes(value)
    ? undefined
    : new InvalidSetting.InvalidSetting({ setting, value, reason: `must be one of ${allowed.join(", ")}` })

/**
 * The first setting of `settings` that cannot work, checked field by field as given (defaults are
 * valid), before `ProducerSettings.resolve`, whose own cross-field checks `fromResolveError`
 * turns into the same error.
 *
 * @internal
 */
export const validate = (settings: Partial<ProducerSettings> = {}): InvalidSetting.InvalidSetting | undefined => {
  const s = settings
  const invalid = InvalidSetting.first([
    checkInteger("settings.bufferSize", s.bufferSize, { min: 1 }),
    checkInteger("settings.bufferBytes", s.bufferBytes, { min: 1 }),
    oneOf("settings.whenBufferFull", s.whenBufferFull, ["suspend", "fail"]),
    checkInteger("settings.maxRecordBytes", s.maxRecordBytes, { min: 1 }),
    checkInteger("settings.maxRequestBytes", s.maxRequestBytes, { min: 1 }),
    checkInteger("settings.maxRecordsPerRequest", s.maxRecordsPerRequest, { min: 1, max: 500 }),
    checkDuration("settings.lingerTime", s.lingerTime, { zero: true }),
    checkInteger("settings.maxInFlightRequests", s.maxInFlightRequests, { min: 1 }),
    checkInteger("settings.maxAggregateBytes", s.maxAggregateBytes, { min: 1 }),
    checkInteger("settings.shardBytesPerSecond", s.shardBytesPerSecond, { min: 1 }),
    checkInteger("settings.shardRecordsPerSecond", s.shardRecordsPerSecond, { min: 1 }),
    checkDuration("settings.shardBurst", s.shardBurst),
    checkDuration("settings.recordTtl", s.recordTtl, { infinite: true }),
    checkInteger("settings.maxAttempts", s.maxAttempts, { min: 1 }),
    checkDuration("settings.retryBaseDelay", s.retryBaseDelay),
    checkDuration("settings.retryMaxDelay", s.retryMaxDelay),
    checkDuration("settings.requestTimeout", s.requestTimeout, { infinite: true }),
    checkDuration("settings.shardRefreshInterval", s.shardRefreshInterval),
    checkDuration("settings.closeTimeout", s.closeTimeout, { zero: true, infinite: true }),
    checkDuration("settings.metricsInterval", s.metricsInterval),
    oneOf("settings.metrics.level", s.metrics?.level, ["none", "summary", "detailed"]),
    oneOf("settings.metrics.granularity", s.metrics?.granularity, ["global", "stream", "shard"]),
    s.metrics?.namespace === ""
      ? new InvalidSetting.InvalidSetting({
        setting: "settings.metrics.namespace",
        value: "",
        reason: "must not be empty"
      })
      : undefined,
    checkNumber("settings.tracing.recordSpansPerSecond", s.tracing?.recordSpansPerSecond, { min: 0 }),
    checkDuration("settings.logging.failureSummaryInterval", s.logging?.failureSummaryInterval),
    // A share of 0 would split every shard with any throttling; 1 never.
    s.autoSplit?.throttledShare !== undefined &&
      !(s.autoSplit.throttledShare > 0 && s.autoSplit.throttledShare < 1)
      ? new InvalidSetting.InvalidSetting({
        setting: "settings.autoSplit.throttledShare",
        value: s.autoSplit.throttledShare,
        reason: "must be in (0, 1)"
      })
      : undefined,
    checkDuration("settings.autoSplit.window", s.autoSplit?.window),
    checkInteger("settings.autoSplit.minRecords", s.autoSplit?.minRecords, { min: 1 }),
    checkDuration("settings.autoSplit.cooldown", s.autoSplit?.cooldown, { zero: true }),
    checkInteger("settings.autoSplit.maxShardCount", s.autoSplit?.maxShardCount, { min: 1 }),
    checkDuration("settings.autoSplit.checkInterval", s.autoSplit?.checkInterval)
  ])
  if (invalid !== undefined) return invalid
  if (s.retryBaseDelay !== undefined || s.retryMaxDelay !== undefined) {
    const base = Duration.fromInputUnsafe(s.retryBaseDelay ?? defaults.retryBaseDelay)
    const max = s.retryMaxDelay ?? defaults.retryMaxDelay
    if (Duration.isGreaterThan(base, Duration.fromInputUnsafe(max))) {
      return new InvalidSetting.InvalidSetting({
        setting: "settings.retryMaxDelay",
        value: max,
        reason: `must be at least settings.retryBaseDelay (${Duration.format(base)})`
      })
    }
  }
  return undefined
}

/**
 * `ProducerSettings.resolve` throws a `RangeError` for the rules between settings it checks itself
 * ("ProducerSettings.bufferBytes must be at least maxRecordBytes…"): the same as a typed error.
 *
 * @internal
 */
export const fromResolveError = (error: unknown): InvalidSetting.InvalidSetting => {
  const message = error instanceof Error ? error.message : String(error)
  const match = /^ProducerSettings\.(\S+) (.*?)(?:, got (.*))?$/.exec(message)
  return match === null
    ? new InvalidSetting.InvalidSetting({ setting: "settings", value: undefined, reason: message })
    : new InvalidSetting.InvalidSetting({ setting: `settings.${match[1]}`, value: match[3], reason: match[2]! })
}
