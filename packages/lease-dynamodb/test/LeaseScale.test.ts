/**
 * The short variant of `npm run bench:leases` (bench/leaseScale.ts): workers sharing one lease table with no Kinesis
 * traffic, on a lease timing 10 times faster than the defaults, counting DynamoDB calls. Checks calls, not time: a
 * worker reads the whole table about once per take interval in steady state (not once per scan interval), and the
 * leases still spread at start-up, when a worker joins and when one dies.
 */
import { DynamoEmulator } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as Scale from "./leaseScale.ts"

const SHARDS = 40
const WORKERS = 4
const STEADY_SECONDS = 8
// The defaults (10 s, 3 s, 10 s, 500 ms) divided by 10, keeping their ratios.
const lease = {
  expiry: "1 second",
  renewInterval: "300 millis",
  takeInterval: "1 second",
  scanInterval: "50 millis",
  shardSyncInterval: "30 seconds"
} as const

layer(DynamoEmulator.layer(), { excludeTestServices: true, timeout: "120 seconds" })(
  "lease coordination cost",
  (it) => {
    describe("calls per phase", () => {
      it.effect("scans about once per take interval per worker in steady state; leases still spread", () =>
        Effect.gen(function*() {
          const dynamo = yield* DynamoEmulator.DynamoEmulator
          const phases = yield* Scale.run(dynamo.clientConfig, {
            shards: SHARDS,
            workers: WORKERS,
            lease,
            steady: `${STEADY_SECONDS} seconds`,
            phaseTimeout: "30 seconds",
            applicationName: `scale-${Date.now()}`
          })
          const byName = new Map(phases.map((p) => [p.name, p]))
          for (const p of phases) {
            expect({ phase: p.name, reached: p.reached }).toEqual({ phase: p.name, reached: true })
          }
          const steady = byName.get("steady")!
          const takeIntervals = STEADY_SECONDS
          const scansPerWorkerPerTakeInterval = (steady.tally.calls.Scan ?? 0) / WORKERS / takeIntervals
          // One scan per scan interval would be 20 here; one per take interval, jittered, with follow-ups when a
          // lease would expire, stays under 3.
          expect(scansPerWorkerPerTakeInterval).toBeLessThan(3)
          // The renewals go on: every lease about once per renewal interval.
          const renewals = steady.tally.calls.UpdateItem ?? 0
          expect(renewals).toBeGreaterThan(SHARDS * (STEADY_SECONDS / 0.3) * 0.5)
        }).pipe(Effect.scoped))
    })
  }
)
