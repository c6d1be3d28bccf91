/**
 * Scenarios run in both fetching modes (polling and enhanced fan-out): the mode comes in as the
 * options or the worker, the records and the checks are the same.
 */
import { Consumer, LeaseRepository } from "@effect-kinesis/consumer"
import { AdminClient, Aggregation, Client, ExtendedSequenceNumber } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { expect } from "@effect/vitest"
import { Effect, type Scope, Stream } from "effect"
import { eventually, put, type Worker } from "./fixtures.ts"

const KEYS = 8

/** Records `from` to `from + count`; record i of key k carries "k:i", so order per key shows in the data. */
export const phase = (from: number, count: number) =>
  Array.from({ length: count }, (_, i) => {
    const n = from + i
    return { partitionKey: `key-${n % KEYS}`, data: `${n % KEYS}:${Math.floor(n / KEYS)}` }
  })

const encoder = new TextEncoder()

/** Three aggregated Kinesis records of ten user records each (`a<i>u<j>`), all routed by `explicitHashKey`. */
export const putAggregates = (stream: string, explicitHashKey: string) =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    const aggregator = Aggregation.makeAggregator({ explicitHashKey })
    for (let a = 0; a < 3; a++) {
      aggregator.reset()
      for (let u = 0; u < 10; u++) {
        aggregator.add({ partitionKey: `key-${u % 4}`, data: encoder.encode(`a${a}u${u}`) })
      }
      const record = aggregator.build()!
      yield* client.putRecords(stream, [{
        PartitionKey: record.partitionKey,
        ExplicitHashKey: record.explicitHashKey,
        Data: record.data
      }])
    }
  })

/**
 * Three aggregates on a one-shard stream, read 15 user records at a time: they arrive one by one
 * with their subsequence numbers, the checkpoint points inside the second aggregate, and the next
 * run resumes right after it. Returns the first run's records for further checks.
 */
export const deaggregationResume = (options: (stream: string) => Consumer.ShardedStreamOptions<string>) =>
  Effect.gen(function*() {
    const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
    yield* putAggregates(streamName, shards[0]!.startingHashKey)
    const repository = yield* LeaseRepository.makeMemory()
    // Processes (and stages) the first `n` records of the shard, then stops.
    const consume = (n: number) =>
      Consumer.shardedStream(options(streamName)).pipe(
        Stream.flatMap((shard) =>
          shard.records.pipe(Stream.take(n), Stream.tap((record) => shard.checkpointer.stage(record)))
        ),
        Stream.take(n),
        Stream.runCollect,
        Effect.provide(Consumer.layer),
        Effect.provideService(LeaseRepository.LeaseRepository, repository)
      )

    const first = yield* consume(15)
    expect(first.map((r) => r.data)).toEqual([
      ...Array.from({ length: 10 }, (_, u) => `a0u${u}`),
      ...Array.from({ length: 5 }, (_, u) => `a1u${u}`)
    ])
    expect(first.map((r) => r.subSequenceNumber)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4])
    const [lease] = yield* repository.list
    expect(lease!.checkpoint).toEqual(ExtendedSequenceNumber.make(first[14]!.sequenceNumber, 4))

    // The restart starts AT the checkpoint's aggregate: the user records before it are skipped.
    const second = yield* consume(15)
    expect(second.map((r) => r.data)).toEqual([
      ...Array.from({ length: 5 }, (_, u) => `a1u${u + 5}`),
      ...Array.from({ length: 10 }, (_, u) => `a2u${u}`)
    ])
    return first
  })

/**
 * A one-shard stream split before the worker starts, its children merged while it consumes:
 * every record arrives in order per key, every child is taken only after all its parents ended,
 * and the ended leases say so. `start` runs the worker on the given repository (with finished
 * lease cleanup off: every lease is inspected at the end); `beforeMerge` waits for whatever the
 * mode needs before the children close.
 */
export const splitAndMerge = (
  start: (
    stream: string,
    repository: LeaseRepository.LeaseRepository["Service"]
  ) => Effect.Effect<Worker, never, Client.Client | Scope.Scope>,
  beforeMerge: (worker: Worker, children: ReadonlyArray<string>) => Effect.Effect<void, Error> = () => Effect.void
) =>
  Effect.gen(function*() {
    const admin = yield* AdminClient.AdminClient
    const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
    const memory = yield* LeaseRepository.makeMemory()
    // Writes with latency, like a real store's: a parent's end takes several of them after its
    // SHARD_END is stored, which leaves time for a take round to run in between.
    const repository = LeaseRepository.LeaseRepository.of({
      ...memory,
      create: (lease) => Effect.delay(memory.create(lease), "20 millis"),
      release: (lease) => Effect.delay(memory.release(lease), "20 millis")
    })
    const parent = shards[0]!.shardId
    // The split happens before the worker starts, so it finds the parent and its children at
    // once; a slow processor keeps the parent's backlog around while the children have records.
    yield* put(streamName, phase(0, 48))
    yield* admin.splitShard(streamName, parent)
    yield* put(streamName, phase(48, 48))
    const worker = yield* start(streamName, repository)
    yield* eventually(Effect.map(repository.list, (leases) => leases.length === 3), "20 seconds", "child leases")
    const children = (yield* repository.list).map((l) => l.leaseKey).filter((id) => id !== parent).sort()
    yield* beforeMerge(worker, children)
    yield* admin.mergeShards(streamName, children[0]!, children[1]!)
    yield* put(streamName, phase(96, 48))

    yield* eventually(Effect.sync(() => worker.seen.length >= 144), "40 seconds", "all 144 records")

    const perKey = new Map<string, Array<number>>()
    for (const record of worker.seen) {
      const [key, index] = record.data.split(":")
      perKey.set(key!, [...(perKey.get(key!) ?? []), Number(index)])
    }
    for (let k = 0; k < KEYS; k++) {
      expect(perKey.get(String(k))).toEqual(Array.from({ length: 18 }, (_, i) => i))
    }

    // Each child was acquired only after all of its parents had ended.
    const order = worker.events.map((e) =>
      e._tag === "ShardEnded" ? `end ${e.shardId}` : e._tag === "LeaseAcquired" ? `take ${e.shardId}` : ""
    )
    const leases = yield* repository.list
    for (const lease of leases) {
      for (const p of lease.parentShardIds) {
        expect(order.indexOf(`end ${p}`)).toBeGreaterThanOrEqual(0)
        expect(order.indexOf(`end ${p}`)).toBeLessThan(order.indexOf(`take ${lease.leaseKey}`))
      }
    }
    const ended = leases.filter((l) => ExtendedSequenceNumber.isShardEnd(l.checkpoint)).map((l) => l.leaseKey)
      .sort()
    expect(ended).toEqual([parent, ...children].sort())
    expect(leases.find((l) => l.leaseKey === parent)?.childShardIds.slice().sort()).toEqual(children)
  })

/**
 * A consumer started `AT_TIMESTAMP` at a time before a split (or merge) of shards that are closed
 * by the time it starts: every record written after the timestamp is delivered, exactly once, in
 * order per key, and each child is taken only after its parents ended. Records before the
 * timestamp may be delivered or not (Kinesis starts at the first record at or after it). `start`
 * runs the worker on the given repository with the given initial position.
 */
export const atTimestampAcrossReshard = (
  reshard: "split" | "merge",
  start: (
    stream: string,
    repository: LeaseRepository.LeaseRepository["Service"],
    initialPosition: Consumer.InitialPosition
  ) => Effect.Effect<Worker, never, Client.Client | Scope.Scope>
) =>
  Effect.gen(function*() {
    const admin = yield* AdminClient.AdminClient
    const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: reshard === "split" ? 1 : 2 })
    const repository = yield* LeaseRepository.makeMemory()
    yield* put(streamName, phase(0, 16))
    // Kinesis compares arrival times with the timestamp in milliseconds; keep both sides clear of it.
    yield* Effect.sleep("20 millis")
    const timestamp = new Date()
    yield* Effect.sleep("20 millis")
    yield* put(streamName, phase(16, 16))
    if (reshard === "split") yield* admin.splitShard(streamName, shards[0]!.shardId)
    else yield* admin.mergeShards(streamName, shards[0]!.shardId, shards[1]!.shardId)
    yield* put(streamName, phase(32, 16))

    const worker = yield* start(streamName, repository, { atTimestamp: timestamp })
    const after = new Set(phase(16, 32).map((r) => r.data))
    yield* eventually(
      Effect.sync(() => worker.seen.filter((r) => after.has(r.data)).length >= after.size),
      "30 seconds",
      "the 32 records written after the timestamp"
    ).pipe(Effect.catch((error) =>
      Effect.fail(
        new Error(
          `${error.message}; delivered ${worker.seen.filter((r) => after.has(r.data)).length}: ${
            worker.seen.map((r) => `${r.shardId.slice(-3)}/${r.data}`).join(" ")
          }`
        )
      )
    ))
    // Give a duplicate the chance to show up.
    yield* Effect.sleep("1 second")

    // Per key, records 2 to 5 (written after the timestamp) arrive once each and in order; 0 and 1
    // (written before) may come first.
    const perKey = new Map<string, Array<number>>()
    for (const record of worker.seen) {
      const [key, index] = record.data.split(":")
      perKey.set(key!, [...(perKey.get(key!) ?? []), Number(index)])
    }
    for (let k = 0; k < KEYS; k++) {
      const indices = perKey.get(String(k)) ?? []
      expect(indices.filter((i) => i >= 2)).toEqual([2, 3, 4, 5])
      expect(indices).toEqual([...indices].sort((a, b) => a - b))
      expect(new Set(indices).size).toBe(indices.length)
    }

    // Each child was acquired only after all of its parents had ended.
    const order = worker.events.map((e) =>
      e._tag === "ShardEnded" ? `end ${e.shardId}` : e._tag === "LeaseAcquired" ? `take ${e.shardId}` : ""
    )
    const listed = yield* Stream.runCollect((yield* Client.Client).listShards(streamName))
    for (const shard of listed) {
      for (const parent of [shard.ParentShardId, shard.AdjacentParentShardId]) {
        if (parent === undefined) continue
        expect(order.indexOf(`end ${parent}`)).toBeGreaterThanOrEqual(0)
        expect(order.indexOf(`end ${parent}`)).toBeLessThan(order.indexOf(`take ${shard.ShardId}`))
      }
    }
  })
