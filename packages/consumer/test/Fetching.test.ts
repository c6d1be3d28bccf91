import { LeaseRepository } from "@effect-kinesis/consumer"
import { Client } from "@effect-kinesis/core"
import { FaultProxy, StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Clock, Deferred, Effect, Layer, Schedule } from "effect"
import { eventually, KinesisLive, put, startWorker } from "./fixtures.ts"

const ProxyLive = Layer.provideMerge(FaultProxy.layer(), KinesisLive)

// Runs `self` with a Kinesis client that talks through the fault proxy.
const throughProxy = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.flatMap(
    Effect.service(FaultProxy.FaultProxy),
    (proxy) => Effect.provide(self, Client.layer(proxy.clientConfig))
  )

layer(ProxyLive, { excludeTestServices: true, timeout: "60 seconds" })("Polling", (it) => {
  describe("faults", () => {
    it.effect("throttled and failed GetRecords calls are retried, resuming after the last record delivered: none lost, none repeated", () =>
      Effect.gen(function*() {
        const proxy = yield* FaultProxy.FaultProxy
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const repository = yield* LeaseRepository.makeMemory()
        const records = Array.from(
          { length: 120 },
          (_, i) => ({ partitionKey: `key-${i % 10}`, data: `${i % 10}:${i}` })
        )
        yield* put(streamName, records)
        yield* proxy.update({
          getRecordsThrottleRate: 0.3,
          serverErrorRate: 0.2,
          serverErrorAfterForwardRate: 0.1,
          faultOperations: ["GetRecords"]
        })
        const startedAt = yield* Clock.currentTimeMillis
        const worker = yield* throughProxy(startWorker({
          stream: streamName,
          workerId: "w",
          repository,
          fetch: { batchSize: 7, retrySchedule: Schedule.spaced("50 millis") }
        }))
        yield* eventually(Effect.sync(() => worker.seen.length >= 120), "40 seconds", "all records")
        const elapsedSeconds = ((yield* Clock.currentTimeMillis) - startedAt) / 1000
        const stats = yield* proxy.stats
        yield* worker.stop
        yield* proxy.reset

        expect(stats.throttledGetRecords).toBeGreaterThan(0)
        expect(stats.injectedServerErrors).toBeGreaterThan(0)
        expect(worker.seen.map((r) => r.data).sort()).toEqual(records.map((r) => r.data).sort())
        for (let k = 0; k < 10; k++) {
          const ofKey = worker.seen.filter((r) => r.partitionKey === `key-${k}`).map((r) =>
            Number(r.data.split(":")[1])
          )
          expect(ofKey).toEqual([...ofKey].sort((a, b) => a - b))
        }
        // Never more than 5 GetRecords calls per second per shard (plus one to start each shard).
        expect(stats.requests["GetRecords"] ?? 0).toBeLessThanOrEqual(Math.ceil(elapsedSeconds * 5 * 2) + 2)
      }))
  })

  describe("back-pressure", () => {
    it.effect("a stuck processor stops the fetching of its own shard after a few batches, and other shards go on", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const repository = yield* LeaseRepository.makeMemory()
        const [stuck, free] = [shards[0]!, shards[1]!]
        yield* put(
          streamName,
          Array.from(
            { length: 60 },
            (_, i) => ({ partitionKey: "a", explicitHashKey: stuck.startingHashKey, data: `stuck-${i}` })
          )
        )
        const never = yield* Deferred.make<void>()
        const worker = yield* startWorker({
          stream: streamName,
          workerId: "w",
          repository,
          fetch: { batchSize: 5, bufferedBatches: 2 },
          handler: (record) => record.shardId === stuck.shardId ? Deferred.await(never) : Effect.void
        })
        yield* put(
          streamName,
          Array.from(
            { length: 20 },
            (_, i) => ({ partitionKey: "b", explicitHashKey: free.startingHashKey, data: `free-${i}` })
          )
        )
        yield* eventually(Effect.sync(() => worker.seen.length === 20), "20 seconds", "the other shard's records")
        yield* Effect.sleep("1 second")
        const polled = worker.events.filter((e) =>
          e._tag === "PollComplete" && e.shardId === stuck.shardId && e.records > 0
        )
        // 12 batches are waiting; only the buffered ones (and those in the pipeline) were fetched.
        expect(polled.length).toBeGreaterThan(0)
        expect(polled.length).toBeLessThanOrEqual(6)
        // The free shard went on, in order, while the stuck one held its buffer.
        expect(worker.seen.map((r) => r.data)).toEqual(Array.from({ length: 20 }, (_, i) => `free-${i}`))
        yield* worker.stop
      }))
  })
})
