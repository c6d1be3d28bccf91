import { LeaseRepository } from "@effect-kinesis/consumer"
import { Serde } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { fanOutSettings, startFanOutWorker } from "./fanOutFixtures.ts"
import { eventually, fastLeases, KinesisLive, put, type Worker } from "./fixtures.ts"
import { atTimestampAcrossReshard, deaggregationResume, splitAndMerge } from "./scenarios.ts"

const records = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ partitionKey: `key-${i % 16}`, data: `${prefix}${i}` }))

const dataOf = (workers: ReadonlyArray<Worker>) => new Set(workers.flatMap((w) => w.seen.map((r) => r.data)))

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("Enhanced fan-out scenarios", (it) => {
  describe("hand-off", () => {
    it.effect("a worker shutting down releases its leases and another worker resubscribes to them after the last checkpoint", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 4 })
        const repository = yield* LeaseRepository.makeMemory()
        // Expiry far beyond the test: only a release can move a lease.
        const lease = { ...fastLeases, expiry: "5 minutes", renewInterval: "1 second" } as const
        const a = yield* startFanOutWorker({ stream: streamName, workerId: "a", repository, lease })
        yield* eventually(Effect.sync(() => a.held().size === 4), "20 seconds", "a holding all shards")
        const b = yield* startFanOutWorker({ stream: streamName, workerId: "b", repository, lease })
        yield* eventually(Effect.sync(() => a.held().size === 2 && b.held().size === 2), "20 seconds", "2 + 2")

        yield* put(streamName, records("x", 20))
        yield* eventually(Effect.sync(() => dataOf([a, b]).size === 20), "20 seconds", "first 20 records")
        yield* a.stop
        yield* eventually(Effect.sync(() => b.held().size === 4), "10 seconds", "b holding all shards")

        // b subscribes to a's shards within 5 seconds of a's subscriptions: Kinesis says
        // ResourceInUse at first, and b waits it out.
        yield* put(streamName, records("y", 20))
        yield* eventually(
          Effect.sync(() => new Set(b.seen.map((r) => r.data).filter((d) => d.startsWith("y"))).size === 20),
          "20 seconds",
          "b processing every shard"
        )
        const redone = b.seen.filter((r) => r.data.startsWith("x") && a.seen.some((s) => s.data === r.data))
        expect(redone).toEqual([])
      }))
  })

  describe("deaggregation", () => {
    it.effect("KPL aggregates are delivered one user record at a time, and a restart mid-aggregate resumes at the next subsequence number", () =>
      deaggregationResume((stream) => ({
        stream,
        applicationName: "test",
        workerId: "w",
        deserializer: Serde.string,
        enhancedFanOut: fanOutSettings,
        lease: fastLeases
      })))
  })

  describe("resharding", () => {
    it.effect("children start only after their parents end, and per-key order holds across split and merge", () =>
      splitAndMerge(
        (stream, repository) =>
          startFanOutWorker({
            stream,
            workerId: "w",
            repository,
            handler: () => Effect.sleep("5 millis"),
            lease: { ...fastLeases, cleanupFinished: false }
          }),
        // The children are being read through subscriptions when they close.
        (worker, children) =>
          eventually(
            Effect.sync(() => children.every((child) => worker.held().has(child))),
            "20 seconds",
            "both children held"
          )
      ))

    it.effect("started AT_TIMESTAMP before a split, the closed parent is read from the timestamp and its children after it", () =>
      atTimestampAcrossReshard(
        "split",
        (stream, repository, initialPosition) =>
          startFanOutWorker({ stream, workerId: "w", repository, initialPosition })
      ))
  })
})
