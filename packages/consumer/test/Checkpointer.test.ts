import { Consumer, type ConsumerRecord, LeaseRepository } from "@effect-kinesis/consumer"
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Stream } from "effect"
import { eventually, KinesisLive, put, shardedStreamOptions } from "./fixtures.ts"

const options = shardedStreamOptions

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("Checkpointer", (it) => {
  describe("shardedStream", () => {
    it.effect("checkpointNow writes up to and including the record at once, and positions never move back", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, Array.from({ length: 5 }, (_, i) => ({ partitionKey: "k", data: `r${i}` })))
        const seen: Array<ConsumerRecord.ConsumerRecord<string>> = []
        const written: Array<ExtendedSequenceNumber.ExtendedSequenceNumber> = []
        yield* Consumer.shardedStream(options(streamName)).pipe(
          Stream.flatMap((shard) =>
            shard.records.pipe(
              Stream.take(5),
              Stream.tap((record) =>
                Effect.gen(function*() {
                  seen.push(record)
                  if (record.data === "r2") {
                    yield* shard.checkpointer.checkpointNow(record)
                    written.push(...(yield* repository.list).map((l) => l.checkpoint))
                    written.push(yield* shard.checkpointer.lastCheckpoint)
                  }
                  // Staging an earlier record after a later one changes nothing.
                  if (record.data === "r3") yield* shard.checkpointer.stage(seen[0]!)
                })
              )
            )
          ),
          Stream.take(5),
          Stream.runDrain,
          Effect.provide(Consumer.layer),
          Effect.provideService(LeaseRepository.LeaseRepository, repository)
        )
        const atR2 = ExtendedSequenceNumber.make(seen[2]!.sequenceNumber, 0)
        expect(written).toEqual([atR2, atR2])
        const [lease] = yield* repository.list
        expect(lease!.checkpoint).toEqual(atR2)
      }))

    it.effect("on shutdown each shard stream writes what it staged before its lease is released", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const memory = yield* LeaseRepository.makeMemory()
        // A store with latency, like a real one: writes take a while, so a release and a final
        // checkpoint that are not ordered interleave.
        const repository = LeaseRepository.LeaseRepository.of({
          ...memory,
          checkpoint: (lease, position, childShardIds) =>
            Effect.delay(memory.checkpoint(lease, position, childShardIds), "20 millis"),
          release: (lease) => Effect.delay(memory.release(lease), "5 millis")
        })
        // Shutting down races the coordinator's release against the shard streams' final
        // checkpoints; several rounds give a wrong order the chance to show.
        for (let round = 0; round < 6; round++) {
          yield* put(
            streamName,
            Array.from({ length: 10 }, (_, i) => ({ partitionKey: `key-${i % 4}`, data: `${round}:${i}` }))
          )
          const seen: Array<ConsumerRecord.ConsumerRecord<string>> = []
          // Records are staged but never checkpointed while running: only the shutdown writes them.
          const fiber = yield* Consumer.shardedStream(options(streamName)).pipe(
            Stream.flatMap((shard) =>
              shard.records.pipe(
                Stream.tap((record) =>
                  Effect.andThen(shard.checkpointer.stage(record), Effect.sync(() => seen.push(record)))
                )
              ), { concurrency: "unbounded" }),
            // Downstream work in progress when the shutdown comes.
            Stream.tap(() => Effect.sleep("20 millis")),
            Stream.runDrain,
            Effect.provide(Consumer.layer),
            Effect.provideService(LeaseRepository.LeaseRepository, repository),
            Effect.forkScoped
          )
          yield* eventually(Effect.sync(() => seen.length >= 10), "20 seconds", `round ${round}: 10 records`)
          yield* Fiber.interrupt(fiber)

          expect(seen.map((r) => r.data).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `${round}:${i}`))
          const leases = yield* repository.list
          expect(leases).toHaveLength(2)
          for (const lease of leases) {
            expect(lease.leaseOwner).toBeUndefined()
            const last = seen.filter((r) => r.shardId === lease.leaseKey).at(-1)
            if (last !== undefined) {
              expect(lease.checkpoint).toEqual(ExtendedSequenceNumber.make(last.sequenceNumber, 0))
            }
          }
        }
      }))

    it.effect("checkpointBatched ends the shard's stream quietly when another worker takes the lease", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        const ended = yield* Deferred.make<Exit.Exit<unknown, unknown>>()
        const consumer = yield* Consumer.shardedStream(options(streamName)).pipe(
          Stream.flatMap((shard) =>
            shard.records.pipe(
              Stream.tap((record) => shard.checkpointer.stage(record)),
              shard.checkpointer.checkpointBatched({ records: 1, interval: "100 millis" }),
              Stream.onExit((exit) => Deferred.succeed(ended, exit))
            ), { concurrency: "unbounded" }),
          Stream.runDrain,
          Effect.provide(Consumer.layer),
          Effect.provideService(LeaseRepository.LeaseRepository, repository),
          Effect.forkScoped
        )
        yield* put(streamName, [{ partitionKey: "k", data: "before" }])
        yield* eventually(
          Effect.map(
            repository.list,
            ([lease]) => lease !== undefined && !ExtendedSequenceNumber.isSentinel(lease.checkpoint)
          ),
          "20 seconds",
          "a checkpoint"
        )
        const [lease] = yield* repository.list
        yield* repository.take(lease!, "thief")

        const exit = yield* Deferred.await(ended)
        expect(Exit.isSuccess(exit)).toBe(true)
        expect(consumer.pollUnsafe()).toBeUndefined()
        const [after] = yield* repository.list
        expect(after!.leaseOwner).toBe("thief")
        expect(after!.checkpoint).toEqual(lease!.checkpoint)
      }))
  })
})
