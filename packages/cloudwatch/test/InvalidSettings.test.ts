import type { CloudWatchClient } from "@aws-sdk/client-cloudwatch"
import { CloudWatchMetrics, EmbeddedMetrics } from "@effect-kinesis/cloudwatch"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"

// Never called: nothing is recorded, so nothing is sent.
const sdk = { send: () => Promise.reject(new Error("not used")) } as unknown as CloudWatchClient

const failureOf = (exit: Exit.Exit<unknown, unknown>) => {
  const reason = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
  return (reason?._tag === "Fail" ? reason.error : reason) as
    | { readonly _tag: string; readonly setting?: string; readonly message?: string }
    | undefined
}

const notPositive = [0, -1, "-1 seconds", "soon", NaN, Infinity]
const notCount = [-1, 1.5, NaN, Infinity]

const invalid: ReadonlyArray<readonly [setting: string, options: CloudWatchMetrics.Options]> = [
  ...notPositive.map((interval) => ["interval", { interval: interval as never }] as const),
  ...[0, ...notCount].map((maxBufferedIntervals) => ["maxBufferedIntervals", { maxBufferedIntervals }] as const),
  ...notPositive.map((requestTimeout) => ["requestTimeout", { requestTimeout: requestTimeout as never }] as const),
  ...notCount.map((maxRetries) => ["maxRetries", { maxRetries }] as const),
  ...[0, ...notCount].map((concurrency) => ["concurrency", { concurrency }] as const),
  ...[-1, "-1 seconds", "soon", NaN, Infinity].map((closeTimeout) =>
    ["closeTimeout", { closeTimeout: closeTimeout as never }] as const
  )
]

const valid: ReadonlyArray<CloudWatchMetrics.Options> = [
  {},
  { interval: 1, maxBufferedIntervals: 1, requestTimeout: 1, maxRetries: 0, concurrency: 1, closeTimeout: 0 }
]

describe("CloudWatch metrics options", () => {
  for (const [setting, options] of invalid) {
    it.effect(`CloudWatchMetrics refuses ${JSON.stringify(options)} with InvalidSetting(${setting})`, () =>
      Effect.gen(function*() {
        const failure = failureOf(yield* Effect.exit(Effect.scoped(CloudWatchMetrics.make(sdk, options))))
        assert.strictEqual(failure?._tag, "InvalidSetting")
        assert.strictEqual(failure?.setting, setting)
      }))
  }

  for (const options of valid) {
    it.effect(`CloudWatchMetrics accepts ${JSON.stringify(options)}`, () =>
      Effect.gen(function*() {
        assert.isTrue(Exit.isSuccess(yield* Effect.exit(Effect.scoped(CloudWatchMetrics.make(sdk, options)))))
      }))
  }

  for (const interval of notPositive) {
    it.effect(`EmbeddedMetrics refuses interval ${String(interval)} with InvalidSetting(interval)`, () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(Effect.scoped(EmbeddedMetrics.make({ interval: interval as never })))
        assert.strictEqual(failureOf(exit)?._tag, "InvalidSetting")
        assert.strictEqual(failureOf(exit)?.setting, "interval")
      }))
  }

  it.effect("EmbeddedMetrics accepts the shortest interval", () =>
    Effect.gen(function*() {
      assert.isTrue(
        Exit.isSuccess(yield* Effect.exit(Effect.scoped(EmbeddedMetrics.make({ interval: 1, write: () => {} }))))
      )
    }))
})
