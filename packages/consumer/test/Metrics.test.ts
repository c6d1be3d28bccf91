import { LeaseRepository } from "@effect-kinesis/consumer"
import { MetricsCollector } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { eventually, KinesisLive, put, startWorker, type Worker } from "./fixtures.ts"

const records = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ partitionKey: `key-${i % 16}`, data: `${prefix}${i}` }))

/** Drains `collector` into `into` (every interval, in order). */
const drainInto = (
  collector: MetricsCollector.MetricsCollector["Service"],
  into: Array<MetricsCollector.MetricDatum>
) =>
  Effect.map(collector.drain, (interval) => {
    into.push(...interval.datums)
    return interval.datums
  })

const dims = (datum: MetricsCollector.MetricDatum) => Object.fromEntries(datum.dimensions.map((d) => [d.name, d.value]))

const named = (datums: ReadonlyArray<MetricsCollector.MetricDatum>, name: string, operation?: string) =>
  datums.filter((d) => d.name === name && (operation === undefined || dims(d).Operation === operation))

const sum = (datums: ReadonlyArray<MetricsCollector.MetricDatum>) =>
  datums.reduce((total, d) => total + d.statistics.sum, 0)

const detailedNames = [
  "KinesisDataFetcher.getRecords.Success",
  "KinesisDataFetcher.getRecords.Time",
  "UpdateLease.Success",
  "UpdateLease.Time",
  "RenewLease.Success",
  "RenewLease.Time",
  "ListLeases.Success",
  "ListLeases.Time",
  "TakeLease.Success",
  "TakeLease.Time",
  "TotalLeases",
  "NeededLeases",
  "LeasesToTake"
]

const summaryNames = [
  "RecordsProcessed",
  "DataBytesProcessed",
  "MillisBehindLatest",
  "Time",
  "Success",
  "RecordProcessor.processRecords.Time",
  "CurrentLeases",
  "LostLeases",
  "TakenLeases",
  "UntakenLeases",
  "ExpiredLeases",
  "LeaseSpillover",
  "NumWorkers",
  "VeryOldLeases"
]

layer(KinesisLive, { excludeTestServices: true, timeout: "90 seconds" })("KCL metrics", (it) => {
  describe("two workers, detailed, all dimensions", () => {
    it.effect("record the KCL's names, operations and dimensions, and values that match what the workers did", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 4 })
        const repository = yield* LeaseRepository.makeMemory()
        const collector = yield* MetricsCollector.make
        const all: Array<MetricsCollector.MetricDatum> = []
        const workers: Array<Worker> = yield* Effect.forEach(
          ["w1", "w2"],
          (workerId) =>
            startWorker({ stream: streamName, workerId, repository, applicationName: "metrics-app" }).pipe(
              Effect.provideService(MetricsCollector.MetricsCollector, collector)
            )
        )
        const held = () => workers.map((w) => w.held().size)
        yield* eventually(
          Effect.sync(() => held().every((n) => n === 2)),
          "30 seconds",
          "2 shards held by each worker"
        )
        // Records only once the shares are settled, so that every record is delivered once.
        yield* put(streamName, records("r", 200))
        yield* eventually(
          Effect.sync(() => workers.reduce((n, w) => n + w.seen.length, 0) >= 200),
          "30 seconds",
          "200 records"
        )
        // Past a checkpoint interval (200 ms) and a renewal interval (500 ms).
        yield* Effect.sleep("1200 millis")
        yield* drainInto(collector, all)
        // One more interval, nothing moving: the lease counts are steady.
        yield* Effect.sleep("1200 millis")
        const steady = yield* drainInto(collector, all)

        expect(new Set(all.map((d) => d.namespace))).toEqual(new Set(["metrics-app"]))

        // RecordsProcessed: per shard, summed = records the handlers got.
        const processed = named(all, "RecordsProcessed", "ProcessTask")
        for (const d of processed) {
          expect(Object.keys(dims(d)).sort()).toEqual(["Operation", "ShardId"])
          expect(d.unit).toBe("Count")
        }
        expect(sum(processed)).toBe(workers.reduce((n, w) => n + w.seen.length, 0))
        for (const shard of shards) {
          const ofShard = processed.filter((d) => dims(d).ShardId === shard.shardId)
          expect(sum(ofShard)).toBe(
            workers.reduce((n, w) => n + w.seen.filter((r) => r.shardId === shard.shardId).length, 0)
          )
        }
        // DataBytesProcessed: one sample per record, of its data ("r0".."r199": 2–4 bytes).
        const bytes = named(all, "DataBytesProcessed", "ProcessTask")
        const expectedBytes = records("r", 200).reduce((n, r) => n + r.data.length, 0)
        expect(sum(bytes)).toBe(expectedBytes)
        expect(bytes.every((d) => d.unit === "Bytes")).toBe(true)

        // MillisBehindLatest: present for every shard, and worker-wide (ApplicationTracker).
        const lag = named(all, "MillisBehindLatest", "ProcessTask")
        expect(new Set(lag.map((d) => dims(d).ShardId))).toEqual(new Set(shards.map((s) => s.shardId)))
        expect(lag.every((d) => d.unit === "Milliseconds")).toBe(true)
        expect(named(all, "MillisBehindLatest", "ApplicationTracker").length).toBeGreaterThan(0)
        expect(dims(named(all, "MillisBehindLatest", "ApplicationTracker")[0]!)).toEqual({
          Operation: "ApplicationTracker"
        })

        for (const worker of workers) {
          const mine = (d: MetricsCollector.MetricDatum) => dims(d).WorkerIdentifier === worker.workerId
          // CurrentLeases: in the steady interval, exactly the leases it holds.
          const current = named(steady, "CurrentLeases", "RenewAllLeases").filter(mine)
          expect(current).toHaveLength(1)
          expect(current[0]!.statistics.minimum).toBe(worker.held().size)
          expect(current[0]!.statistics.maximum).toBe(worker.held().size)
          expect(dims(current[0]!)).toEqual({ Operation: "RenewAllLeases", WorkerIdentifier: worker.workerId })
          // TakenLeases: every take it made.
          const taken = named(all, "TakenLeases", "TakeLeases").filter(mine)
          expect(sum(taken)).toBe(worker.events.filter((e) => e._tag === "LeaseAcquired").length)
          expect(named(all, "LostLeases", "RenewAllLeases").filter(mine).length).toBeGreaterThan(0)
          // NumWorkers: both, once the other is seen.
          expect(Math.max(...named(steady, "NumWorkers", "TakeLeases").filter(mine).map((d) => d.statistics.maximum)))
            .toBe(2)
        }

        // Detailed metrics are there at the default level, under the KCL's operations.
        for (const name of detailedNames) expect(named(all, name).length, name).toBeGreaterThan(0)
        for (const d of named(all, "KinesisDataFetcher.getRecords.Success")) {
          expect(Object.keys(dims(d)).sort()).toEqual(["Operation", "ShardId"])
          expect(dims(d).Operation).toBe("ProcessTask")
        }
        expect(named(all, "UpdateLease.Success").every((d) => dims(d).Operation === "ProcessTask")).toBe(true)
        expect(named(all, "RenewLease.Time").every((d) => dims(d).Operation === "RenewAllLeases")).toBe(true)
        // consumeWith times its handler per batch.
        expect(named(all, "RecordProcessor.processRecords.Time", "ProcessTask").length).toBeGreaterThan(0)
        expect(sum(named(all, "Success", "ProcessTask"))).toBe(
          named(all, "Success", "ProcessTask").reduce((n, d) => n + d.statistics.sampleCount, 0)
        )
      }))
  })

  describe("leases handed over between full rounds", () => {
    it.effect("every take is counted in TakenLeases, also one made when a hand-off completes between full reads", () =>
      Effect.gen(function*() {
        // w1 holds all 8 shards; w2 joins and asks for 4 by hand-off. Most hand-offs complete between two full
        // reads of the table (the joiner reads only the leases handed to it there), so each take must be counted
        // there too.
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 8 })
        const repository = yield* LeaseRepository.makeMemory()
        const collector = yield* MetricsCollector.make
        const all: Array<MetricsCollector.MetricDatum> = []
        const start = (workerId: string) =>
          startWorker({ stream: streamName, workerId, repository, applicationName: "handed-app" }).pipe(
            Effect.provideService(MetricsCollector.MetricsCollector, collector)
          )
        const w1 = yield* start("w1")
        yield* eventually(Effect.sync(() => w1.held().size === 8), "30 seconds", "8 shards held by w1")
        const w2 = yield* start("w2")
        yield* eventually(
          Effect.sync(() => w1.held().size === 4 && w2.held().size === 4),
          "30 seconds",
          "4 shards held by each worker"
        )
        // Past a round and a renewal, so that the last take's round has been recorded.
        yield* Effect.sleep("1200 millis")
        yield* drainInto(collector, all)
        for (const worker of [w1, w2]) {
          const taken = named(all, "TakenLeases", "TakeLeases").filter((d) =>
            dims(d).WorkerIdentifier === worker.workerId
          )
          expect(sum(taken), worker.workerId).toBe(worker.events.filter((e) => e._tag === "LeaseAcquired").length)
        }
        expect(w2.events.filter((e) => e._tag === "LeaseAcquired").length).toBe(4)
      }))
  })

  describe("levels and dimensions", () => {
    it.effect("summary omits the detailed metrics; turned-off dimensions are left out; namespace is configurable", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const repository = yield* LeaseRepository.makeMemory()
        const collector = yield* MetricsCollector.make
        const all: Array<MetricsCollector.MetricDatum> = []
        yield* put(streamName, records("s", 20))
        const worker = yield* startWorker({
          stream: streamName,
          workerId: "w",
          repository,
          metrics: { level: "summary", namespace: "Dashboards", dimensions: ["ShardId"] }
        }).pipe(Effect.provideService(MetricsCollector.MetricsCollector, collector))
        yield* eventually(Effect.sync(() => worker.seen.length >= 20), "30 seconds", "20 records")
        yield* Effect.sleep("1200 millis")
        yield* drainInto(collector, all)

        expect(new Set(all.map((d) => d.namespace))).toEqual(new Set(["Dashboards"]))
        const names = new Set(all.map((d) => d.name))
        for (const name of detailedNames) expect(names.has(name), name).toBe(false)
        for (const name of summaryNames) expect(names.has(name), name).toBe(true)
        // WorkerIdentifier is off: the lease operations carry only Operation.
        for (
          const d of all.filter((d) => dims(d).Operation === "TakeLeases" || dims(d).Operation === "RenewAllLeases")
        ) {
          expect(Object.keys(dims(d))).toEqual(["Operation"])
        }
        expect(sum(named(all, "RecordsProcessed"))).toBe(20)
      }))

    it.effect("level none records nothing", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        const collector = yield* MetricsCollector.make
        yield* put(streamName, records("n", 5))
        const worker = yield* startWorker({ stream: streamName, workerId: "w", repository, metrics: { level: "none" } })
          .pipe(Effect.provideService(MetricsCollector.MetricsCollector, collector))
        yield* eventually(Effect.sync(() => worker.seen.length >= 5), "30 seconds", "5 records")
        const interval = yield* collector.drain
        expect(interval.datums).toEqual([])
      }))
  })
})
