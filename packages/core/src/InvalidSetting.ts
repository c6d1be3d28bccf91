/**
 * The typed error of a setting that cannot work (a zero batch size, a negative buffer, a renewal
 * interval not shorter than the lease expiry…), shared by every package: the producer, the
 * consumer, the lease store and the metrics publishers check their settings where they are
 * resolved and fail with an {@link InvalidSetting} naming the setting and why, before they do any
 * work, rather than dying or misbehaving later.
 *
 * The checks (`checkInteger`, `checkNumber`, `checkDuration`) are the ones the packages use, for a
 * lease store or metrics backend of your own.
 *
 * @since 0.2.0
 */
import { Data, Duration } from "effect"

/**
 * A setting has a value that cannot work: `setting` is its path in the options it was given in
 * (`"lease.renewInterval"`, `"settings.bufferSize"`), `reason` what it must be.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { InvalidSetting } from "@effect-kinesis/core"
 *
 * declare const start: Effect.Effect<void, InvalidSetting.InvalidSetting>
 * const reported = start.pipe(Effect.catchTag("InvalidSetting", (e) => Effect.logError(`fix ${e.setting}: ${e.reason}`)))
 * ```
 *
 * @since 0.2.0
 * @category errors
 */
export class InvalidSetting extends Data.TaggedError("InvalidSetting")<{
  readonly setting: string
  readonly value: unknown
  readonly reason: string
}> {
  override get message(): string {
    return `${this.setting} ${this.reason}, got ${show(this.value)}`
  }
}

const show = (value: unknown): string => {
  if (Duration.isDuration(value)) return Duration.format(value)
  if (typeof value === "string") return JSON.stringify(value)
  if (typeof value === "bigint") return `${value}n`
  return String(value)
}

/**
 * Bounds of a number, all inclusive unless named otherwise.
 *
 * @example
 * ```ts
 * import type { InvalidSetting } from "@effect-kinesis/core"
 *
 * const percent: InvalidSetting.Bounds = { min: 0, max: 100 }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Bounds {
  readonly min?: number | undefined
  readonly max?: number | undefined
  /** Exclusive lower bound (`above: 0`: positive). */
  readonly above?: number | undefined
}

const range = (bounds: Bounds): string => {
  const parts: Array<string> = []
  if (bounds.above !== undefined) parts.push(`> ${bounds.above}`)
  if (bounds.min !== undefined) parts.push(`>= ${bounds.min}`)
  if (bounds.max !== undefined) parts.push(`<= ${bounds.max}`)
  return parts.join(" and ")
}

const outside = (value: number, bounds: Bounds): boolean =>
  (bounds.min !== undefined && value < bounds.min) || (bounds.max !== undefined && value > bounds.max) ||
  (bounds.above !== undefined && value <= bounds.above)

/**
 * An unset setting (`undefined`: its default applies) passes; else it must be a safe integer
 * within `bounds`.
 *
 * @example
 * ```ts
 * import { InvalidSetting } from "@effect-kinesis/core"
 *
 * const error = InvalidSetting.checkInteger("batchSize", 0, { min: 1, max: 10_000 })
 * // error?.message: "batchSize must be an integer >= 1 and <= 10000, got 0"
 * ```
 *
 * @since 0.2.0
 * @category checks
 */
export const checkInteger = (
  setting: string,
  value: number | undefined,
  bounds: Bounds = {}
): InvalidSetting | undefined => {
  if (value === undefined) return undefined
  if (typeof value !== "number" || !Number.isSafeInteger(value) || outside(value, bounds)) {
    const within = range(bounds)
    return new InvalidSetting({ setting, value, reason: `must be an integer${within === "" ? "" : ` ${within}`}` })
  }
  return undefined
}

/**
 * An unset setting passes; else it must be a finite number within `bounds`.
 *
 * @example
 * ```ts
 * import { InvalidSetting } from "@effect-kinesis/core"
 *
 * const error = InvalidSetting.checkNumber("sampleRate", 1.5, { min: 0, max: 1 })
 * ```
 *
 * @since 0.2.0
 * @category checks
 */
export const checkNumber = (
  setting: string,
  value: number | undefined,
  bounds: Bounds = {}
): InvalidSetting | undefined => {
  if (value === undefined) return undefined
  if (typeof value !== "number" || !Number.isFinite(value) || outside(value, bounds)) {
    const within = range(bounds)
    return new InvalidSetting({ setting, value, reason: `must be a finite number${within === "" ? "" : ` ${within}`}` })
  }
  return undefined
}

/**
 * Which durations a setting accepts besides positive finite ones.
 *
 * @example
 * ```ts
 * import type { InvalidSetting } from "@effect-kinesis/core"
 *
 * const timeout: InvalidSetting.DurationBounds = { zero: false, infinite: true }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface DurationBounds {
  /** Whether zero is accepted. Default `false`. */
  readonly zero?: boolean | undefined
  /** Whether an infinite duration is accepted. Default `false`. */
  readonly infinite?: boolean | undefined
}

/**
 * The duration of a setting, or `undefined` when the input is not a duration (a string Effect
 * cannot parse, `NaN`).
 *
 * @example
 * ```ts
 * import { InvalidSetting } from "@effect-kinesis/core"
 *
 * InvalidSetting.toDuration("5 seconds") // 5 seconds
 * InvalidSetting.toDuration(Number.NaN) // undefined
 * ```
 *
 * @since 0.2.0
 * @category checks
 */
export const toDuration = (input: Duration.Input): Duration.Duration | undefined => {
  if (typeof input === "number" && Number.isNaN(input)) return undefined
  try {
    return Duration.fromInputUnsafe(input)
  } catch {
    return undefined
  }
}

/**
 * An unset setting passes; else it must be a duration Effect can read, positive (or zero with
 * `zero: true`) and finite (or infinite with `infinite: true`).
 *
 * @example
 * ```ts
 * import { InvalidSetting } from "@effect-kinesis/core"
 *
 * const error = InvalidSetting.checkDuration("pollInterval", "0 millis")
 * // error?.reason: "must be a positive finite duration"
 * ```
 *
 * @since 0.2.0
 * @category checks
 */
export const checkDuration = (
  setting: string,
  value: Duration.Input | undefined,
  bounds: DurationBounds = {}
): InvalidSetting | undefined => {
  if (value === undefined) return undefined
  const duration = toDuration(value)
  const allowed = `${bounds.zero === true ? "non-negative" : "positive"}${bounds.infinite === true ? "" : " finite"}`
  if (
    duration === undefined || Duration.isNegative(duration) ||
    (bounds.zero !== true && Duration.isZero(duration)) ||
    (bounds.infinite !== true && !Duration.isFinite(duration))
  ) {
    return new InvalidSetting({ setting, value, reason: `must be a ${allowed} duration` })
  }
  return undefined
}

/**
 * The first failed check of a list, in order.
 *
 * @example
 * ```ts
 * import { InvalidSetting } from "@effect-kinesis/core"
 *
 * const error = InvalidSetting.first([
 *   InvalidSetting.checkInteger("batchSize", 100, { min: 1 }),
 *   InvalidSetting.checkDuration("interval", "-1 seconds")
 * ])
 * // error?.setting: "interval"
 * ```
 *
 * @since 0.2.0
 * @category checks
 */
export const first = (checks: Iterable<InvalidSetting | undefined>): InvalidSetting | undefined => {
  for (const check of checks) if (check !== undefined) return check
  return undefined
}
