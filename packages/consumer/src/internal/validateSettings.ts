/**
 * The consumer's settings checked where they are resolved: a setting that cannot work fails the
 * consumer at start with `InvalidSetting` (its path in the options, and why), before any lease is
 * taken. Unset settings take their defaults, which pass.
 */
import { InvalidSetting } from "@effect-kinesis/core"
import { Duration } from "effect"
import type * as BatchProcessing from "../BatchProcessing.ts"
import type * as Consumer from "../Consumer.ts"
import type * as ErrorHandling from "../ErrorHandling.ts"

type Invalid = InvalidSetting.InvalidSetting | undefined

const { checkDuration, checkInteger, checkNumber } = InvalidSetting

const invalid = (setting: string, value: unknown, reason: string): InvalidSetting.InvalidSetting =>
  new InvalidSetting.InvalidSetting({ setting, value, reason })

const nonEmpty = (setting: string, value: string | undefined): Invalid =>
  value === undefined || (typeof value === "string" && value.length > 0)
    ? undefined
    : invalid(setting, value, "must be a non-empty string")

const oneOf = (setting: string, value: string | undefined, allowed: ReadonlyArray<string>): Invalid =>
  value === undefined || allowed.includes(value)
    ? undefined
    : invalid(setting, value, `must be one of ${allowed.join(", ")}`)

/** The default lease timing, for the rule between `renewInterval` and `expiry`. */
const DEFAULT_EXPIRY = "10 seconds"
const DEFAULT_RENEW_INTERVAL = "3 seconds"

const lease = (settings: Consumer.LeaseSettings | undefined): Invalid => {
  if (settings === undefined) return undefined
  const fields = InvalidSetting.first([
    checkDuration("lease.expiry", settings.expiry),
    checkDuration("lease.renewInterval", settings.renewInterval),
    checkDuration("lease.takeInterval", settings.takeInterval),
    checkDuration("lease.scanInterval", settings.scanInterval),
    checkDuration("lease.shardSyncInterval", settings.shardSyncInterval)
  ])
  if (fields !== undefined) return fields
  const coordination = oneOf("lease.coordination", settings.coordination, ["workers", "leader"])
  if (coordination !== undefined) return coordination
  // A lease renewed no more often than it expires is lost between two renewals.
  const expiry = Duration.fromInputUnsafe(settings.expiry ?? DEFAULT_EXPIRY)
  const renewInterval = settings.renewInterval ?? DEFAULT_RENEW_INTERVAL
  return Duration.isGreaterThanOrEqualTo(Duration.fromInputUnsafe(renewInterval), expiry)
    ? invalid("lease.renewInterval", renewInterval, `must be shorter than lease.expiry (${Duration.format(expiry)})`)
    : undefined
}

const fetch = (settings: Consumer.FetchSettings | undefined): Invalid =>
  settings === undefined ? undefined : InvalidSetting.first([
    // GetRecords' own bounds.
    checkInteger("fetch.batchSize", settings.batchSize, { min: 1, max: 10_000 }),
    checkDuration("fetch.pollInterval", settings.pollInterval, { zero: true }),
    checkNumber("fetch.maxCallsPerSecond", settings.maxCallsPerSecond, { above: 0 }),
    checkInteger("fetch.bufferedBatches", settings.bufferedBatches, { min: 1 })
  ])

const enhancedFanOut = (settings: Consumer.ShardedStreamOptions<any>["enhancedFanOut"]): Invalid =>
  settings === undefined || typeof settings === "boolean" ? undefined : InvalidSetting.first([
    nonEmpty("enhancedFanOut.consumerName", settings.consumerName),
    checkDuration("enhancedFanOut.stallTimeout", settings.stallTimeout),
    checkNumber("enhancedFanOut.maxSubscribesPerSecond", settings.maxSubscribesPerSecond, { above: 0 }),
    checkDuration("enhancedFanOut.resourceInUseDelay", settings.resourceInUseDelay, { zero: true }),
    checkDuration("enhancedFanOut.shardEndCheckInterval", settings.shardEndCheckInterval),
    checkInteger("enhancedFanOut.bufferedBatches", settings.bufferedBatches, { min: 1 }),
    checkDuration("enhancedFanOut.registrationPollInterval", settings.registrationPollInterval)
  ])

const metrics = (settings: Consumer.MetricsSettings | undefined): Invalid => {
  if (settings === undefined) return undefined
  const wrongDimension = settings.dimensions?.find((d) => d !== "ShardId" && d !== "WorkerIdentifier")
  return InvalidSetting.first([
    oneOf("metrics.level", settings.level, ["none", "summary", "detailed"]),
    nonEmpty("metrics.namespace", settings.namespace),
    wrongDimension === undefined
      ? undefined
      : invalid("metrics.dimensions", wrongDimension, "must contain only ShardId and WorkerIdentifier")
  ])
}

/**
 * The options of `shardedStream` (and so of every consumer).
 *
 * @internal
 */
export const shardedStream = (options: Consumer.ShardedStreamOptions<any>): Invalid =>
  InvalidSetting.first([
    nonEmpty("applicationName", options.applicationName ?? ""),
    nonEmpty("workerId", options.workerId),
    options.initialPosition === undefined || options.initialPosition === "TRIM_HORIZON" ||
      options.initialPosition === "LATEST" ||
      (typeof options.initialPosition === "object" && options.initialPosition.atTimestamp instanceof Date &&
        !Number.isNaN(options.initialPosition.atTimestamp.getTime()))
      ? undefined
      : invalid("initialPosition", options.initialPosition, "must be TRIM_HORIZON, LATEST or a valid atTimestamp date"),
    fetch(options.fetch),
    enhancedFanOut(options.enhancedFanOut),
    lease(options.lease),
    metrics(options.metrics),
    options.lease?.coordination === "leader" && options.shardAssignment?._tag === "Manual"
      ? invalid(
        "lease.coordination",
        "leader",
        "must be \"workers\" with a manual shardAssignment (the leader assigns by balance)"
      )
      : undefined,
    options.shardAssignment?._tag === "Balanced"
      ? checkInteger("shardAssignment.maxStealsPerRound", options.shardAssignment.maxStealsPerRound, { min: 0 })
      : undefined,
    options.shardAssignment?._tag === "Balanced" && options.shardAssignment.throughput !== undefined
      ? InvalidSetting.first([
        checkNumber("shardAssignment.tolerance", options.shardAssignment.throughput.tolerance, { above: 0, max: 1 }),
        checkDuration("shardAssignment.minMoveInterval", options.shardAssignment.throughput.minMoveInterval, {
          zero: true
        })
      ])
      : undefined,
    oneOf(
      "onDecodeFailure",
      typeof options.onDecodeFailure === "function" ? undefined : options.onDecodeFailure,
      ["skip", "fail"]
    ),
    checkDuration("shutdownGracePeriod", options.shutdownGracePeriod, { zero: true, infinite: true })
  ])

/**
 * Leader coordination on a store without the leader lock or the owner's key listing (a store of
 * your own, or the multi-stream one, which shares no lock between its streams yet).
 *
 * @internal
 */
export const leaderModeUnsupported: InvalidSetting.InvalidSetting = invalid(
  "lease.coordination",
  "leader",
  "needs a LeaseRepository with leaderLock and listOwnedKeys (the in-memory and DynamoDB ones; not MultiStream yet)"
)

/**
 * The arguments of `checkpointBatched`, under the names the caller gave them.
 *
 * @internal
 */
export const checkpointBatching = (
  records: { readonly setting: string; readonly value: number | undefined },
  interval: { readonly setting: string; readonly value: Duration.Input | undefined }
): Invalid =>
  InvalidSetting.first([
    checkInteger(records.setting, records.value, { min: 1 }),
    checkDuration(interval.setting, interval.value)
  ])

// A count of retries: a non-negative integer, or `Infinity` for no limit.
const retries = (setting: string, value: number | undefined): Invalid =>
  value === Infinity ? undefined : checkInteger(setting, value, { min: 0 })

const mode = (setting: string, value: ErrorHandling.Mode): Invalid => retries(`${setting}.retries`, value.retries)

// `prefix.name`, or `name` for the options of a combinator called directly.
const path = (prefix: string | undefined, name: string) => prefix === undefined ? name : `${prefix}.${name}`

/**
 * `ErrorHandling.Options` (the mode only when it is a value, not a function of the record).
 *
 * @internal
 */
export const errorHandling = (
  setting: string | undefined,
  options: ErrorHandling.Options<any, any, any> | undefined
): Invalid =>
  options === undefined ? undefined : InvalidSetting.first([
    typeof options.mode === "function" ? undefined : mode(path(setting, "mode"), options.mode),
    checkDuration(path(setting, "maxRecordAge"), options.maxRecordAge)
  ])

interface Checkpointing {
  readonly checkpoint?: Consumer.CheckpointSettings | undefined
  readonly checkpointBatchSize?: number | undefined
  readonly checkpointInterval?: Duration.Input | undefined
}

// Each setting under the name the caller gave it: `checkpoint.records`, or its deprecated former name.
const checkpointSettings = (options: Checkpointing) =>
  checkpointBatching(
    options.checkpoint?.records !== undefined
      ? { setting: "checkpoint.records", value: options.checkpoint.records }
      : { setting: "checkpointBatchSize", value: options.checkpointBatchSize },
    options.checkpoint?.interval !== undefined
      ? { setting: "checkpoint.interval", value: options.checkpoint.interval }
      : { setting: "checkpointInterval", value: options.checkpointInterval }
  )

/**
 * The arguments of `checkpointBatched` from `checkpoint` (or the deprecated `checkpointBatchSize`
 * and `checkpointInterval`), with their defaults.
 *
 * @internal
 */
export const checkpointBatched = (
  options: Checkpointing
): { readonly records: number; readonly interval: Duration.Input } => ({
  records: options.checkpoint?.records ?? options.checkpointBatchSize ?? 1000,
  interval: options.checkpoint?.interval ?? options.checkpointInterval ?? "5 seconds"
})

/**
 * The options of `consumeWith` besides those of `shardedStream`.
 *
 * @internal
 */
export const consumeWith = (options: Consumer.ConsumeWithOptions<any, any, any>): Invalid =>
  InvalidSetting.first([
    checkpointSettings(options),
    checkInteger("parallelism", options.parallelism, { min: 1 }),
    errorHandling("errorHandling", options.errorHandling)
  ])

/**
 * `Parallel.Options`: `window` at least `parallelism`.
 *
 * @internal
 */
export const parallel = (parallelism: number, window: number | undefined): Invalid =>
  InvalidSetting.first([
    checkInteger("parallelism", parallelism, { min: 1 }),
    window !== undefined && Number.isSafeInteger(window) && window < parallelism
      ? invalid("window", window, `must be at least parallelism (${parallelism})`)
      : checkInteger("window", window, { min: 1 })
  ])

/**
 * `BatchProcessing.Options`.
 *
 * @internal
 */
export const batchProcessing = (options: BatchProcessing.Options<any, any, any>): Invalid =>
  InvalidSetting.first([
    // Lambda's own bound for Kinesis.
    checkInteger("batchSize", options.batchSize, { min: 1, max: 10_000 }),
    checkDuration("batchWindow", options.batchWindow, { zero: true }),
    retries("maxRetryAttempts", options.maxRetryAttempts),
    checkDuration("maxRecordAge", options.maxRecordAge)
  ])

/**
 * The options of `consumeBatchesWith` besides those of `shardedStream`.
 *
 * @internal
 */
export const consumeBatchesWith = (options: BatchProcessing.ConsumeBatchesOptions<any, any, any>): Invalid =>
  InvalidSetting.first([
    checkpointSettings(options),
    batchProcessing(options)
  ])
