import {
  BatchProcessing,
  Consumer,
  type ConsumerRecord,
  type FailureDestination,
  LeaseRepository
} from "@effect-kinesis/consumer"
import { Aggregation, Client, ExtendedSequenceNumber } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Clock, Deferred, Effect, Fiber, Schedule, Sink } from "effect"
import { shiftedClock } from "./clock.ts"
import { eventually, KinesisLive, put, shardedStreamOptions } from "./fixtures.ts"

type Record = ConsumerRecord.ConsumerRecord<string>
type Failed = FailureDestination.FailedRecord<string, Error>

// Not valid UTF-8: `Serde.string` rejects it.
const undecodable = new Uint8Array([0xff, 0xfe, 0xfd])

const checkpointOf = (repository: LeaseRepository.LeaseRepository["Service"]) =>
  Effect.map(repository.list, ([lease]) => lease?.checkpoint)

const isAt = (position: ExtendedSequenceNumber.ExtendedSequenceNumber | undefined, record: Record) =>
  position !== undefined &&
  ExtendedSequenceNumber.compare(position, ExtendedSequenceNumber.make(record.sequenceNumber, record.subSequenceNumber))
    === 0

/**
 * `consumeBatchesWith` in the background on a one-shard stream, recording every call of the
 * handler (the records it was given), every record it processed, and what reached the destination.
 */
const run = (
  streamName: string,
  handler: (
    records: ReadonlyArray<Record>,
    call: number
  ) => Effect.Effect<void | BatchProcessing.BatchItemFailures<Error>, Error>,
  options:
    & BatchProcessing.Options<string, Error, never>
    & Pick<BatchProcessing.ConsumeBatchesOptions<string, Error, never>, "onDiagnostic">
    & { readonly applicationName?: string },
  repository: LeaseRepository.LeaseRepository["Service"]
) =>
  Effect.gen(function*() {
    const calls: Array<ReadonlyArray<Record>> = []
    const destination: Array<Failed> = []
    const fiber = yield* BatchProcessing.consumeBatchesWith(
      (records) =>
        Effect.suspend(() => {
          calls.push(records)
          return handler(records, calls.length)
        }),
      {
        ...shardedStreamOptions(streamName),
        checkpointInterval: "100 millis",
        retrySchedule: Schedule.spaced("10 millis"),
        onFailure: (failed) => Effect.sync(() => destination.push(failed)),
        ...options
      }
    ).pipe(
      Effect.provide(Consumer.layer),
      Effect.provideService(LeaseRepository.LeaseRepository, repository),
      Effect.forkScoped
    )
    return { calls, destination, fiber }
  })

const data = (records: ReadonlyArray<Record>) => records.map((r) => r.data)

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("BatchProcessing", (it) => {
  describe("partial batch failure", () => {
    it.effect("the checkpoint advances up to the first failed record, the batch resumes from it, in order, and nothing is lost", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, Array.from({ length: 10 }, (_, i) => ({ partitionKey: "k", data: `r${i}` })))
        const processed: Array<string> = []
        let firstBatch: ReadonlyArray<Record> = []
        const { calls, destination, fiber } = yield* run(
          streamName,
          (records, call) =>
            Effect.gen(function*() {
              if (call === 1) {
                firstBatch = records
                // r3 and r6 fail on the first call; the first of them decides where it resumes.
                const failing = records.filter((r) => r.data === "r6" || r.data === "r3")
                for (const r of records) if (!failing.includes(r)) processed.push(r.data)
                return BatchProcessing.itemFailures(failing.map((record) => ({ record, error: new Error("busy") })))
              }
              // By the retry, the checkpoint holds the records before the first failure.
              yield* eventually(
                Effect.map(checkpointOf(repository), (c) => isAt(c, firstBatch[2]!)),
                "10 seconds",
                "the checkpoint at r2"
              )
              for (const r of records) processed.push(r.data)
            }),
          { batchSize: 100 },
          repository
        )
        yield* eventually(
          Effect.map(checkpointOf(repository), (c) => calls.length > 0 && isAt(c, calls[0]!.at(-1)!)),
          "20 seconds",
          "the checkpoint past the batch"
        )
        yield* Fiber.interrupt(fiber)

        expect(calls.map(data)).toEqual([
          Array.from({ length: 10 }, (_, i) => `r${i}`),
          Array.from({ length: 7 }, (_, i) => `r${i + 3}`)
        ])
        expect(new Set(processed)).toEqual(new Set(Array.from({ length: 10 }, (_, i) => `r${i}`)))
        expect(destination).toEqual([])
      }))
  })

  describe("batchSize and batchWindow", () => {
    it.effect("without a window a batch is what was fetched, cut at batchSize; with one, records arriving within it join the batch", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        yield* put(streamName, Array.from({ length: 7 }, (_, i) => ({ partitionKey: "k", data: `r${i}` })))
        const cut = yield* run(streamName, () => Effect.void, { batchSize: 3 }, yield* LeaseRepository.makeMemory())
        yield* eventually(Effect.sync(() => cut.calls.flat().length === 7), "20 seconds", "7 records")
        yield* Fiber.interrupt(cut.fiber)
        expect(cut.calls.map(data)).toEqual([["r0", "r1", "r2"], ["r3", "r4", "r5"], ["r6"]])

        // The first record opens a 3 s window; two more written a second later join its batch.
        const other = yield* StreamFixtures.stream({ shardCount: 1 })
        yield* put(other.streamName, [{ partitionKey: "k", data: "w0" }])
        const { calls, fiber } = yield* run(
          other.streamName,
          () => Effect.void,
          { batchSize: 100, batchWindow: "3 seconds" },
          yield* LeaseRepository.makeMemory()
        )
        yield* Effect.sleep("1 second")
        yield* put(other.streamName, [{ partitionKey: "k", data: "w1" }, { partitionKey: "k", data: "w2" }])
        yield* eventually(Effect.sync(() => calls.flat().length === 3), "20 seconds", "3 records")
        yield* Fiber.interrupt(fiber)
        expect(calls.map(data)).toEqual([["w0", "w1", "w2"]])
      }))
  })

  describe("bisectOnError", () => {
    it.effect("isolates one poison record among 1000: only it reaches the destination, the 999 others are processed once, the checkpoint ends past all", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, Array.from({ length: 1000 }, (_, i) => ({ partitionKey: `k${i % 7}`, data: `r${i}` })))
        const processed = new Map<string, number>()
        const { calls, destination, fiber } = yield* run(
          streamName,
          (records) =>
            records.some((r) => r.data === "r637")
              ? Effect.fail(new Error("poison"))
              : Effect.sync(() => {
                for (const r of records) processed.set(r.data, (processed.get(r.data) ?? 0) + 1)
              }),
          { batchSize: 1000, bisectOnError: true, maxRetryAttempts: 2 },
          repository
        )
        yield* eventually(
          Effect.sync(() => processed.size === 999 && destination.length > 0),
          "20 seconds",
          "999 processed"
        )
        const last = calls.flat().find((r) => r.data === "r999")!
        yield* eventually(
          Effect.map(checkpointOf(repository), (c) => isAt(c, last)),
          "10 seconds",
          "the checkpoint at r999"
        )
        yield* Fiber.interrupt(fiber)

        expect(destination.map((f) => [f._tag, f._tag === "Undecodable" ? undefined : f.record.data])).toEqual([
          ["RetriesExhausted", "r637"]
        ])
        const poison = destination[0]!
        expect(poison._tag === "RetriesExhausted" && poison.error.message).toBe("poison")
        // Alone, it had its first attempt and the 2 retries.
        expect(calls.filter((c) => c.length === 1 && c[0]!.data === "r637")).toHaveLength(3)
        expect([...processed.values()].every((n) => n === 1)).toBe(true)
        expect(processed.has("r637")).toBe(false)
      }))
  })

  describe("maxRecordAge", () => {
    it.effect("records older than it go to the destination unprocessed; a record that ages while retried goes there after its last attempt", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        yield* put(streamName, [
          { partitionKey: "k", data: "ok-1" },
          { partitionKey: "k", data: "bad" },
          { partitionKey: "k", data: "ok-2" }
        ])

        // An hour ahead: every record is more than 30 minutes old.
        const old = yield* LeaseRepository.makeMemory()
        const first = yield* run(streamName, () => Effect.void, { maxRecordAge: "30 minutes" }, old).pipe(
          Effect.provideService(Clock.Clock, yield* shiftedClock(() => 3_600_000))
        )
        yield* eventually(Effect.sync(() => first.destination.length === 3), "20 seconds", "3 records too old")
        yield* eventually(
          Effect.map(
            checkpointOf(old),
            (c) => isAt(c, (first.destination[2] as FailureDestination.RecordTooOld<string, Error>).record)
          ),
          "10 seconds",
          "the checkpoint past them"
        )
        yield* Fiber.interrupt(first.fiber)
        expect(first.calls).toEqual([])
        expect(first.destination.map((f) => [f._tag, f.attempts, f._tag === "Undecodable" ? undefined : f.error]))
          .toEqual([
            ["RecordTooOld", 0, undefined],
            ["RecordTooOld", 0, undefined],
            ["RecordTooOld", 0, undefined]
          ])

        // On time, until the third attempt of "bad" moves the clock two hours ahead.
        let offset = 0
        const aging = yield* LeaseRepository.makeMemory()
        const second = yield* run(
          streamName,
          (records, call) =>
            Effect.sync(() => {
              if (call === 3) offset = 7_200_000
              return BatchProcessing.itemFailures(
                records.filter((r) => r.data === "bad").map((record) => ({ record, error: new Error(`bad ${call}`) }))
              )
            }),
          { maxRecordAge: "1 hour", applicationName: "aging" },
          aging
        ).pipe(Effect.provideService(Clock.Clock, yield* shiftedClock(() => offset)))
        yield* eventually(Effect.sync(() => second.destination.length === 2), "20 seconds", "2 records aged")
        yield* Fiber.interrupt(second.fiber)
        expect(second.calls.map(data)).toEqual([["ok-1", "bad", "ok-2"], ["bad", "ok-2"], ["bad", "ok-2"]])
        expect(
          second.destination.map((f) => [f._tag, f.attempts, f._tag === "Undecodable" ? undefined : f.error?.message])
        ).toEqual([
          ["RecordTooOld", 3, "bad 3"],
          // Retried with "bad" (Lambda's semantics: the records after the first failure too).
          ["RecordTooOld", 3, undefined]
        ])
      }))
  })

  describe("maxRetryAttempts and the destination", () => {
    it.effect("a failing record has exactly 1 + maxRetryAttempts attempts, then the destination gets exactly the failed records, with error and position; undecodable ones without an attempt", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, [
          { partitionKey: "k", data: "ok-1" },
          { partitionKey: "k", data: "bad-1" },
          { partitionKey: "k", data: undecodable },
          { partitionKey: "k", data: "bad-2" },
          { partitionKey: "k", data: "ok-2" }
        ])
        const { calls, destination, fiber } = yield* run(
          streamName,
          (records, call) =>
            Effect.succeed(BatchProcessing.itemFailures(
              records.filter((r) => r.data.startsWith("bad")).map((record) => ({
                record,
                error: new Error(`${record.data} ${call}`)
              }))
            )),
          { maxRetryAttempts: 2 },
          repository
        )
        yield* eventually(Effect.sync(() => destination.length === 3), "20 seconds", "3 records given up on")
        const ok2 = calls.flat().find((r) => r.data === "ok-2")!
        yield* eventually(
          Effect.map(checkpointOf(repository), (c) => isAt(c, ok2)),
          "10 seconds",
          "the checkpoint at ok-2"
        )
        yield* Fiber.interrupt(fiber)

        // bad-1 fails 3 times; then the undecodable record; then bad-2 and ok-2 from a fresh count.
        expect(calls.map(data)).toEqual([
          ["ok-1", "bad-1"],
          ["bad-1"],
          ["bad-1"],
          ["bad-2", "ok-2"],
          ["bad-2", "ok-2"],
          ["bad-2", "ok-2"]
        ])
        const shardId = shards[0]!.shardId
        expect(destination.map((f) => ({
          _tag: f._tag,
          shardId: f.shardId,
          subSequenceNumber: f.subSequenceNumber,
          attempts: f.attempts,
          error: f._tag === "Undecodable" ? f.error._tag : f.error?.message
        }))).toEqual([
          { _tag: "RetriesExhausted", shardId, subSequenceNumber: 0, attempts: 3, error: "bad-1 3" },
          { _tag: "Undecodable", shardId, subSequenceNumber: 0, attempts: 0, error: "RecordDecodeFailed" },
          { _tag: "RetriesExhausted", shardId, subSequenceNumber: 0, attempts: 3, error: "bad-2 6" }
        ])
        const bad1 = destination[0] as FailureDestination.RetriesExhausted<string, Error>
        expect(bad1.sequenceNumber).toBe(calls[0]![1]!.sequenceNumber)
        expect(bad1.record.data).toBe("bad-1")
      }))

    it.effect("a batch failing as a whole sends all its records; a Sink destination receives them, and the checkpoint waits for it", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, [{ partitionKey: "k", data: "a" }, { partitionKey: "k", data: "b" }])
        const sunk: Array<Failed> = []
        const release = yield* Deferred.make<void>()
        let waiting = false
        const { calls, fiber } = yield* run(
          streamName,
          () => Effect.fail(new Error("down")),
          {
            maxRetryAttempts: 1,
            // Holds the first record until released.
            onFailure: Sink.forEach((failed: Failed) =>
              Effect.andThen(
                Effect.sync(() => {
                  waiting = true
                }),
                Effect.andThen(Deferred.await(release), Effect.sync(() => sunk.push(failed)))
              )
            )
          },
          repository
        )
        yield* eventually(Effect.sync(() => waiting), "20 seconds", "the destination called")
        // Several checkpoint intervals (100 ms): nothing given up on is checkpointed before delivered.
        yield* Effect.sleep("500 millis")
        const before = yield* checkpointOf(repository)
        yield* Deferred.succeed(release, undefined)
        yield* eventually(Effect.sync(() => sunk.length === 2), "20 seconds", "2 records given up on")
        yield* eventually(
          Effect.map(checkpointOf(repository), (c) => isAt(c, calls[0]![1]!)),
          "10 seconds",
          "checkpoint"
        )
        yield* Fiber.interrupt(fiber)
        expect(before === undefined || ExtendedSequenceNumber.isSentinel(before)).toBe(true)
        expect(calls.map(data)).toEqual([["a", "b"], ["a", "b"]])
        expect(sunk.map((f) => [f._tag, f.attempts, f._tag === "Undecodable" ? undefined : f.record.data])).toEqual([
          ["RetriesExhausted", 2, "a"],
          ["RetriesExhausted", 2, "b"]
        ])
      }))
  })

  describe("stopping", () => {
    it.effect("a stop lets the running batch finish and checkpoints it", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, [{ partitionKey: "k", data: "a" }, { partitionKey: "k", data: "b" }])
        const processed: Array<string> = []
        const { calls, fiber } = yield* run(
          streamName,
          (records) =>
            Effect.andThen(
              Effect.sleep("500 millis"),
              Effect.sync(() => {
                processed.push(...data(records))
              })
            ),
          {},
          repository
        )
        yield* eventually(Effect.sync(() => calls.length === 1), "20 seconds", "the batch started")
        yield* Fiber.interrupt(fiber)
        expect(processed).toEqual(["a", "b"])
        expect(isAt(yield* checkpointOf(repository), calls[0]![1]!)).toBe(true)
      }))

    it.effect("a stop starts no new attempt of a failing batch and leaves the checkpoint before it", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, [{ partitionKey: "k", data: "a" }])
        const { calls, destination, fiber } = yield* run(
          streamName,
          () => Effect.fail(new Error("down")),
          { retrySchedule: Schedule.spaced("50 millis") },
          repository
        )
        yield* eventually(Effect.sync(() => calls.length >= 2), "20 seconds", "retries")
        const before = calls.length
        // Within the 10 s grace period a retry loop left running would call it again ~200 times.
        yield* Fiber.interrupt(fiber)
        expect(calls.length).toBeLessThanOrEqual(before + 1)
        expect(destination).toEqual([])
        const checkpoint = yield* checkpointOf(repository)
        expect(checkpoint === undefined || ExtendedSequenceNumber.isSentinel(checkpoint)).toBe(true)
      }))
  })

  describe("a lost lease", () => {
    it.effect("starts no new attempt of a failing batch", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, [{ partitionKey: "k", data: "a" }])
        let lost = false
        const { calls, destination, fiber } = yield* run(
          streamName,
          () => Effect.fail(new Error("down")),
          {
            retrySchedule: Schedule.spaced("50 millis"),
            onDiagnostic: (event) =>
              Effect.sync(() => {
                if (event._tag === "LeaseLost") lost = true
              })
          },
          repository
        )
        yield* eventually(Effect.sync(() => calls.length >= 2), "20 seconds", "retries")
        const [lease] = yield* repository.list
        yield* repository.take(lease!, "thief")
        yield* eventually(Effect.sync(() => lost), "10 seconds", "the lease lost")
        const after = calls.length
        // Ten retry intervals: a retry loop left running would call it about ten times more.
        yield* Effect.sleep("500 millis")
        yield* Fiber.interrupt(fiber)
        expect(calls.length).toBeLessThanOrEqual(after + 1)
        expect(destination).toEqual([])
      }))
  })

  describe("KPL aggregates", () => {
    it.effect("one user record of an aggregate fails alone: the batch resumes at its sub-sequence number and only it reaches the destination", () =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        const aggregator = Aggregation.makeAggregator({ explicitHashKey: shards[0]!.startingHashKey })
        for (let i = 0; i < 6; i++) aggregator.add({ partitionKey: `k${i}`, data: new TextEncoder().encode(`u${i}`) })
        const built = aggregator.build()!
        const out = yield* client.putRecords(streamName, [
          { PartitionKey: built.partitionKey, ExplicitHashKey: built.explicitHashKey, Data: built.data }
        ])
        const sequenceNumber = out.Records![0]!.SequenceNumber!
        const { calls, destination, fiber } = yield* run(
          streamName,
          (records) =>
            Effect.succeed(BatchProcessing.itemFailures(
              records.filter((r) => r.subSequenceNumber === 2).map((record) => ({ record, error: new Error("u2") }))
            )),
          { maxRetryAttempts: 1 },
          repository
        )
        yield* eventually(
          Effect.map(
            checkpointOf(repository),
            (c) =>
              c !== undefined && ExtendedSequenceNumber.compare(c, ExtendedSequenceNumber.make(sequenceNumber, 5)) === 0
          ),
          "20 seconds",
          "the checkpoint at the aggregate's last user record"
        )
        yield* Fiber.interrupt(fiber)

        expect(calls.map(data)).toEqual([["u0", "u1", "u2", "u3", "u4", "u5"], ["u2", "u3", "u4", "u5"]])
        expect(calls[1]!.every((r) => r.sequenceNumber === sequenceNumber && r.aggregated)).toBe(true)
        expect(destination.map((f) => [f._tag, f.sequenceNumber, f.subSequenceNumber, f.attempts])).toEqual([
          ["RetriesExhausted", sequenceNumber, 2, 2]
        ])
      }))
  })
})
