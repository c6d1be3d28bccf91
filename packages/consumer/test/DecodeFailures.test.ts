import {
  Consumer,
  type ConsumerError,
  type ConsumerRecord,
  type DiagnosticEvent,
  LeaseRepository
} from "@effect-kinesis/consumer"
import { Aggregation, Client, ExtendedSequenceNumber, Serde } from "@effect-kinesis/core"
import { ConsumerWorker, StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Layer, Logger, Result, Schema, Stream } from "effect"
import { createHash } from "node:crypto"
import { eventually, fastLeases, KinesisLive, shardedStreamOptions } from "./fixtures.ts"

const encoder = new TextEncoder()
const Order = Schema.Struct({ n: Schema.Number })
const json = Serde.json(Order)
type Order = typeof Order.Type

// Shard A: two orders and two records that are not JSON, the last one last on the shard; shard B:
// two orders. Returns the sequence numbers of A's records.
const setup = Effect.gen(function*() {
  const client = yield* Client.Client
  const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
  const [a, b] = shards
  const put = (hashKey: string, data: ReadonlyArray<string>) =>
    Effect.map(
      client.putRecords(
        streamName,
        data.map((d) => ({ PartitionKey: "k", ExplicitHashKey: hashKey, Data: encoder.encode(d) }))
      ),
      (out) => out.Records!.map((r) => r.SequenceNumber!)
    )
  const seqA = yield* put(a!.startingHashKey, [`{"n":0}`, "not json", `{"n":2}`, "nor this"])
  yield* put(b!.startingHashKey, [`{"n":10}`, `{"n":11}`])
  return { streamName, shardA: a!.shardId, seqA }
})

const checkpointOf = (repository: LeaseRepository.LeaseRepository["Service"], shardId: string) =>
  Effect.map(repository.list, (leases) => leases.find((l) => l.leaseKey === shardId)?.checkpoint)

// The README's first shardedStream example, recording what it processed and what it reported.
const readmeShape = (
  options: Consumer.ShardedStreamOptions<Order>,
  repository: LeaseRepository.LeaseRepository["Service"]
) =>
  Effect.gen(function*() {
    const seen: Array<ConsumerRecord.ConsumerRecord<Order>> = []
    const events: Array<DiagnosticEvent.DiagnosticEvent> = []
    const fiber = yield* Consumer.shardedStream({
      ...options,
      onDiagnostic: (event) => Effect.sync(() => events.push(event))
    }).pipe(
      Stream.flatMap((shard) =>
        shard.records.pipe(
          Stream.mapEffect((record) => shard.checkpointer.stageOnSuccess(Effect.sync(() => seen.push(record)), record)),
          shard.checkpointer.checkpointBatched({ records: 1000, interval: "100 millis" })
        ), { concurrency: "unbounded" }),
      Stream.runDrain,
      Effect.provide(Consumer.layer),
      Effect.provideService(LeaseRepository.LeaseRepository, repository),
      Effect.forkScoped
    )
    return { seen, events, fiber }
  })

const undecodableEvents = (events: ReadonlyArray<DiagnosticEvent.DiagnosticEvent>) =>
  events.filter((e) => e._tag === "RecordUndecodable").map((e) => [e.sequenceNumber, e.action])

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("Undecodable records", (it) => {
  describe("shardedStream (the README's shape)", () => {
    it.effect("by default a record that is not JSON is skipped and reported; the other records and shards go on and the checkpoint moves past it", () =>
      Effect.gen(function*() {
        const { seqA, shardA, streamName } = yield* setup
        const repository = yield* LeaseRepository.makeMemory()
        const run = yield* readmeShape({ ...shardedStreamOptions(streamName), deserializer: json }, repository)
        yield* eventually(
          Effect.map(
            checkpointOf(repository, shardA),
            (c) => c !== undefined && ExtendedSequenceNumber.compare(c, ExtendedSequenceNumber.make(seqA[3]!, 0)) === 0
          ),
          "20 seconds",
          "shard A checkpointed past its last, undecodable record"
        )
        yield* eventually(Effect.sync(() => run.seen.length >= 4), "20 seconds", "the four orders")
        expect(run.fiber.pollUnsafe()).toBeUndefined()
        yield* Fiber.interrupt(run.fiber)
        expect(run.seen.map((r) => r.data.n).sort((x, y) => x - y)).toEqual([0, 2, 10, 11])
        expect(undecodableEvents(run.events)).toEqual([[seqA[1], "skipped"], [seqA[3], "skipped"]])
      }))

    it.effect("a dead-letter hook gets the raw record, its position and the decode error, and chooses to skip", () =>
      Effect.gen(function*() {
        const { seqA, shardA, streamName } = yield* setup
        const repository = yield* LeaseRepository.makeMemory()
        const dead: Array<ConsumerError.RecordDecodeFailed> = []
        const run = yield* readmeShape({
          ...shardedStreamOptions(streamName),
          deserializer: json,
          onDecodeFailure: (failure) => Effect.as(Effect.sync(() => dead.push(failure)), "skip" as const)
        }, repository)
        yield* eventually(
          Effect.map(
            checkpointOf(repository, shardA),
            (c) => c !== undefined && ExtendedSequenceNumber.compare(c, ExtendedSequenceNumber.make(seqA[3]!, 0)) === 0
          ),
          "20 seconds",
          "shard A checkpointed past its last, undecodable record"
        )
        yield* eventually(Effect.sync(() => run.seen.length >= 4), "20 seconds", "the four orders")
        yield* Fiber.interrupt(run.fiber)
        expect(dead.map((f) => [f.record.shardId, f.record.sequenceNumber, new TextDecoder().decode(f.record.data)]))
          .toEqual([[shardA, seqA[1], "not json"], [shardA, seqA[3], "nor this"]])
        expect(dead[0]!.cause._tag).toBe("DeserializationError")
      }))

    it.effect("onDecodeFailure \"fail\" fails the consumer with RecordDecodeFailed, and the checkpoint stays before the record", () =>
      Effect.gen(function*() {
        const { seqA, shardA, streamName } = yield* setup
        const repository = yield* LeaseRepository.makeMemory()
        const run = yield* readmeShape(
          { ...shardedStreamOptions(streamName), deserializer: json, onDecodeFailure: "fail" },
          repository
        )
        const exit = yield* Fiber.await(run.fiber).pipe(Effect.timeout("20 seconds"))
        expect(Exit.isFailure(exit) && Cause.squash(exit.cause)).toMatchObject({ _tag: "RecordDecodeFailed" })
        expect(yield* checkpointOf(repository, shardA)).toEqual(ExtendedSequenceNumber.make(seqA[0]!, 0))
      }))
    it.effect("consecutive undecodable records behind records still in the pipeline are checkpointed past once those are processed", () =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const out = yield* client.putRecords(
          streamName,
          [`{"n":0}`, "not json", "nor this"].map((d) => ({ PartitionKey: "k", Data: encoder.encode(d) }))
        )
        const seq = out.Records!.map((r) => r.SequenceNumber!)
        const repository = yield* LeaseRepository.makeMemory()
        const seen: Array<number> = []
        // The buffer lets the records stream run ahead of the slow processing: both failures are
        // met while the record before them is still being processed.
        const fiber = yield* Consumer.shardedStream({ ...shardedStreamOptions(streamName), deserializer: json }).pipe(
          Stream.flatMap((shard) =>
            shard.records.pipe(
              Stream.buffer({ capacity: 16 }),
              Stream.mapEffect((record) =>
                shard.checkpointer.stageOnSuccess(
                  Effect.andThen(Effect.sleep("300 millis"), Effect.sync(() => seen.push(record.data.n))),
                  record
                )
              ),
              shard.checkpointer.checkpointBatched({ records: 1000, interval: "100 millis" })
            ), { concurrency: "unbounded" }),
          Stream.runDrain,
          Effect.provide(Consumer.layer),
          Effect.provideService(LeaseRepository.LeaseRepository, repository),
          Effect.forkScoped
        )
        yield* eventually(
          Effect.map(
            checkpointOf(repository, shards[0]!.shardId),
            (c) => c !== undefined && ExtendedSequenceNumber.compare(c, ExtendedSequenceNumber.make(seq[2]!, 0)) === 0
          ),
          "20 seconds",
          "the checkpoint past both undecodable records"
        )
        yield* Fiber.interrupt(fiber)
        expect(seen).toEqual([0])
      }))
  })

  describe("consumeWith without errorHandling", () => {
    it.effect("by default skips and reports the record; the other records and shards go on", () =>
      Effect.gen(function*() {
        const { seqA, shardA, streamName } = yield* setup
        const repository = yield* LeaseRepository.makeMemory()
        const warnings: Array<string> = []
        const collect = Logger.make(({ logLevel, message }) => {
          if (logLevel === "Warn") warnings.push(String(Array.isArray(message) ? message[0] : message))
        })
        const worker = yield* ConsumerWorker.start({
          stream: streamName,
          applicationName: "test",
          workerId: "w",
          deserializer: json,
          lease: fastLeases,
          fetch: { pollInterval: "100 millis" },
          checkpointInterval: "100 millis",
          leases: Layer.succeed(LeaseRepository.LeaseRepository, repository)
        }).pipe(Effect.provide(Logger.layer([collect])))
        yield* eventually(
          Effect.map(
            checkpointOf(repository, shardA),
            (c) => c !== undefined && ExtendedSequenceNumber.compare(c, ExtendedSequenceNumber.make(seqA[3]!, 0)) === 0
          ),
          "20 seconds",
          "shard A checkpointed past its last, undecodable record"
        )
        yield* eventually(Effect.sync(() => worker.seen.length >= 4), "20 seconds", "the four orders")
        expect(worker.fiber.pollUnsafe()).toBeUndefined()
        yield* worker.stop
        expect(worker.seen.map((r) => r.data.n).sort((x, y) => x - y)).toEqual([0, 2, 10, 11])
        expect(undecodableEvents(worker.events)).toEqual([[seqA[1], "skipped"], [seqA[3], "skipped"]])
        expect(warnings.filter((w) => w.startsWith("skipping a record"))).toHaveLength(2)
      }))
  })

  describe("malformed aggregates", () => {
    it.effect("a record with the KPL magic and a correct MD5 but a broken protobuf is delivered whole as a plain record, as the KCL does, and reported", () =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const body = new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])
        const md5 = createHash("md5").update(body).digest()
        const malformed = new Uint8Array([0xf3, 0x89, 0x9a, 0xc2, ...body, ...md5])
        expect(Aggregation.isAggregated(malformed)).toBe(true)
        expect(Result.isFailure(Aggregation.deaggregate({ partitionKey: "k", data: malformed }))).toBe(true)
        // The magic with a wrong MD5: a plain record, not an aggregate, and not malformed.
        const lookalike = new Uint8Array([0xf3, 0x89, 0x9a, 0xc2, ...body, ...md5.map((b) => b ^ 1)])
        // A well-formed aggregate of one user record (the aggregator would send it plain): still an
        // aggregate. Partition key table ["single"], one record {key 0, data "alone"}.
        const singleBody = new Uint8Array([
          0x0a,
          6,
          ...encoder.encode("single"),
          0x1a,
          9,
          0x08,
          0,
          0x1a,
          5,
          ...encoder.encode("alone")
        ])
        const single = {
          partitionKey: "p",
          explicitHashKey: "0",
          data: new Uint8Array([
            0xf3,
            0x89,
            0x9a,
            0xc2,
            ...singleBody,
            ...createHash("md5").update(singleBody).digest()
          ])
        }
        expect(Result.getOrThrow(Aggregation.deaggregate(single)).map((r) => r.partitionKey)).toEqual(["single"])
        const put = yield* client.putRecords(streamName, [
          { PartitionKey: "k", Data: encoder.encode("before") },
          { PartitionKey: "k", Data: malformed },
          { PartitionKey: "k", Data: lookalike },
          { PartitionKey: single.partitionKey, ExplicitHashKey: single.explicitHashKey, Data: single.data },
          { PartitionKey: "k", Data: encoder.encode("after") }
        ])
        const repository = yield* LeaseRepository.makeMemory()
        const seen: Array<ConsumerRecord.ConsumerRecord<Uint8Array>> = []
        const events: Array<DiagnosticEvent.DiagnosticEvent> = []
        const fiber = yield* Consumer.shardedStream({
          ...shardedStreamOptions(streamName),
          deserializer: Serde.bytes,
          onDiagnostic: (event) => Effect.sync(() => events.push(event))
        }).pipe(
          Stream.flatMap((shard) => shard.records, { concurrency: "unbounded" }),
          Stream.runForEach((record) => Effect.sync(() => seen.push(record))),
          Effect.provide(Consumer.layer),
          Effect.provideService(LeaseRepository.LeaseRepository, repository),
          Effect.forkScoped
        )
        yield* eventually(Effect.sync(() => seen.length >= 5), "20 seconds", "five records")
        yield* Fiber.interrupt(fiber)
        expect(seen.map((r) => r.aggregated)).toEqual([false, false, false, true, false])
        expect(Array.from(seen[1]!.data)).toEqual(Array.from(malformed))
        expect(Array.from(seen[2]!.data)).toEqual(Array.from(lookalike))
        expect([seen[3]!.partitionKey, new TextDecoder().decode(seen[3]!.data)]).toEqual(["single", "alone"])
        expect(seen[1]!.sequenceNumber).toBe(put.Records![1]!.SequenceNumber)
        expect(events.filter((e) => e._tag === "AggregateMalformed").map((e) => e.sequenceNumber)).toEqual([
          put.Records![1]!.SequenceNumber
        ])
      }))
  })
})
