import { LeaseRepository } from "@effect-kinesis/consumer"
import { Client, ExtendedSequenceNumber } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Stream } from "effect"
import { startFanOutWorker } from "./fanOutFixtures.ts"
import { eventually, KinesisLive, put } from "./fixtures.ts"

const records = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, i) => ({ partitionKey: `key-${(from + i) % 12}`, data: `r${from + i}` }))

const inKeyOrder = (seen: ReadonlyArray<{ readonly partitionKey: string; readonly data: string }>) => {
  const keys = new Map<string, Array<number>>()
  for (const record of seen) {
    keys.set(record.partitionKey, [...(keys.get(record.partitionKey) ?? []), Number(record.data.slice(1))])
  }
  return [...keys.values()].every((numbers) => numbers.every((n, i) => i === 0 || numbers[i - 1]! < n))
}

const consumersOf = (stream: string) =>
  Effect.flatMap(Client.Client, (client) => Stream.runCollect(client.listStreamConsumers(stream)))

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("Consumer (enhanced fan-out)", (it) => {
  describe("one worker", () => {
    it.effect("delivers every record of every shard in per-key order, checkpoints on shutdown, and a restart resumes after it", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 3 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, records(0, 60))

        const first = yield* startFanOutWorker({
          stream: streamName,
          workerId: "first",
          repository,
          checkpointBatchSize: 100_000,
          checkpointInterval: "1 hour"
        })
        yield* eventually(Effect.sync(() => first.seen.length >= 60), "30 seconds", "60 records")
        yield* first.stop
        expect(first.seen.map((r) => r.data).sort()).toEqual(records(0, 60).map((r) => r.data).sort())
        expect(inKeyOrder(first.seen)).toBe(true)

        const leases = yield* repository.list
        expect(leases).toHaveLength(3)
        for (const lease of leases) {
          expect(lease.leaseOwner).toBeUndefined()
          const last = first.seen.filter((r) => r.shardId === lease.leaseKey).at(-1)
          if (last === undefined) expect(lease.checkpoint).toEqual(ExtendedSequenceNumber.trimHorizon)
          else expect(lease.checkpoint.sequenceNumber).toBe(last.sequenceNumber)
        }

        // Restarted at once: Kinesis refuses a renewal within 5 seconds, which the worker waits out.
        yield* put(streamName, records(60, 90))
        const second = yield* startFanOutWorker({ stream: streamName, workerId: "second", repository })
        yield* eventually(Effect.sync(() => second.seen.length >= 30), "30 seconds", "30 new records")
        yield* Effect.sleep("1 second")
        yield* second.stop
        expect(second.seen.map((r) => r.data).sort()).toEqual(records(60, 90).map((r) => r.data).sort())
        expect(inKeyOrder(second.seen)).toBe(true)
        // The stream consumer outlives its workers unless asked otherwise.
        expect((yield* consumersOf(streamName)).map((c) => [c.ConsumerName, c.ConsumerStatus])).toEqual([
          ["test", "ACTIVE"]
        ])
      }))
  })

  describe("starting position and failures", () => {
    it.effect("with initial position LATEST, delivers only records written after the worker subscribed", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, records(0, 20))
        const worker = yield* startFanOutWorker({
          stream: streamName,
          workerId: "w",
          repository,
          initialPosition: "LATEST"
        })
        yield* eventually(
          Effect.sync(() =>
            new Set(worker.events.flatMap((e) => e._tag === "PollComplete" ? [e.shardId] : [])).size === 2
          ),
          "20 seconds",
          "both shards subscribed"
        )
        yield* put(streamName, records(20, 40))
        yield* eventually(Effect.sync(() => worker.seen.length >= 20), "20 seconds", "20 new records")
        yield* Effect.sleep("500 millis")
        expect(worker.seen.map((r) => r.data).sort()).toEqual(records(20, 40).map((r) => r.data).sort())
      }))

    it.effect("fails with a typed error when the stream is deleted, instead of resubscribing forever", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const repository = yield* LeaseRepository.makeMemory()
        const worker = yield* startFanOutWorker({ stream: streamName, workerId: "w", repository })
        yield* eventually(Effect.sync(() => worker.held().size === 2), "20 seconds", "both shards held")
        yield* StreamFixtures.deleteStream(streamName)
        const exit = yield* Fiber.await(worker.fiber).pipe(Effect.timeout("30 seconds"))
        expect(Exit.isFailure(exit)).toBe(true)
        expect(Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined).toMatchObject({ _tag: "StreamNotFound" })
      }))
  })

  describe("stream consumers", () => {
    it.effect("the workers of one application share one stream consumer, and two applications each receive every record", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const billingLeases = yield* LeaseRepository.makeMemory()
        const auditLeases = yield* LeaseRepository.makeMemory()
        const billing = yield* Effect.forEach(
          ["b1", "b2", "b3"],
          (workerId) =>
            startFanOutWorker({ stream: streamName, workerId, repository: billingLeases, applicationName: "billing" }),
          { concurrency: "unbounded" }
        )
        const audit = yield* startFanOutWorker({
          stream: streamName,
          workerId: "a1",
          repository: auditLeases,
          applicationName: "audit"
        })
        yield* put(streamName, records(0, 40))
        const expected = records(0, 40).map((r) => r.data).sort()
        yield* eventually(
          Effect.sync(() => billing.flatMap((w) => w.seen).length >= 40 && audit.seen.length >= 40),
          "30 seconds",
          "both applications receiving all 40 records"
        )
        expect(billing.flatMap((w) => w.seen.map((r) => r.data)).sort()).toEqual(expected)
        expect(audit.seen.map((r) => r.data).sort()).toEqual(expected)
        const consumers = yield* consumersOf(streamName)
        expect(consumers.map((c) => c.ConsumerName).sort()).toEqual(["audit", "billing"])
      }))

    it.effect("with deregisterOnShutdown, the stream consumer is deregistered when the worker stops", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        const worker = yield* startFanOutWorker({
          stream: streamName,
          workerId: "w",
          repository,
          applicationName: "short-lived",
          enhancedFanOut: { deregisterOnShutdown: true }
        })
        yield* eventually(Effect.sync(() => worker.held().size === 1), "20 seconds", "the shard held")
        expect((yield* consumersOf(streamName)).map((c) => c.ConsumerName)).toEqual(["short-lived"])
        yield* worker.stop
        yield* eventually(
          Effect.map(consumersOf(streamName), (consumers) => consumers.every((c) => c.ConsumerStatus === "DELETING")),
          "10 seconds",
          "the stream consumer deregistered"
        )
      }))
  })
})
