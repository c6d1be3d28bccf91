import { Consumer, type ConsumerRecord, ErrorHandling, LeaseRepository } from "@effect-kinesis/consumer"
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope, Stream } from "effect"
import { eventually, KinesisLive, put, shardedStreamOptions, startWorker } from "./fixtures.ts"

const records = (n: number) => Array.from({ length: n }, (_, i) => ({ partitionKey: "k", data: `r${i}` }))

// A handler slow enough for a stop to arrive while it runs: it notes when it starts and when its
// effect completes (the completion is what must not be done twice).
const slowHandler = (millis: number) => {
  const started: Array<string> = []
  const completed: Array<string> = []
  const handler = (record: ConsumerRecord.ConsumerRecord<string>) =>
    Effect.sync(() => started.push(record.data)).pipe(
      Effect.andThen(Effect.sleep(millis)),
      Effect.andThen(Effect.sync(() => completed.push(record.data)))
    )
  return { started, completed, handler }
}

const count = (values: ReadonlyArray<string>, value: string) => values.filter((v) => v === value).length

layer(KinesisLive, { excludeTestServices: true, timeout: "90 seconds" })("Graceful shutdown", (it) => {
  describe("consumeWith", () => {
    it.effect("a stop lets the running handler finish, checkpoints its record, then releases; a worker waiting meanwhile (drain longer than the lease expiry) does not see it again", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, records(4))
        // 4 s per record, twice the 2 s lease expiry: the lease must stay renewed while it drains.
        const slow = slowHandler(4000)
        const first = yield* startWorker({
          stream: streamName,
          workerId: "first",
          repository,
          handler: slow.handler,
          checkpointBatchSize: 100_000,
          checkpointInterval: "1 hour"
        })
        yield* eventually(Effect.sync(() => slow.started.length === 2), "30 seconds", "the second record started")
        const fast = slowHandler(0)
        const second = yield* startWorker({ stream: streamName, workerId: "second", repository, handler: fast.handler })
        const stopAt = first.events.length
        yield* first.stop

        expect(slow.completed).toEqual(["r0", "r1"])
        // No record is started once the stop arrived.
        expect(slow.started).toEqual(["r0", "r1"])
        expect(first.events.slice(stopAt).filter((e) => e._tag === "LeaseRenewed").length).toBeGreaterThan(0)
        const [lease] = yield* repository.list
        expect(lease!.checkpoint).toEqual(ExtendedSequenceNumber.make(first.seen[1]!.sequenceNumber, 0))
        expect(first.events.filter((e) => e._tag === "LeaseLost")).toEqual([])

        yield* eventually(Effect.sync(() => fast.completed.length >= 2), "30 seconds", "the rest by the second worker")
        yield* Effect.sleep("1 second")
        yield* second.stop
        const all = [...slow.completed, ...fast.completed]
        for (const record of records(4)) expect(count(all, record.data)).toBe(1)
      }))

    it.effect("past shutdownGracePeriod the handler is interrupted and its record is not checkpointed", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, records(3))
        const slow = slowHandler(1000)
        const stuck = (record: ConsumerRecord.ConsumerRecord<string>) =>
          record.data === "r1" ? Effect.andThen(slow.handler(record), Effect.sleep("1 hour")) : slow.handler(record)
        const first = yield* startWorker({
          stream: streamName,
          workerId: "first",
          repository,
          handler: stuck,
          shutdownGracePeriod: "1 second",
          checkpointBatchSize: 100_000,
          checkpointInterval: "1 hour"
        })
        yield* eventually(Effect.sync(() => slow.started.length === 2), "30 seconds", "the second record started")
        yield* first.stop
        expect(first.seen.map((r) => r.data)).toEqual(["r0"])
        const [lease] = yield* repository.list
        expect(lease!.leaseOwner).toBeUndefined()
        expect(lease!.checkpoint).toEqual(ExtendedSequenceNumber.make(first.seen[0]!.sequenceNumber, 0))

        const second = yield* startWorker({ stream: streamName, workerId: "second", repository })
        yield* eventually(Effect.sync(() => second.seen.length >= 2), "30 seconds", "the rest")
        expect(second.seen.map((r) => r.data)).toEqual(["r1", "r2"])
      }))
  })

  describe("consumeWith with an error handling mode", () => {
    it.effect("a stop lets the record being handled finish and checkpoints it", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, records(4))
        const slow = slowHandler(1500)
        const first = yield* startWorker({
          stream: streamName,
          workerId: "first",
          repository,
          handler: slow.handler,
          errorHandling: { mode: ErrorHandling.retryAndSkip(2) },
          checkpointBatchSize: 100_000,
          checkpointInterval: "1 hour"
        })
        yield* eventually(Effect.sync(() => slow.started.length === 2), "30 seconds", "the second record started")
        yield* first.stop
        expect(slow.completed).toEqual(["r0", "r1"])
        expect(slow.started).toEqual(["r0", "r1"])
        const [lease] = yield* repository.list
        expect(lease!.leaseOwner).toBeUndefined()
        expect(lease!.checkpoint).toEqual(ExtendedSequenceNumber.make(first.seen[1]!.sequenceNumber, 0))
      }))
  })

  describe("shardedStream with stageOnSuccess", () => {
    it.effect("a stop lets the running effect finish and checkpoints its record; a restart does not see it again", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, records(4))
        const slow = slowHandler(1500)
        const run = (handler: (record: ConsumerRecord.ConsumerRecord<string>) => Effect.Effect<unknown>) =>
          Consumer.shardedStream(shardedStreamOptions(streamName)).pipe(
            Stream.flatMap((shard) =>
              shard.records.pipe(
                Stream.mapEffect((record) => shard.checkpointer.stageOnSuccess(handler(record), record)),
                shard.checkpointer.checkpointBatched({ records: 1000, interval: "1 hour" })
              ), { concurrency: "unbounded" }),
            Stream.runDrain,
            Effect.provide(Consumer.layer),
            Effect.provideService(LeaseRepository.LeaseRepository, repository),
            Effect.forkScoped
          )
        const first = yield* run(slow.handler)
        yield* eventually(Effect.sync(() => slow.started.length === 2), "30 seconds", "the second record started")
        yield* Fiber.interrupt(first)
        expect(slow.completed).toEqual(["r0", "r1"])
        expect(slow.started).toEqual(["r0", "r1"])
        const [lease] = yield* repository.list
        expect(lease!.leaseOwner).toBeUndefined()

        const fast = slowHandler(0)
        const second = yield* run(fast.handler)
        yield* eventually(Effect.sync(() => fast.completed.length >= 2), "30 seconds", "the rest")
        yield* Effect.sleep("1 second")
        yield* Fiber.interrupt(second)
        expect(fast.completed).toEqual(["r2", "r3"])
      }))
  })

  describe("shard streams run outside the shard list's fiber", () => {
    it.effect("stopping the shard list lets a handler longer than the lease expiry finish and checkpoints it before the release", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, records(4))
        const slow = slowHandler(4000)
        // Each shard processed in a fiber of its own scope: stopping the shard list does not
        // interrupt it, only ends its records; the lease coordinator's shutdown must wait for it.
        const shards = yield* Scope.make()
        const first = yield* Consumer.shardedStream(shardedStreamOptions(streamName)).pipe(
          Stream.runForEach((shard) =>
            shard.records.pipe(
              Stream.mapEffect((record) => shard.checkpointer.stageOnSuccess(slow.handler(record), record)),
              shard.checkpointer.checkpointBatched({ records: 1000, interval: "1 hour" }),
              Stream.runDrain,
              Effect.forkIn(shards)
            )
          ),
          Effect.provide(Consumer.layer),
          Effect.provideService(LeaseRepository.LeaseRepository, repository),
          Effect.forkScoped
        )
        yield* eventually(Effect.sync(() => slow.started.length === 2), "30 seconds", "the second record started")
        yield* Fiber.interrupt(first)
        expect(slow.completed).toEqual(["r0", "r1"])
        expect(slow.started).toEqual(["r0", "r1"])
        const [lease] = yield* repository.list
        expect(lease!.leaseOwner).toBeUndefined()
        expect(lease!.checkpoint.sequenceNumber).not.toBe(ExtendedSequenceNumber.trimHorizon.sequenceNumber)
        yield* Scope.close(shards, Exit.void)

        const fast = slowHandler(0)
        const second = yield* startWorker({ stream: streamName, workerId: "second", repository, handler: fast.handler })
        yield* eventually(Effect.sync(() => fast.completed.length >= 2), "30 seconds", "the rest")
        yield* Effect.sleep("1 second")
        yield* second.stop
        expect(fast.completed).toEqual(["r2", "r3"])
      }))
  })
})
