import { MetricsCollector } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { Env, eventually, put, startWorker, uniqueTable, type Worker } from "./fixtures.ts"

const dims = (datum: MetricsCollector.MetricDatum) => Object.fromEntries(datum.dimensions.map((d) => [d.name, d.value]))

const named = (datums: ReadonlyArray<MetricsCollector.MetricDatum>, name: string, operation: string) =>
  datums.filter((d) => d.name === name && dims(d).Operation === operation)

const sum = (datums: ReadonlyArray<MetricsCollector.MetricDatum>) =>
  datums.reduce((total, d) => total + d.statistics.sum, 0)

const samples = (datums: ReadonlyArray<MetricsCollector.MetricDatum>) =>
  datums.reduce((total, d) => total + d.statistics.sampleCount, 0)

layer(Env, { excludeTestServices: true, timeout: "60 seconds" })("KCL metrics on the DynamoDB lease store", (it) => {
  describe("two workers", () => {
    it.effect("lease counts, takes, renewals and checkpoints as the KCL reports them, namespaced by application", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 4 })
        const table = uniqueTable("metrics")
        const collector = yield* MetricsCollector.make
        const all: Array<MetricsCollector.MetricDatum> = []
        const workers: Array<Worker> = yield* Effect.forEach(
          ["w1", "w2"],
          (workerId) =>
            startWorker({ stream: streamName, applicationName: table, workerId }).pipe(
              Effect.provideService(MetricsCollector.MetricsCollector, collector)
            )
        )
        yield* eventually(
          Effect.sync(() => workers.every((w) => w.held().size === 2)),
          "30 seconds",
          "2 shards held by each worker"
        )
        yield* put(streamName, Array.from({ length: 40 }, (_, i) => ({ partitionKey: `key-${i % 12}`, data: `d${i}` })))
        yield* eventually(
          Effect.sync(() => workers.reduce((n, w) => n + w.seen.length, 0) >= 40),
          "30 seconds",
          "40 records"
        )
        yield* Effect.sleep("1 second")
        all.push(...(yield* collector.drain).datums)
        yield* Effect.sleep("1200 millis")
        const steady = (yield* collector.drain).datums
        all.push(...steady)

        expect(new Set(all.map((d) => d.namespace))).toEqual(new Set([table]))
        expect(sum(named(all, "RecordsProcessed", "ProcessTask"))).toBe(
          workers.reduce((n, w) => n + w.seen.length, 0)
        )
        for (const worker of workers) {
          const mine = (d: MetricsCollector.MetricDatum) => dims(d).WorkerIdentifier === worker.workerId
          const current = named(steady, "CurrentLeases", "RenewAllLeases").filter(mine)
          expect(current.map((d) => [d.statistics.minimum, d.statistics.maximum])).toEqual([[2, 2]])
          expect(sum(named(all, "TakenLeases", "TakeLeases").filter(mine))).toBe(
            worker.events.filter((e) => e._tag === "LeaseAcquired").length
          )
          // Every renewal write answered, none lost.
          const renewed = named(steady, "RenewLease.Success", "RenewAllLeases").filter(mine)
          expect(samples(renewed)).toBeGreaterThan(0)
          expect(sum(renewed)).toBe(samples(renewed))
          expect(sum(named(steady, "LostLeases", "RenewAllLeases").filter(mine))).toBe(0)
        }
        // Checkpoints: one UpdateLease per Checkpoint event, all answered.
        const updates = named(all, "UpdateLease.Success", "ProcessTask")
        const checkpoints = workers.reduce((n, w) => n + w.events.filter((e) => e._tag === "Checkpoint").length, 0)
        expect(samples(updates)).toBe(checkpoints)
        expect(sum(updates)).toBe(checkpoints)
      }))
  })
})
