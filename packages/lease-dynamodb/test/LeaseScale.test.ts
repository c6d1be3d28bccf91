/**
 * The short variant of `npm run bench:leases` (bench/leaseScale.ts): workers sharing one lease table with no Kinesis
 * traffic, on a lease timing 5 times faster than the defaults, counting DynamoDB calls. Checks calls, not time: a
 * worker reads the whole table about once per take interval in steady state (not once per scan interval), and the
 * leases still spread at start-up, when a worker joins and when one dies.
 */
import { DynamoEmulator } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as Scale from "./leaseScale.ts"

const SHARDS = 160
const WORKERS = 4
const STEADY_SECONDS = 10
// The defaults (10 s, 3 s, 10 s, 500 ms) divided by 5, keeping their ratios.
const lease = {
  expiry: "2 seconds",
  renewInterval: "600 millis",
  takeInterval: "2 seconds",
  scanInterval: "100 millis",
  shardSyncInterval: "6 seconds"
} as const

layer(DynamoEmulator.layer(), { excludeTestServices: true, timeout: "300 seconds" })(
  "lease coordination cost",
  (it) => {
    describe("calls per phase", () => {
      it.effect("a worker scans about one read unit per scan interval in steady state; leases still spread", () =>
        Effect.gen(function*() {
          const dynamo = yield* DynamoEmulator.DynamoEmulator
          const phases = yield* Scale.run(dynamo.clientConfig, {
            shards: SHARDS,
            workers: WORKERS,
            lease,
            steady: `${STEADY_SECONDS} seconds`,
            // Each phase takes a few seconds; the margin is for a machine loaded by the rest of the suite.
            phaseTimeout: "45 seconds",
            applicationName: `scale-${Date.now()}`
          })
          const byName = new Map(phases.map((p) => [p.name, p]))
          for (const p of phases) {
            expect({ phase: p.name, reached: p.reached }).toEqual({ phase: p.name, reached: true })
          }
          const steady = byName.get("steady")!
          // A table of 160 leases is 10 read units: read at most every 10 scan intervals (1 s), where reading it
          // every scan interval would be 10 scans per second per worker.
          const scansPerWorkerPerSecond = (steady.tally.calls.Scan ?? 0) / WORKERS / STEADY_SECONDS
          expect(scansPerWorkerPerSecond).toBeLessThan(2)
          // The renewals go on: every lease about once per renewal interval.
          const renewals = steady.tally.calls.UpdateItem ?? 0
          expect(renewals).toBeGreaterThan(SHARDS * (STEADY_SECONDS / 0.6) * 0.5)
        }).pipe(Effect.scoped))

      it.effect("leader mode: in steady state only the leader scans, the others query their own keys; leases still spread, also when the leader dies", () =>
        Effect.gen(function*() {
          const dynamo = yield* DynamoEmulator.DynamoEmulator
          const phases = yield* Scale.run(dynamo.clientConfig, {
            shards: SHARDS,
            workers: WORKERS,
            lease: { ...lease, coordination: "leader" },
            steady: `${STEADY_SECONDS} seconds`,
            phaseTimeout: "40 seconds",
            applicationName: `scale-leader-${Date.now()}`
          })
          const byName = new Map(phases.map((p) => [p.name, p]))
          expect(phases.map((p) => p.name)).toEqual(["start-up", "steady", "join", "failover", "leader failover"])
          for (const p of phases) {
            expect({ phase: p.name, reached: p.reached }).toEqual({ phase: p.name, reached: true })
          }
          const steady = byName.get("steady")!
          // The leader reads the table every two expiries (4 s), jittered by up to a fifth: at most 4 scans in 10 s,
          // where every worker reading it about once a second would be some 40.
          expect(steady.tally.calls.Scan ?? 0).toBeLessThanOrEqual(4)
          // The others look up their keys every expiry (2 s): about 5 each.
          expect(steady.tally.calls.Query ?? 0).toBeGreaterThanOrEqual((WORKERS - 1) * 3)
          const renewals = steady.tally.calls.UpdateItem ?? 0
          expect(renewals).toBeGreaterThan(SHARDS * (STEADY_SECONDS / 0.6) * 0.5)
        }).pipe(Effect.scoped))
    })
  }
)
