import {
  type ErrorHandling,
  ErrorHandling as EH,
  type FailureDestination,
  LeaseRepository
} from "@effect-kinesis/consumer"
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Clock, Effect, Logger, Schedule } from "effect"
import { shiftedClock } from "./clock.ts"
import { eventually, KinesisLive, put, startWorker } from "./fixtures.ts"

// Not valid UTF-8: `Serde.string` rejects it.
const undecodable = new Uint8Array([0xff, 0xfe, 0xfd])

const failing = (attempts: Map<string, number>) => (record: { readonly data: string }) =>
  Effect.suspend(() => {
    attempts.set(record.data, (attempts.get(record.data) ?? 0) + 1)
    return record.data.startsWith("bad") ? Effect.fail(new Error(`cannot process ${record.data}`)) : Effect.void
  })

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("Error handling modes", (it) => {
  describe("RetryAndSkip", () => {
    it.effect("retries a failing record, hands it to onMaxRetryExceeded, skips it and checkpoints past it; undecodable records too", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, [
          { partitionKey: "k", data: "ok-1" },
          { partitionKey: "k", data: "bad-1" },
          { partitionKey: "k", data: undecodable },
          { partitionKey: "k", data: "ok-2" }
        ])
        const attempts = new Map<string, number>()
        const deadLetters: Array<ErrorHandling.Failure<string, Error>> = []
        const worker = yield* startWorker({
          stream: streamName,
          workerId: "w",
          repository,
          handler: failing(attempts),
          errorHandling: {
            mode: EH.retryAndSkip(2),
            onMaxRetryExceeded: (failure) => Effect.sync(() => deadLetters.push(failure))
          }
        })
        yield* eventually(Effect.sync(() => worker.seen.length === 2), "20 seconds", "ok records processed")
        yield* worker.stop

        expect(worker.seen.map((r) => r.data)).toEqual(["ok-1", "ok-2"])
        expect(attempts.get("bad-1")).toBe(3)
        expect(deadLetters.map((f) => f._tag)).toEqual(["ProcessingFailed", "DecodingFailed"])
        const decoding = deadLetters[1]!
        expect(decoding._tag === "DecodingFailed" && Array.from(decoding.error.record.data)).toEqual(
          Array.from(undecodable)
        )
        const [lease] = yield* repository.list
        expect(lease!.checkpoint).toEqual(ExtendedSequenceNumber.make(worker.seen[1]!.sequenceNumber, 0))
      }))
  })

  describe("without onMaxRetryExceeded", () => {
    it.effect("a record given up on is logged as a warning, not skipped silently", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, [
          { partitionKey: "k", data: "ok-1" },
          { partitionKey: "k", data: undecodable },
          { partitionKey: "k", data: "ok-2" }
        ])
        const warnings: Array<string> = []
        const collect = Logger.make(({ logLevel, message }) => {
          if (logLevel === "Warn") warnings.push(String(Array.isArray(message) ? message[0] : message))
        })
        const worker = yield* startWorker({
          stream: streamName,
          workerId: "w",
          repository,
          errorHandling: { mode: EH.retryAndSkip(0) }
        }).pipe(Effect.provide(Logger.layer([collect])))
        yield* eventually(Effect.sync(() => worker.seen.length === 2), "20 seconds", "ok records processed")
        yield* worker.stop
        expect(warnings.filter((w) => w.startsWith("skipping record"))).toHaveLength(1)
      }))
  })

  describe("RetryAndStop", () => {
    it.effect("stops the shard at a failing record and does not checkpoint past it", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, [
          { partitionKey: "k", data: "ok-1" },
          { partitionKey: "k", data: "bad-1" },
          { partitionKey: "k", data: "ok-2" }
        ])
        const attempts = new Map<string, number>()
        const deadLetters: Array<ErrorHandling.Failure<string, Error>> = []
        const worker = yield* startWorker({
          stream: streamName,
          workerId: "w",
          repository,
          handler: failing(attempts),
          errorHandling: {
            mode: EH.retryAndStop(1),
            onMaxRetryExceeded: (failure) => Effect.sync(() => deadLetters.push(failure))
          }
        })
        yield* eventually(Effect.sync(() => deadLetters.length === 1), "20 seconds", "the failing record given up on")
        yield* eventually(
          Effect.map(repository.list, ([lease]) => lease?.leaseOwner === undefined),
          "10 seconds",
          "the stopped shard's lease released"
        )
        yield* Effect.sleep("500 millis")
        yield* worker.stop

        expect(worker.seen.map((r) => r.data)).toEqual(["ok-1"])
        expect(attempts.get("bad-1")).toBe(2)
        expect(attempts.has("ok-2")).toBe(false)
        const [lease] = yield* repository.list
        expect(lease!.checkpoint).toEqual(ExtendedSequenceNumber.make(worker.seen[0]!.sequenceNumber, 0))
      }))

    it.effect("stops the shard at an undecodable record", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, [
          { partitionKey: "k", data: "ok-1" },
          { partitionKey: "k", data: undecodable },
          { partitionKey: "k", data: "ok-2" }
        ])
        const deadLetters: Array<ErrorHandling.Failure<string, Error>> = []
        const worker = yield* startWorker({
          stream: streamName,
          workerId: "w",
          repository,
          errorHandling: {
            mode: EH.retryAndStop(3),
            onMaxRetryExceeded: (failure) => Effect.sync(() => deadLetters.push(failure))
          }
        })
        yield* eventually(
          Effect.sync(() => deadLetters.length === 1),
          "20 seconds",
          "the undecodable record given up on"
        )
        yield* Effect.sleep("500 millis")
        yield* worker.stop
        expect(deadLetters[0]!._tag).toBe("DecodingFailed")
        expect(worker.seen.map((r) => r.data)).toEqual(["ok-1"])
        const [lease] = yield* repository.list
        expect(lease!.checkpoint).toEqual(ExtendedSequenceNumber.make(worker.seen[0]!.sequenceNumber, 0))
      }))
  })

  describe("onFailure and maxRecordAge", () => {
    it.effect("the on-failure destination receives each record skipped, with its error, position and attempts, before the checkpoint passes it", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, [
          { partitionKey: "k", data: "ok-1" },
          { partitionKey: "k", data: "bad-1" },
          { partitionKey: "k", data: undecodable },
          { partitionKey: "k", data: "ok-2" }
        ])
        const attempts = new Map<string, number>()
        const destination: Array<FailureDestination.FailedRecord<string, Error>> = []
        let refusals = 2
        const worker = yield* startWorker({
          stream: streamName,
          workerId: "w",
          repository,
          handler: failing(attempts),
          errorHandling: {
            mode: EH.retryAndSkip(2, { schedule: Schedule.spaced("10 millis") }),
            // Refuses twice: retried, and nothing is lost or checkpointed past meanwhile.
            onFailure: (failed) =>
              refusals-- > 0
                ? Effect.fail(new Error("destination down"))
                : Effect.sync(() => destination.push(failed))
          }
        })
        yield* eventually(Effect.sync(() => worker.seen.length === 2), "20 seconds", "ok records processed")
        yield* eventually(
          Effect.map(repository.list, ([lease]) =>
            lease !== undefined &&
            ExtendedSequenceNumber.compare(
                lease.checkpoint,
                ExtendedSequenceNumber.make(worker.seen[1]!.sequenceNumber, 0)
              )
              === 0),
          "10 seconds",
          "the checkpoint at ok-2"
        )
        yield* worker.stop

        expect(attempts.get("bad-1")).toBe(3)
        expect(destination.map((f) => ({
          _tag: f._tag,
          shardId: f.shardId,
          attempts: f.attempts,
          error: f._tag === "Undecodable" ? f.error._tag : f.error?.message
        }))).toEqual([
          { _tag: "RetriesExhausted", shardId: shards[0]!.shardId, attempts: 3, error: "cannot process bad-1" },
          { _tag: "Undecodable", shardId: shards[0]!.shardId, attempts: 0, error: "RecordDecodeFailed" }
        ])
        const bad = destination[0] as FailureDestination.RetriesExhausted<string, Error>
        expect([bad.record.data, bad.subSequenceNumber]).toEqual(["bad-1", 0])
        expect(bad.sequenceNumber > worker.seen[0]!.sequenceNumber).toBe(true)
        expect(bad.sequenceNumber < worker.seen[1]!.sequenceNumber).toBe(true)
      }))

    it.effect("a record older than maxRecordAge is skipped to the destination unprocessed, even under RetryAndStop; one that ages while retried goes there after its last attempt", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, [
          { partitionKey: "k", data: "ok-1" },
          { partitionKey: "k", data: "bad-1" },
          { partitionKey: "k", data: "ok-2" }
        ])
        const attempts = new Map<string, number>()
        const destination: Array<FailureDestination.FailedRecord<string, Error>> = []
        // On time until bad-1's second attempt, then two hours ahead.
        let offset = 0
        const worker = yield* startWorker({
          stream: streamName,
          workerId: "w",
          repository,
          handler: (record) =>
            Effect.suspend(() => {
              if (record.data === "bad-1" && attempts.get("bad-1") === 1) offset = 7_200_000
              return failing(attempts)(record)
            }),
          errorHandling: {
            mode: EH.retryAndStop(5),
            maxRecordAge: "1 hour",
            onFailure: (failed) => Effect.sync(() => destination.push(failed))
          }
        }).pipe(Effect.provideService(Clock.Clock, yield* shiftedClock(() => offset)))
        yield* eventually(Effect.sync(() => destination.length === 2), "20 seconds", "2 records too old")
        yield* eventually(
          Effect.map(repository.list, ([lease]) =>
            lease !== undefined && destination[1]!._tag === "RecordTooOld" &&
            ExtendedSequenceNumber.compare(
                lease.checkpoint,
                ExtendedSequenceNumber.make(destination[1]!.sequenceNumber, 0)
              )
              === 0),
          "10 seconds",
          "the checkpoint at ok-2"
        )
        yield* worker.stop

        expect(worker.seen.map((r) => r.data)).toEqual(["ok-1"])
        expect(attempts.get("bad-1")).toBe(2)
        expect(attempts.has("ok-2")).toBe(false)
        expect(destination.map((f) => [
          f._tag,
          f.attempts,
          f._tag === "Undecodable" ? undefined : f.record.data,
          f._tag === "Undecodable" ? undefined : f.error?.message
        ])).toEqual([
          ["RecordTooOld", 2, "bad-1", "cannot process bad-1"],
          ["RecordTooOld", 0, "ok-2", undefined]
        ])
      }))
  })
})
