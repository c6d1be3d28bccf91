import { Consumer, DiagnosticEvent, LeaseRepository } from "@effect-kinesis/consumer"
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Metric, Stream } from "effect"
import { eventually, KinesisLive, put, shardedStreamOptions, startWorker } from "./fixtures.ts"

const records = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, i) => ({ partitionKey: `key-${(from + i) % 12}`, data: `r${from + i}` }))

const byKey = (seen: ReadonlyArray<{ readonly partitionKey: string; readonly data: string }>) => {
  const keys = new Map<string, Array<number>>()
  for (const record of seen) {
    const list = keys.get(record.partitionKey) ?? []
    list.push(Number(record.data.slice(1)))
    keys.set(record.partitionKey, list)
  }
  return keys
}

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("Consumer (one worker)", (it) => {
  describe("consumeWith", () => {
    it.effect("delivers every record of every shard in per-key order, checkpoints on shutdown, and a restart resumes after it", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 3 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, records(0, 60))

        // Checkpoints are only ever written at shutdown: batches are larger and longer than the test.
        const first = yield* startWorker({
          stream: streamName,
          workerId: "first",
          repository,
          checkpointBatchSize: 100_000,
          checkpointInterval: "1 hour"
        })
        yield* eventually(Effect.sync(() => first.seen.length >= 60), "30 seconds", "60 records")
        yield* first.stop

        expect(first.seen.map((r) => r.data).sort()).toEqual(records(0, 60).map((r) => r.data).sort())
        for (const [, numbers] of byKey(first.seen)) expect(numbers).toEqual([...numbers].sort((a, b) => a - b))

        const leases = yield* repository.list
        expect(leases).toHaveLength(3)
        for (const lease of leases) {
          expect(lease.leaseOwner).toBeUndefined()
          const last = first.seen.filter((r) => r.shardId === lease.leaseKey).at(-1)
          if (last === undefined) expect(lease.checkpoint).toEqual(ExtendedSequenceNumber.trimHorizon)
          else expect(lease.checkpoint.sequenceNumber).toBe(last.sequenceNumber)
        }

        // The same facts are in the metrics.
        const taken = yield* Metric.value(
          Metric.withAttributes(DiagnosticEvent.metrics.takenLeases, { worker: "first" })
        )
        expect(taken.count).toBe(3)
        const released = yield* Metric.value(
          Metric.withAttributes(DiagnosticEvent.metrics.releasedLeases, { worker: "first" })
        )
        expect(released.count).toBe(3)

        yield* put(streamName, records(60, 90))
        const second = yield* startWorker({ stream: streamName, workerId: "second", repository })
        yield* eventually(Effect.sync(() => second.seen.length >= 30), "30 seconds", "30 new records")
        // Give a wrongly re-delivered old record the chance to show up before comparing.
        yield* Effect.sleep("1 second")
        yield* second.stop
        expect(second.seen.map((r) => r.data).sort()).toEqual(records(60, 90).map((r) => r.data).sort())
      }))

    it.effect("with initial position LATEST, delivers only records written after the worker started", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, records(0, 20))
        const worker = yield* startWorker({ stream: streamName, workerId: "w", repository, initialPosition: "LATEST" })
        yield* eventually(
          Effect.sync(() => worker.events.filter((e) => e._tag === "PollComplete").length >= 2),
          "20 seconds",
          "both shards polled"
        )
        yield* put(streamName, records(20, 40))
        yield* eventually(Effect.sync(() => worker.seen.length >= 20), "20 seconds", "20 new records")
        yield* Effect.sleep("500 millis")
        expect(worker.seen.map((r) => r.data).sort()).toEqual(records(20, 40).map((r) => r.data).sort())
      }))

    it.effect("fails with a typed error when the stream is deleted, instead of retrying forever", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const repository = yield* LeaseRepository.makeMemory()
        const worker = yield* startWorker({ stream: streamName, workerId: "w", repository })
        yield* eventually(Effect.sync(() => worker.held().size === 2), "20 seconds", "both shards held")
        yield* StreamFixtures.deleteStream(streamName)
        const exit = yield* Fiber.await(worker.fiber).pipe(Effect.timeout("30 seconds"))
        expect(Exit.isFailure(exit)).toBe(true)
        const error = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
        expect(error).toMatchObject({ _tag: "StreamNotFound" })
      }))
  })

  describe("shardedStream", () => {
    it.effect("a second reader of a shard while one runs is a defect, not a second fetcher delivering every record twice", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, records(0, 5))
        const exit = yield* Consumer.shardedStream(shardedStreamOptions(streamName)).pipe(
          Stream.take(1),
          Stream.flatMap((shard) =>
            Stream.merge(
              shard.records,
              Stream.drain(Stream.fromEffect(Effect.sleep("200 millis"))).pipe(
                Stream.concat(shard.results)
              )
            )
          ),
          Stream.runDrain,
          Effect.provide(Consumer.layer),
          Effect.provideService(LeaseRepository.LeaseRepository, repository),
          Effect.timeout("20 seconds"),
          Effect.exit
        )
        expect(Exit.isFailure(exit) && Cause.hasDies(exit.cause)).toBe(true)
        expect(String(Exit.isFailure(exit) ? Cause.squash(exit.cause) : "")).toContain("already being read")
      }))
  })
})
