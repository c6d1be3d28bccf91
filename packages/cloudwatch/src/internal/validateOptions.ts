import { InvalidSetting } from "@effect-kinesis/core"
import type { Options } from "../CloudWatchMetrics.ts"

const { checkDuration, checkInteger } = InvalidSetting

/**
 * The publishers' options checked before anything starts: a setting that cannot work fails with
 * `InvalidSetting` rather than being clamped.
 *
 * @internal
 */
export const interval = (value: Options["interval"]) => checkDuration("interval", value)

/** @internal */
export const validate = (options: Options) =>
  InvalidSetting.first([
    interval(options.interval),
    checkInteger("maxBufferedIntervals", options.maxBufferedIntervals, { min: 1 }),
    checkDuration("requestTimeout", options.requestTimeout),
    checkInteger("maxRetries", options.maxRetries, { min: 0 }),
    checkInteger("concurrency", options.concurrency, { min: 1 }),
    checkDuration("closeTimeout", options.closeTimeout, { zero: true })
  ])
