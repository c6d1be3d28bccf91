import { CloudWatchMetrics } from "@effect-kinesis/cloudwatch"
import { Consumer, type ConsumerRecord, LeaseRepository } from "@effect-kinesis/consumer"
import { Client, MetricsCollector, Serde } from "@effect-kinesis/core"
import { Producer } from "@effect-kinesis/producer"
import { CloudWatchEndpoint, ConsumerWorker, KinesisEmulator, StreamFixtures } from "@effect-kinesis/testing"
import { expect, layer } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Metric, Option, Scope } from "effect"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"

const KinesisLive = Layer.unwrap(
  Effect.map(Effect.service(KinesisEmulator.KinesisEmulator), (emulator) => Client.layer(emulator.clientConfig))
).pipe(Layer.provideMerge(KinesisEmulator.layer()))

type Mode = "healthy" | "failing" | "hanging"

const faults: Record<Mode, Partial<CloudWatchEndpoint.EndpointSettings>> = {
  healthy: {},
  failing: { fault: "InternalFailure" },
  hanging: { fault: "hang" }
}

const SHARDS = 2
const PAYLOAD_BYTES = 100
const CAPACITY = 3
const CLOSE_TIMEOUT_MILLIS = 500
/** How long a test waits for the publisher to close before counting the close as hung: generous, for a loaded machine. */
const CLOSE_BOUND = `${CLOSE_TIMEOUT_MILLIS + 4500} millis`

const payload = (id: number) => {
  const head = `${id};`
  return head + "x".repeat(PAYLOAD_BYTES - head.length)
}

/**
 * A real producer and a real consumer (`consumeWith`, one worker, leases in memory) on a fresh stream, both
 * recording into a CloudWatch publisher whose fake endpoint is in `mode` from the start. The data path lives in a
 * scope of its own, so that a test stops it (the producer flushes, the consumer checkpoints) before closing the
 * publisher, as an application's layers close.
 */
const session = (mode: Mode, records: number, options: CloudWatchMetrics.Options) =>
  Effect.gen(function*() {
    const endpoint = yield* CloudWatchEndpoint.make(faults[mode])
    const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: SHARDS, prefix: `cw-${mode}` })
    const publisherScope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(
      CloudWatchMetrics.layer({
        ...endpoint.clientConfig,
        maxBufferedIntervals: CAPACITY,
        closeTimeout: `${CLOSE_TIMEOUT_MILLIS} millis`,
        ...options
      }),
      publisherScope
    )
    const collector = Context.get(context, MetricsCollector.MetricsCollector)
    const publisher = Context.get(context, CloudWatchMetrics.CloudWatchMetrics)
    const dataScope = yield* Scope.make()

    // How often each record id was handled; `allConsumed` completes when every id has been.
    const delivered = new Uint8Array(records)
    let unique = 0
    const allConsumed = yield* Deferred.make<void>()
    const handler = (record: ConsumerRecord.ConsumerRecord<string>) =>
      Effect.suspend(() => {
        const id = Number(record.data.slice(0, record.data.indexOf(";")))
        if (delivered[id]!++ === 0 && ++unique === records) return Deferred.succeed(allConsumed, undefined)
        return Effect.void
      })
    const held = new Set<string>()
    yield* Consumer.consumeWith(handler, {
      stream: streamName,
      applicationName: `cw-${mode}`,
      workerId: "w",
      deserializer: Serde.string,
      lease: ConsumerWorker.fastLeases,
      fetch: { pollInterval: "25 millis" },
      checkpointInterval: "200 millis",
      onDiagnostic: (event) =>
        Effect.sync(() => {
          if (event._tag === "LeaseAcquired") held.add(event.shardId)
        })
    }).pipe(
      Effect.provide(Consumer.layer.pipe(Layer.provide(LeaseRepository.layerMemory))),
      Effect.provideService(MetricsCollector.MetricsCollector, collector),
      Effect.forkIn(dataScope)
    )
    // Records are produced once the worker reads every shard, so that lease taking is not measured.
    yield* ConsumerWorker.eventually(Effect.sync(() => held.size === shards.length), "30 seconds", "every shard held")
    const producer = yield* Producer.make({ stream: streamName, serde: Serde.string, settings: { aggregate: true } })
      .pipe(Scope.provide(dataScope), Effect.provideService(MetricsCollector.MetricsCollector, collector))

    /** Produces ids `[from, to)` in chunks of 1000, four at a time, until Kinesis acknowledged them all. */
    const produce = (from: number, to: number) =>
      Effect.forEach(
        Array.from({ length: Math.ceil((to - from) / 1000) }, (_, c) => from + c * 1000),
        (start) =>
          producer.produceChunk(
            Array.from({ length: Math.min(1000, to - start) }, (_, j) => ({
              partitionKey: `key-${(start + j) % 256}`,
              data: payload(start + j)
            }))
          ),
        { concurrency: 4, discard: true }
      )

    /**
     * Stops the data path, then closes the publisher (which sends the last interval within `closeTimeout`); `returned`
     * tells whether that close returned within CLOSE_BOUND.
     */
    const close = Effect.gen(function*() {
      yield* Scope.close(dataScope, Exit.void)
      const closeStartedAt = Date.now()
      // Closing is uninterruptible: it runs on a fiber of its own, so that a hung close fails the test, not times it out.
      const closing = yield* Effect.forkDetach(Scope.close(publisherScope, Exit.void))
      const returned = yield* Fiber.await(closing).pipe(Effect.timeoutOption(CLOSE_BOUND))
      return { closeStartedAt, returned: Option.isSome(returned) }
    })

    return { endpoint, publisher, collector, delivered, allConsumed, produce, close, unique: () => unique }
  })

interface Run {
  readonly mode: Mode
  readonly perSecond: number
  readonly closeStartedAt: number
  readonly maxBuffered: number
  readonly status: CloudWatchMetrics.Status
  readonly stats: CloudWatchEndpoint.EndpointStats
  readonly delivered: Uint8Array
  readonly datums: ReadonlyArray<CloudWatchEndpoint.Datum>
}

const RECORDS = 30_000
/** Publisher closes that returned, whatever CloudWatch did. */
let closesReturned = 0
const RUN_TIMEOUT = "60 seconds"

/**
 * Produce+consume throughput (records/s, from the first record produced to the last consumed) in `mode`, with the
 * producer's default settings: its per-shard rate limit (1 MiB/s) makes ~19,500 records/s of this size on 2 shards
 * the pace when nothing holds the data path up. (Without the limit the runs are CPU-bound and twice as noisy here.)
 */
const throughputRun = (mode: Mode, records = RECORDS) =>
  Effect.scoped(Effect.gen(function*() {
    const s = yield* session(mode, records, { interval: "200 millis" })
    const buffered: Array<number> = []
    const sampler = yield* Effect.forkChild(Effect.forever(
      Effect.flatMap(s.publisher.status, (status) => Effect.sync(() => buffered.push(status.bufferedIntervals))).pipe(
        Effect.andThen(Effect.sleep("50 millis"))
      )
    ))
    const started = performance.now()
    yield* s.produce(0, records)
    yield* Deferred.await(s.allConsumed).pipe(Effect.timeout(RUN_TIMEOUT))
    const perSecond = records / ((performance.now() - started) / 1000)
    yield* Fiber.interrupt(sampler)
    const { closeStartedAt, returned } = yield* s.close
    if (returned) closesReturned++
    return {
      mode,
      perSecond,
      closeStartedAt,
      maxBuffered: Math.max(...buffered),
      status: yield* s.publisher.status,
      stats: yield* s.endpoint.stats,
      delivered: s.delivered,
      datums: (yield* s.endpoint.calls).flatMap((call) => call.datums)
    } satisfies Run
  }))

const sumOf = (datums: ReadonlyArray<CloudWatchEndpoint.Datum>, name: string, dimensions: number | "any" = "any") =>
  datums.filter((d) => d.metricName === name && (dimensions === "any" || d.dimensions.length === dimensions))
    .reduce((n, d) => n + (d.statisticValues?.sum ?? d.value ?? 0), 0)

/** `global.gc`, which vitest's workers do not expose by default. */
const gc = (): () => void => {
  setFlagsFromString("--expose-gc")
  return runInNewContext("gc") as () => void
}

layer(KinesisLive, { excludeTestServices: true, timeout: "120 seconds" })("CloudWatch outage under load", (it) => {
  it.effect(
    "produce+consume keeps its throughput while CloudWatch fails or hangs; every record is consumed once; close is bounded",
    () =>
      Effect.gen(function*() {
        const droppedBefore = (yield* Metric.value(CloudWatchMetrics.droppedIntervals)).count
        const closesBefore = closesReturned
        // A warm-up round (the JIT, the emulator), then rounds of each mode, the order rotating so that drift on a
        // shared machine falls on every mode alike.
        const orders: ReadonlyArray<ReadonlyArray<Mode>> = [
          ["healthy", "failing", "hanging"],
          ["failing", "hanging", "healthy"],
          ["hanging", "healthy", "failing"]
        ]
        const warmUp: Array<Run> = []
        for (const mode of orders[0]!) warmUp.push(yield* throughputRun(mode, RECORDS / 2))
        const rounds: Array<Record<Mode, Run>> = []
        for (const order of orders) {
          const round: Partial<Record<Mode, Run>> = {}
          for (const mode of order) round[mode] = yield* throughputRun(mode)
          rounds.push(round as Record<Mode, Run>)
        }
        const all = [...warmUp, ...rounds.flatMap((r) => [r.healthy, r.failing, r.hanging])]

        // A busy neighbour on the machine only ever slows a run down, so each mode's best run is its throughput.
        const best = (mode: Mode) => Math.max(...rounds.map((r) => r[mode].perSecond))
        const ratios = { failing: best("failing") / best("healthy"), hanging: best("hanging") / best("healthy") }
        console.log(
          `produce+consume records/s, healthy/failing/hanging per round: ${
            rounds.map((r) => [r.healthy, r.failing, r.hanging].map((x) => Math.round(x.perSecond)).join("/")).join(
              ", "
            )
          }; best failing/healthy ${ratios.failing.toFixed(2)}, hanging/healthy ${ratios.hanging.toFixed(2)}`
        )
        // Measured 0.84–1.17 over 8 runs on a loaded 2-core machine; a publisher that holds up the data path while
        // CloudWatch is down lands far below (see the report of the change that added this test).
        expect(ratios.failing).toBeGreaterThanOrEqual(0.7)
        expect(ratios.hanging).toBeGreaterThanOrEqual(0.7)

        for (const run of all) {
          // Every record produced was consumed exactly once.
          expect(run.delivered.every((n) => n === 1), `${run.mode}: every record once`).toBe(true)
          // Never more than CAPACITY intervals waiting.
          expect(run.maxBuffered).toBeLessThanOrEqual(CAPACITY)
          switch (run.mode) {
            case "healthy": {
              // Nothing dropped, and the last interval (drained at close) was sent: CloudWatch counts every record
              // the producer put and the consumer processed.
              expect(run.status).toMatchObject({ droppedIntervals: 0, failedRequests: 0, bufferedIntervals: 0 })
              expect(sumOf(run.datums, "UserRecordsPut", 0)).toBe(run.delivered.length)
              expect(sumOf(run.datums, "RecordsProcessed")).toBe(run.delivered.length)
              expect(Math.max(...run.datums.map((d) => d.timestamp ?? 0))).toBeGreaterThanOrEqual(run.closeStartedAt)
              break
            }
            case "failing": {
              expect(run.stats.failed).toBeGreaterThan(0)
              expect(run.status.sentRequests).toBe(0)
              expect(run.status.droppedIntervals).toBeGreaterThan(0)
              break
            }
            case "hanging": {
              expect(run.stats.hung).toBeGreaterThan(0)
              expect(run.status.sentRequests).toBe(0)
              expect(run.status.droppedIntervals).toBeGreaterThan(0)
              break
            }
          }
        }
        // Every close returned (within closeTimeout and a margin), the 4 in a hang and the 4 in failures included.
        expect(closesReturned - closesBefore).toBe(12)
        // Drops are counted in the Effect metric too.
        const droppedAfter = (yield* Metric.value(CloudWatchMetrics.droppedIntervals)).count
        expect(droppedAfter - droppedBefore).toBe(all.reduce((n, r) => n + r.status.droppedIntervals, 0))
      })
  )

  it.effect("a long CloudWatch hang under load costs bounded memory: buffered intervals capped, drops counted", () =>
    Effect.scoped(Effect.gen(function*() {
      const collectGarbage = gc()
      const heapAfterGc = () => {
        collectGarbage()
        collectGarbage()
        return process.memoryUsage().heapUsed
      }
      const total = 48_000
      const s = yield* session("hanging", total, { interval: "50 millis" })
      // Besides the producer's and the consumer's own metrics, 4,000 series of the application's (as many datums as
      // ~400 shards' worth of KPL metrics), so that each interval is ~600 KB and an unbounded buffer would show.
      const appSeries = Array.from(
        { length: 4000 },
        (_, i) =>
          s.collector.series({
            namespace: "App",
            name: "Orders",
            unit: "Count",
            dimensions: [{ name: "Id", value: `${i}` }]
          })
      )
      const buffered: Array<number> = []
      const background = yield* Effect.forkChild(Effect.forever(Effect.gen(function*() {
        for (const series of appSeries) series.record(1)
        buffered.push((yield* s.publisher.status).bufferedIntervals)
        yield* Effect.sleep("25 millis")
      })))
      // Steady load in slices, sampling the heap after the first and the last.
      const slices = 12
      const perSlice = total / slices
      const heap: Array<number> = []
      for (let slice = 0; slice < slices; slice++) {
        yield* s.produce(slice * perSlice, (slice + 1) * perSlice)
        yield* ConsumerWorker.eventually(Effect.sync(() => s.unique() >= (slice + 1) * perSlice), RUN_TIMEOUT, "slice")
        if (slice === 1 || slice === slices - 1) heap.push(heapAfterGc())
      }
      yield* Fiber.interrupt(background)
      const status = yield* s.publisher.status
      const { returned } = yield* s.close
      const stats = yield* s.endpoint.stats
      console.log(
        `hanging CloudWatch, 50 ms intervals: heap after GC grew ${
          ((heap[1]! - heap[0]!) / 2 ** 20).toFixed(2)
        } MB between slices 2 and ${slices}; ${status.droppedIntervals} intervals dropped, ${status.bufferedIntervals} buffered`
      )
      // 50+ intervals of ~600 KB each arrive over the measured stretch: kept, they would be 30 MB or more.
      expect(heap[1]! - heap[0]!).toBeLessThan(8 * 2 ** 20)
      expect(Math.max(...buffered)).toBeLessThanOrEqual(CAPACITY)
      expect(status.droppedIntervals).toBeGreaterThan(20)
      expect(stats.hung).toBeGreaterThan(0)
      expect(s.delivered.every((n) => n === 1)).toBe(true)
      expect(returned).toBe(true)
    })))
})
