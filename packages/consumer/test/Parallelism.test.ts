import {
  Consumer,
  type ConsumerRecord,
  type ErrorHandling,
  ErrorHandling as EH,
  type Lease,
  LeaseRepository,
  Parallel
} from "@effect-kinesis/consumer"
import { ExtendedSequenceNumber, Serde } from "@effect-kinesis/core"
import { ConsumerWorker, KinesisEmulator, StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Deferred, type Duration, Effect, Fiber, Layer, Stream } from "effect"
import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { eventually, fastLeases, KinesisLive, put, shardedStreamOptions } from "./fixtures.ts"
import { putAggregates, splitAndMerge } from "./scenarios.ts"

type Repository = LeaseRepository.LeaseRepository["Service"]
type Record = ConsumerRecord.ConsumerRecord<string>

// Not valid UTF-8: `Serde.string` rejects it.
const undecodable = new Uint8Array([0xff, 0xfe, 0xfd])

/** `count` records `r<i>` over `keys` partition keys (`k<i % keys>`). */
const records = (count: number, keys: number) =>
  Array.from({ length: count }, (_, i) => ({ partitionKey: `k${i % keys}`, data: `r${i}` }))

const index = (record: Record) => Number(record.data.slice(1))

const startWorker = (options: {
  readonly stream: string
  readonly workerId: string
  readonly repository: Repository
  readonly parallelism?: number | undefined
  readonly handler?: ((record: Record) => Effect.Effect<void, Error>) | undefined
  readonly errorHandling?: ErrorHandling.Options<string, Error, never> | undefined
  readonly shutdownGracePeriod?: Duration.Input | undefined
  readonly checkpointInterval?: Duration.Input | undefined
}) => {
  const { repository, ...rest } = options
  return ConsumerWorker.start({
    applicationName: "test",
    deserializer: Serde.string,
    lease: fastLeases,
    checkpointBatchSize: 1000,
    checkpointInterval: "200 millis",
    ...rest,
    fetch: { pollInterval: "100 millis" },
    leases: Layer.succeed(LeaseRepository.LeaseRepository, repository)
  })
}

/**
 * A handler that watches itself: the most handlers running at once, and any record that started
 * while a record of its key was still running.
 */
const watched = (work: (record: Record) => Effect.Effect<void, Error>) => {
  const state = { running: 0, maxRunning: 0, overlaps: [] as Array<string>, started: [] as Array<string> }
  const busyKeys = new Set<string>()
  const handler = (record: Record) =>
    Effect.suspend(() => {
      if (busyKeys.has(record.partitionKey)) state.overlaps.push(record.data)
      busyKeys.add(record.partitionKey)
      state.started.push(record.data)
      state.maxRunning = Math.max(state.maxRunning, ++state.running)
      return work(record)
    }).pipe(Effect.ensuring(Effect.sync(() => {
      state.running--
      busyKeys.delete(record.partitionKey)
    })))
  return { state, handler }
}

const randomSleep = (maxMillis: number) => () =>
  Effect.suspend(() => Effect.sleep(Math.floor(Math.random() * maxMillis)))

/** The data of `seen`, per partition key, in the order the handler finished them. */
const perKey = (seen: ReadonlyArray<Record>) => {
  const keys = new Map<string, Array<number>>()
  for (const record of seen) keys.set(record.partitionKey, [...(keys.get(record.partitionKey) ?? []), index(record)])
  return keys
}

const position = (record: Record) => ExtendedSequenceNumber.make(record.sequenceNumber, record.subSequenceNumber)

const checkpointOf = (repository: Repository) => Effect.map(repository.list, ([lease]) => lease!.checkpoint)

const lastOf = (seen: ReadonlyArray<Record>) =>
  seen.reduce((a, b) => (ExtendedSequenceNumber.compare(position(a), position(b)) >= 0 ? a : b))

// Waits until the stored checkpoint is the last record seen.
const checkpointAtLast = (repository: Repository, seen: ReadonlyArray<Record>) =>
  eventually(
    Effect.map(
      checkpointOf(repository),
      (checkpoint) => ExtendedSequenceNumber.compare(checkpoint, position(lastOf(seen))) === 0
    ),
    "10 seconds",
    "the checkpoint at the last record"
  )

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("Ordered parallelism within a shard", (it) => {
  describe("consumeWith with parallelism", () => {
    it.effect("records of one key run one at a time and in shard order, different keys run at once (at most `parallelism`), every record once; the checkpoint reaches the last record past an undecodable one", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        // Two in three records on four hot keys (often next to each other), the rest over 90 keys.
        const written = Array.from({ length: 600 }, (_, i) => ({
          partitionKey: i % 3 === 0 ? `cold-${i % 90}` : `hot-${i % 4}`,
          data: `r${i}`
        }))
        yield* put(streamName, [
          ...written.slice(0, 300),
          { partitionKey: "k7", data: undecodable },
          ...written.slice(300)
        ])
        const { handler, state } = watched(randomSleep(15))
        const worker = yield* startWorker({ stream: streamName, workerId: "w", repository, parallelism: 8, handler })
        yield* eventually(Effect.sync(() => worker.seen.length >= 600), "30 seconds", "600 records")
        yield* checkpointAtLast(repository, worker.seen)
        yield* worker.stop

        expect(state.overlaps).toEqual([])
        for (const [key, indices] of perKey(worker.seen)) {
          expect(indices, key).toEqual(
            written.filter((r) => r.partitionKey === key).map((r) => Number(r.data.slice(1)))
          )
        }
        expect(worker.seen.length).toBe(600)
        expect(state.maxRunning).toBeGreaterThan(1)
        expect(state.maxRunning).toBeLessThanOrEqual(8)
      }))

    it.effect("a record that does not finish holds the checkpoint before it while records of other keys after it finish; a stop lets the others finish, and the next worker resumes at it", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, records(60, 12))
        // r5 never finishes; r17, r29, r41 and r53 (its key) wait behind it.
        const { handler, state } = watched((record) => record.data === "r5" ? Effect.never : randomSleep(10)())
        const first = yield* startWorker({
          stream: streamName,
          workerId: "first",
          repository,
          parallelism: 8,
          handler,
          shutdownGracePeriod: "1 second"
        })
        yield* eventually(Effect.sync(() => first.seen.length === 55), "30 seconds", "the 55 records not behind r5")
        // Several checkpoint intervals.
        yield* Effect.sleep("700 millis")
        const r4 = first.seen.find((r) => r.data === "r4")!
        expect(yield* checkpointOf(repository)).toEqual(position(r4))
        expect(state.started).not.toContain("r17")

        yield* first.stop
        const [lease] = yield* repository.list
        expect(lease!.leaseOwner).toBeUndefined()
        expect(lease!.checkpoint).toEqual(position(r4))

        const second = yield* startWorker({ stream: streamName, workerId: "second", repository, parallelism: 8 })
        yield* eventually(
          Effect.sync(() => second.seen.some((r) => r.data === "r59") && second.seen.some((r) => r.data === "r53")),
          "30 seconds",
          "the rest"
        )
        yield* second.stop
        const again = new Set(second.seen.map(index))
        // Everything after the checkpoint again (at-least-once), nothing before it.
        expect([...again].sort((a, b) => a - b)).toEqual(Array.from({ length: 55 }, (_, i) => i + 5))
      }))

    it.effect("KPL aggregates: the checkpoint stops inside an aggregate, before the first unfinished user record, and a restart resumes at it", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        // Three aggregates of ten user records `a<i>u<j>`, key `key-<j % 4>`.
        yield* putAggregates(streamName, shards[0]!.startingHashKey)
        const { handler } = watched((record) => record.data === "a1u2" ? Effect.never : randomSleep(10)())
        const first = yield* startWorker({
          stream: streamName,
          workerId: "first",
          repository,
          parallelism: 4,
          handler,
          shutdownGracePeriod: "500 millis"
        })
        // a1u2 blocks key-2: a1u6, a2u2 and a2u6 wait behind it.
        yield* eventually(Effect.sync(() => first.seen.length === 26), "30 seconds", "26 user records")
        yield* Effect.sleep("700 millis")
        const a1u1 = first.seen.find((r) => r.data === "a1u1")!
        expect(a1u1.subSequenceNumber).toBe(1)
        expect(yield* checkpointOf(repository)).toEqual(position(a1u1))
        yield* first.stop

        const second = yield* startWorker({ stream: streamName, workerId: "second", repository, parallelism: 4 })
        yield* eventually(Effect.sync(() => second.seen.length >= 18), "30 seconds", "the 18 records from a1u2 on")
        yield* Effect.sleep("300 millis")
        yield* second.stop
        expect(second.seen.map((r) => r.data).sort()).toEqual(
          [...Array.from({ length: 8 }, (_, u) => `a1u${u + 2}`), ...Array.from({ length: 10 }, (_, u) => `a2u${u}`)]
            .sort()
        )
        for (const [key, data] of perKey(second.seen)) {
          const expected = second.seen.filter((r) => r.partitionKey === key).map((r) => position(r))
          expect(expected, key).toEqual([...expected].sort(ExtendedSequenceNumber.compare))
          expect(data.length).toBeGreaterThan(0)
        }
      }))

    it.effect("resharding: a parent read to its end while its records still run ends only once they are staged; children start after it, and per-key order holds across split and merge", () =>
      splitAndMerge((stream, repository) =>
        ConsumerWorker.start({
          stream,
          workerId: "w",
          applicationName: "test",
          deserializer: Serde.string,
          lease: { ...fastLeases, cleanupFinished: false },
          checkpointInterval: "200 millis",
          fetch: { pollInterval: "100 millis" },
          parallelism: 8,
          handler: randomSleep(10),
          leases: Layer.succeed(LeaseRepository.LeaseRepository, repository)
        })
      ))
  })

  describe("graceful stop", () => {
    it.effect("a stop starts no new record, lets the running ones finish and checkpoints them", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, records(40, 40))
        const { handler, state } = watched(() => Effect.sleep("1500 millis"))
        const worker = yield* startWorker({
          stream: streamName,
          workerId: "w",
          repository,
          parallelism: 8,
          handler,
          shutdownGracePeriod: "5 seconds"
        })
        yield* eventually(Effect.sync(() => state.started.length === 8), "30 seconds", "8 records running")
        yield* worker.stop
        expect(state.started).toEqual(Array.from({ length: 8 }, (_, i) => `r${i}`))
        expect(worker.seen.map((r) => r.data).sort()).toEqual(state.started.slice().sort())
        const [lease] = yield* repository.list
        expect(lease!.leaseOwner).toBeUndefined()
        expect(lease!.checkpoint).toEqual(position(worker.seen.find((r) => r.data === "r7")!))
      }))
  })

  describe("lost lease", () => {
    it.effect("once the lease is lost no record starts, though many are read and waiting", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, records(60, 60))
        const { handler, state } = watched(() => Effect.sleep("200 millis"))
        // No checkpoint during the test: the lease's loss is found by the renewal only.
        const worker = yield* startWorker({
          stream: streamName,
          workerId: "w",
          repository,
          parallelism: 4,
          handler,
          checkpointInterval: "1 hour"
        })
        yield* eventually(Effect.sync(() => state.started.length >= 4), "30 seconds", "records running")
        const [lease] = yield* repository.list
        yield* repository.take(lease!, "thief")
        yield* eventually(
          Effect.sync(() => worker.events.some((e) => e._tag === "LeaseLost")),
          "10 seconds",
          "the loss noticed"
        )
        const startedAtLoss = state.started.length
        yield* Effect.sleep("1500 millis")
        expect(state.started.length).toBe(startedAtLoss)
        expect(startedAtLoss).toBeLessThan(60)
        yield* worker.stop
      }))
  })

  describe("without errorHandling", () => {
    it.effect("a failing handler fails the consumer; the checkpoint stays before the failing record", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, records(100, 10))
        const { handler } = watched((record) =>
          record.data === "r30" ? Effect.fail(new Error("cannot r30")) : randomSleep(10)()
        )
        const worker = yield* startWorker({ stream: streamName, workerId: "w", repository, parallelism: 8, handler })
        const exit = yield* Fiber.await(worker.fiber)
        expect(exit._tag === "Failure" && String(exit.cause)).toContain("cannot r30")
        const r30 = ExtendedSequenceNumber.make(
          (yield* Stream.runCollect(
            Stream.take(
              Stream.filter(
                Consumer.shardedStream({ ...shardedStreamOptions(streamName), applicationName: "peek" }).pipe(
                  Stream.flatMap((shard) => shard.records)
                ),
                (r) => r.data === "r30"
              ),
              1
            )
          ).pipe(
            Effect.provide(Consumer.layer),
            Effect.provide(LeaseRepository.layerMemory)
          ))[0]!.sequenceNumber
        )
        const checkpoint = yield* checkpointOf(repository)
        expect(ExtendedSequenceNumber.compare(checkpoint, r30)).toBeLessThan(0)
        expect(worker.seen.some((r) => r.data === "r30")).toBe(false)
      }))
  })

  describe("with errorHandling", () => {
    it.effect("retryAndSkip: a failing record holds only its key while it is retried, is skipped, and the checkpoint moves past it and an undecodable one", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        const written = records(100, 10).map((r) =>
          r.data === "r13" || r.data === "r57" ? { ...r, data: `bad${r.data}` } : r
        )
        yield* put(streamName, [
          ...written.slice(0, 40),
          { partitionKey: "k0", data: undecodable },
          ...written.slice(40)
        ])
        const attempts = new Map<string, number>()
        const deadLetters: Array<ErrorHandling.Failure<string, Error>> = []
        const { handler, state } = watched((record) =>
          Effect.suspend(() => {
            attempts.set(record.data, (attempts.get(record.data) ?? 0) + 1)
            return record.data.startsWith("bad")
              ? Effect.delay(Effect.fail(new Error("cannot")), "5 millis")
              : randomSleep(10)()
          })
        )
        const worker = yield* startWorker({
          stream: streamName,
          workerId: "w",
          repository,
          parallelism: 8,
          handler,
          errorHandling: {
            mode: EH.retryAndSkip(2),
            onMaxRetryExceeded: (failure) => Effect.sync(() => deadLetters.push(failure))
          }
        })
        yield* eventually(Effect.sync(() => worker.seen.length >= 98), "30 seconds", "the 98 good records")
        yield* checkpointAtLast(repository, worker.seen)
        yield* worker.stop
        expect(state.overlaps).toEqual([])
        expect(attempts.get("badr13")).toBe(3)
        expect(attempts.get("badr57")).toBe(3)
        expect(deadLetters.map((f) => f._tag).sort()).toEqual([
          "DecodingFailed",
          "ProcessingFailed",
          "ProcessingFailed"
        ])
        for (const [key, indices] of perKey(worker.seen)) {
          expect(indices, key).toEqual([...indices].sort((a, b) => a - b))
        }
      }))

    it.effect("retryAndStop: the shard stops at the failing record once the records before it are done, the checkpoint stays before it, and the next owner processes it and all after it", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, records(100, 10))
        const deadLetters: Array<ErrorHandling.Failure<string, Error>> = []
        const { handler } = watched((record) =>
          record.data === "r40" ? Effect.fail(new Error("cannot")) : randomSleep(20)()
        )
        const first = yield* startWorker({
          stream: streamName,
          workerId: "first",
          repository,
          parallelism: 8,
          handler,
          errorHandling: {
            mode: EH.retryAndStop(1),
            onMaxRetryExceeded: (failure) => Effect.sync(() => deadLetters.push(failure))
          }
        })
        yield* eventually(
          Effect.map(repository.list, ([lease]) => deadLetters.length === 1 && lease?.leaseOwner === undefined),
          "30 seconds",
          "the shard stopped and its lease released"
        )
        yield* first.stop
        const r39 = first.seen.find((r) => r.data === "r39")!
        expect(yield* checkpointOf(repository)).toEqual(position(r39))
        // Every record before r40 was processed by the first worker.
        expect(new Set(first.seen.map(index).filter((i) => i < 40)).size).toBe(40)

        const second = yield* startWorker({ stream: streamName, workerId: "second", repository, parallelism: 8 })
        yield* eventually(Effect.sync(() => second.seen.length >= 60), "30 seconds", "r40 to r99")
        yield* Effect.sleep("300 millis")
        yield* second.stop
        expect(second.seen.map(index).sort((a, b) => a - b)).toEqual(Array.from({ length: 60 }, (_, i) => i + 40))
      }))
  })

  describe("Parallel.processShard with shardedStream", () => {
    it.effect("a slow record backpressures the shard: at most `window` records are read past the checkpoint", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, records(100, 100))
        const release = yield* Deferred.make<void>()
        const started: Array<string> = []
        const done: Array<string> = []
        const fiber = yield* Consumer.shardedStream(shardedStreamOptions(streamName)).pipe(
          Stream.flatMap((shard) =>
            Parallel.processShard(
              shard,
              (record) =>
                Effect.sync(() => started.push(record.data)).pipe(
                  Effect.andThen(record.data === "r0" ? Deferred.await(release) : Effect.void),
                  Effect.andThen(Effect.sync(() => done.push(record.data)))
                ),
              { parallelism: 4, window: 20 }
            ).pipe(shard.checkpointer.checkpointBatched({ records: 1000, interval: "100 millis" })), {
            concurrency: "unbounded"
          }),
          Stream.runDrain,
          Effect.provide(Consumer.layer),
          Effect.provideService(LeaseRepository.LeaseRepository, repository),
          Effect.forkScoped
        )
        yield* eventually(Effect.sync(() => done.length === 19), "30 seconds", "r1 to r19")
        yield* Effect.sleep("1 second")
        expect(started.length).toBe(20)
        expect(yield* checkpointOf(repository)).toEqual(ExtendedSequenceNumber.trimHorizon)

        yield* Deferred.succeed(release, undefined)
        yield* eventually(Effect.sync(() => done.length === 100), "30 seconds", "all 100")
        yield* eventually(
          Effect.map(checkpointOf(repository), (checkpoint) => checkpoint.sequenceNumber !== "TRIM_HORIZON"),
          "5 seconds",
          "a checkpoint"
        )
        yield* Fiber.interrupt(fiber)
      }))
  })

  describe("a worker killed mid-processing", () => {
    it.effect("SIGKILL at parallelism 8: the checkpoint it left is before every record it had not finished, so a new worker processes them all", () =>
      Effect.gen(function*() {
        const emulator = yield* KinesisEmulator.KinesisEmulator
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const total = 300
        yield* put(streamName, records(total, 30))
        const log = join(mkdtempSync(join(tmpdir(), "parallel-sigkill-")), "log.jsonl")
        const script = fileURLToPath(new URL("./fixtures/parallelWorker.ts", import.meta.url))
        const child = spawn(
          process.execPath,
          [
            "--conditions=@effect-kinesis/source",
            script,
            JSON.stringify({ clientConfig: emulator.clientConfig, stream: streamName, log })
          ],
          { stdio: ["pipe", "inherit", "inherit"] }
        )
        yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
        const read = () => {
          let text = ""
          try {
            text = readFileSync(log, "utf8")
          } catch {
            // Not written yet.
          }
          const lines = text.split("\n").filter((line) => line.length > 0).map((line) =>
            JSON.parse(line) as { started?: number; done?: number; lease?: Lease.Lease }
          )
          return {
            done: new Set(lines.flatMap((l) => l.done === undefined ? [] : [l.done])),
            leases: lines.flatMap((l) => l.lease === undefined ? [] : [l.lease])
          }
        }
        // Mid-processing: many records done, checkpoints written, slow records (every 25th) running.
        yield* eventually(
          Effect.sync(() => {
            const { done, leases } = read()
            return done.size >= 120 && leases.length >= 3
          }),
          "40 seconds",
          "the child processing"
        )
        child.kill("SIGKILL")
        yield* Effect.promise(() =>
          new Promise((resolve) => child.exitCode !== null ? resolve(0) : child.once("exit", resolve))
        )
        const { done, leases } = read()
        const last = leases.at(-1)!
        const unfinished = Array.from({ length: total }, (_, i) => i).filter((i) => !done.has(i))
        // The kill found records finished after unfinished ones (else the test proves nothing).
        expect(unfinished.length).toBeGreaterThan(0)
        expect(Math.max(...done)).toBeGreaterThan(unfinished[0]!)

        // The next owner starts from the checkpoint the killed worker left.
        const repository = yield* LeaseRepository.makeMemory({
          leases: [{ ...last, leaseOwner: undefined, leaseKey: shards[0]!.shardId }]
        })
        const next = yield* startWorker({ stream: streamName, workerId: "next", repository, parallelism: 8 })
        yield* eventually(
          Effect.sync(() => next.seen.some((r) => r.data === `r${total - 1}`)),
          "30 seconds",
          "the last record"
        )
        yield* Effect.sleep("300 millis")
        yield* next.stop
        const again = new Set(next.seen.map(index))
        expect(unfinished.filter((i) => !again.has(i))).toEqual([])
        // And only from the checkpoint on: it is right before the first unfinished record, or
        // further back.
        expect(Math.min(...again)).toBeLessThanOrEqual(unfinished[0]!)
      }))
  })
})
