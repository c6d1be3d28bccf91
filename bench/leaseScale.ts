/**
 * Lease coordination at scale: DynamoDB calls and consumed capacity per minute for 1,000 shards and 20 workers
 * sharing one lease table, in steady state and while the leases are spread (start-up, a worker joining, a worker
 * killed), set beside what the KCL 2.x and 3.x call patterns cost on the same table.
 *
 *   npm run bench:leases   (node --conditions=@effect-kinesis/source bench/leaseScale.ts)
 *   BENCH_SHARDS=200 BENCH_WORKERS=5 BENCH_STEADY_SECONDS=30 npm run bench:leases
 *
 * The workers run the consumer's lease logic at the default lease timing (expiry 10 s, renewal 3 s, take 10 s,
 * scan 500 ms, shard sync 30 s) slowed down `BENCH_SLOWDOWN` times (default 5: every interval 5 times longer), so that
 * one process and one dynalite on a shared 2-core machine keep up with 20 workers renewing 1,000 leases (at full
 * speed they fell behind, and leases expired for want of CPU, not by the lease logic). Every figure is scaled back
 * to the default timing: calls per minute multiplied, phase lengths divided by the slowdown (every call the lease
 * logic makes is paced by one of these intervals; the one-off lease creation at start-up is not, so the start-up
 * length is an upper bound). On the embedded dynalite, with a fake Kinesis that only lists the
 * shards: no records are read, so only lease coordination reaches DynamoDB. Every request is counted with the
 * capacity dynalite reports for it (`ReturnConsumedCapacity: TOTAL`; billed as DynamoDB bills: reads by 4 KB,
 * halved when eventually consistent, writes by 1 KB). BENCH_COORDINATION=leader runs the workers in leader mode
 * (`lease.coordination: "leader"`, the table with its owner index) and writes bench/results/leaseScaleLeader.json. See `packages/lease-dynamodb/test/leaseScale.ts` for the
 * driver and for the KCL model (its call pattern and defaults, with the classes they come from). Writes
 * bench/results/leaseScale.json.
 */
import { ScanCommand } from "@aws-sdk/client-dynamodb"
import { DynamoEmulator } from "@effect-kinesis/testing"
import { Duration, Effect, Layer } from "effect"
import type * as ScaleModule from "../packages/lease-dynamodb/test/leaseScale.ts"
import * as Results from "./results.ts"

// The driver is a test helper of another project (the CI test runs it with small numbers): loaded at run time from
// its source, as this script runs (tsc cannot rewrite a static import across projects).
const Scale =
  (await import(new URL("../packages/lease-dynamodb/test/leaseScale.ts", import.meta.url).href)) as typeof ScaleModule

const SHARDS = Number(process.env.BENCH_SHARDS ?? 1000)
const WORKERS = Number(process.env.BENCH_WORKERS ?? 20)
const STEADY_SECONDS = Number(process.env.BENCH_STEADY_SECONDS ?? 60)
const SLOWDOWN = Number(process.env.BENCH_SLOWDOWN ?? 5)
// `leader`: leader-based assignment (`lease.coordination: "leader"`, the table with its owner index).
const COORDINATION = process.env.BENCH_COORDINATION === "leader" ? "leader" : "workers"
const slow = (seconds: number) => Duration.millis(seconds * SLOWDOWN * 1000)
const APPLICATION = "lease-scale"

const fmt = (n: number) => n >= 100 ? Math.round(n).toLocaleString("en") : n.toFixed(1)

const program = Effect.gen(function*() {
  const dynamo = yield* DynamoEmulator.DynamoEmulator
  const phases = yield* Scale.run(dynamo.clientConfig, {
    shards: SHARDS,
    workers: WORKERS,
    lease: {
      expiry: slow(10),
      renewInterval: slow(3),
      takeInterval: slow(10),
      scanInterval: slow(0.5),
      shardSyncInterval: slow(30),
      coordination: COORDINATION
    },
    steady: slow(STEADY_SECONDS),
    phaseTimeout: "20 minutes",
    applicationName: APPLICATION,
    log: (line) => console.log(line)
  })
  // The lease items as stored, sized as DynamoDB bills them, for the KCL model.
  const sdk = Scale.countingClients(dynamo.clientConfig).make()
  // Leases only (not the leader lock).
  const items = ((yield* Effect.promise(() => sdk.send(new ScanCommand({ TableName: APPLICATION })))).Items ?? [])
    .filter((item) => item.entityType === undefined || item.entityType.S === "LEASE")
  sdk.destroy()
  const leaseItemBytes = items.reduce((s, item) => s + Scale.itemSize(item as never), 0) / Math.max(1, items.length)
  const kcl = Scale.kclSteadyState({ leases: SHARDS, workers: WORKERS, leaseItemBytes })

  console.log(
    `\n${SHARDS} shards × ${WORKERS} workers, coordination: ${COORDINATION}; lease item ${
      leaseItemBytes.toFixed(0)
    } bytes on average`
  )
  console.log("| phase | length | calls/min | of which Scan | RCU/min | WCU/min |")
  console.log("|---|---|---|---|---|---|")
  const rows = phases.map((p) => {
    const u = Scale.units(p.tally)
    // Back to the default timing.
    const seconds = p.seconds / SLOWDOWN
    const row = {
      phase: p.name,
      seconds,
      reached: p.reached,
      calls: p.tally.calls,
      callsPerMinute: (Scale.sum(p.tally.calls) * 60) / seconds,
      scansPerMinute: ((p.tally.calls.Scan ?? 0) * 60) / seconds,
      readUnitsPerMinute: (u.read * 60) / seconds,
      writeUnitsPerMinute: (u.write * 60) / seconds,
      readUnits: u.read,
      writeUnits: u.write
    }
    console.log(
      `| ${p.name} | ${seconds.toFixed(1)} s${p.reached ? "" : " (not reached)"} | ${fmt(row.callsPerMinute)} | ${
        fmt(row.scansPerMinute)
      } | ${fmt(row.readUnitsPerMinute)} | ${fmt(row.writeUnitsPerMinute)} |`
    )
    return row
  })
  for (const [name, m] of [["KCL 2.x (model)", kcl.kcl2], ["KCL 3.x (model)", kcl.kcl3]] as const) {
    console.log(
      `| ${name}, steady | — | ${fmt(Scale.sum(m.calls))} | ${fmt(m.calls.Scan ?? 0)} | ${fmt(m.read)} | ${
        fmt(m.write)
      } |`
    )
  }
  Results.write(COORDINATION === "leader" ? "leaseScaleLeader" : "leaseScale", {
    shards: SHARDS,
    workers: WORKERS,
    slowdown: SLOWDOWN,
    coordination: COORDINATION,
    leaseItemBytes,
    phases: rows,
    kcl
  })
})

program.pipe(Effect.scoped, Effect.provide(Layer.fresh(DynamoEmulator.layer())), Effect.runPromise).catch((e) => {
  console.error(e)
  process.exitCode = 1
})
