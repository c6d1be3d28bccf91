import { Consumer, type Lease, LeaseRepository } from "@effect-kinesis/consumer"
import { AdminClient, Client, ExtendedSequenceNumber } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { eventually, fastLeases, KinesisLive, put, shardedStreamOptions, startWorker } from "./fixtures.ts"
import { atTimestampAcrossReshard, phase, splitAndMerge } from "./scenarios.ts"

// The children of `parent`, lower hash range first.
const childrenOf = (stream: string, parent: string) =>
  Effect.gen(function*() {
    const shards = yield* Stream.runCollect((yield* Client.Client).listShards(stream))
    return shards
      .filter((s) => s.ParentShardId === parent)
      .sort((a, b) => (BigInt(a.HashKeyRange!.StartingHashKey!) < BigInt(b.HashKeyRange!.StartingHashKey!) ? -1 : 1))
      .map((s) => ({ shardId: s.ShardId!, hashKey: s.HashKeyRange!.StartingHashKey! }))
  })

// Records `from` to `from + count` of `phase`, all routed to the shard whose range starts at `hashKey`.
const phaseOn = (hashKey: string, from: number, count: number) =>
  phase(from, count).map((r) => ({ ...r, explicitHashKey: hashKey }))

const leaseKeys = (repository: LeaseRepository.LeaseRepository["Service"]) =>
  Effect.map(repository.list, (leases) => leases.map((l) => l.leaseKey).sort())

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("Resharding", (it) => {
  describe("split and merge while consuming", () => {
    it.effect("children start only after their parents end, and per-key order holds across split and merge", () =>
      splitAndMerge((stream, repository) =>
        startWorker({
          stream,
          workerId: "w",
          repository,
          handler: () => Effect.sleep("5 millis"),
          lease: { ...fastLeases, cleanupFinished: false }
        })
      ))
  })

  describe("AT_TIMESTAMP", () => {
    const start = (
      stream: string,
      repository: LeaseRepository.LeaseRepository["Service"],
      initialPosition: Consumer.InitialPosition
    ) => startWorker({ stream, workerId: "w", repository, initialPosition })

    it.effect("started at a time before a split, the closed parent is read from the timestamp and its children after it", () =>
      atTimestampAcrossReshard("split", start))

    it.effect("started at a time before a merge, both closed parents are read from the timestamp and the child after them", () =>
      atTimestampAcrossReshard("merge", start))

    it.effect("a shard closed before the timestamp is not read; its children are, from the timestamp", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        const parent = shards[0]!.shardId
        yield* put(streamName, phase(0, 16))
        yield* admin.splitShard(streamName, parent)
        // kinesis-mock records when a shard closed in whole seconds.
        yield* Effect.sleep("1100 millis")
        yield* put(streamName, phase(16, 16))
        yield* Effect.sleep("20 millis")
        const timestamp = new Date()
        yield* Effect.sleep("20 millis")
        yield* put(streamName, phase(32, 16))

        const worker = yield* startWorker({
          stream: streamName,
          workerId: "w",
          repository,
          initialPosition: { atTimestamp: timestamp }
        })
        yield* eventually(Effect.sync(() => worker.seen.length >= 16), "30 seconds", "16 records")
        yield* Effect.sleep("2 seconds")
        expect(worker.seen.map((r) => r.data).sort()).toEqual(phase(32, 16).map((r) => r.data).sort())
        const touched = worker.events.filter((e) =>
          (e._tag === "NewShardDetected" || e._tag === "LeaseAcquired") && e.shardId === parent
        )
        expect(touched).toEqual([])
        expect((yield* repository.list).map((l) => l.leaseKey)).not.toContain(parent)
      }))

    it.effect("a timestamp older than the stream delivers every record, across a split, as TRIM_HORIZON does", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, phase(0, 24))
        yield* admin.splitShard(streamName, shards[0]!.shardId)
        yield* put(streamName, phase(24, 24))

        const worker = yield* startWorker({
          stream: streamName,
          workerId: "w",
          repository,
          initialPosition: { atTimestamp: new Date(Date.now() - 3_600_000) }
        })
        yield* eventually(Effect.sync(() => worker.seen.length >= 48), "30 seconds", "all 48 records").pipe(
          Effect.catch((error) => Effect.fail(new Error(`${error.message}; delivered ${worker.seen.length}`)))
        )
        yield* Effect.sleep("1 second")
        expect(worker.seen.map((r) => r.data).sort()).toEqual(phase(0, 48).map((r) => r.data).sort())
      }))
  })

  describe("finished leases", () => {
    it.effect("a parent's lease is deleted once its children started, and the parent is never read again, also after a restart", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        const parent = shards[0]!.shardId
        yield* put(streamName, phase(0, 24))
        yield* admin.splitShard(streamName, parent)
        yield* put(streamName, phase(24, 24))

        const first = yield* startWorker({ stream: streamName, workerId: "w1", repository })
        yield* eventually(Effect.sync(() => first.seen.length >= 48), "30 seconds", "all 48 records")
        // The worker reports a deletion after the store made it: wait for the event too.
        yield* eventually(
          Effect.map(repository.list, (leases) =>
            leases.length === 2 && leases.every((l) => l.leaseKey !== parent) &&
            first.events.some((e) => e._tag === "LeaseDeleted")),
          "10 seconds",
          "the parent's lease deleted"
        )
        expect(first.events.filter((e) => e._tag === "LeaseDeleted").map((e) => e.shardId)).toEqual([parent])
        // Several more shard syncs (one a second) find the closed parent without a lease.
        yield* Effect.sleep("3500 millis")
        expect((yield* repository.list).map((l) => l.leaseKey)).not.toContain(parent)
        yield* first.stop

        // A restarted worker resumes the children and reads nothing of the parent again.
        const second = yield* startWorker({ stream: streamName, workerId: "w2", repository })
        yield* put(streamName, phase(48, 8))
        yield* eventually(Effect.sync(() => second.seen.length >= 8), "30 seconds", "8 new records")
        yield* Effect.sleep("2 seconds")
        expect(second.seen.map((r) => r.data).sort()).toEqual(phase(48, 8).map((r) => r.data).sort())
        expect(second.seen.every((r) => r.shardId !== parent)).toBe(true)
        const all = [...first.seen, ...second.seen]
        expect(new Set(all.map((r) => r.sequenceNumber)).size).toBe(56)
        expect(all.filter((r) => r.shardId === parent)).toHaveLength(24)
      }))

    it.effect("split P into C1 and C2, records only on C1, split C1: P's and C1's leases go, parents first, while C2 still has no record; nothing is read twice", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        const p = shards[0]!.shardId
        const worker = yield* startWorker({ stream: streamName, workerId: "w", repository })
        yield* put(streamName, phase(0, 8))
        yield* eventually(Effect.sync(() => worker.seen.length >= 8), "30 seconds", "P's 8 records")
        yield* admin.splitShard(streamName, p)
        const [c1, c2] = yield* childrenOf(streamName, p)
        yield* put(streamName, phaseOn(c1!.hashKey, 8, 8))
        yield* eventually(Effect.sync(() => worker.seen.length >= 16), "30 seconds", "C1's 8 records")
        yield* admin.splitShard(streamName, c1!.shardId)
        const [d1, d2] = yield* childrenOf(streamName, c1!.shardId)
        yield* put(streamName, [...phaseOn(d1!.hashKey, 16, 8), ...phaseOn(d2!.hashKey, 24, 8)])
        yield* eventually(Effect.sync(() => worker.seen.length >= 32), "30 seconds", "D1's and D2's 16 records")

        const open = [c2!.shardId, d1!.shardId, d2!.shardId].sort()
        // The worker reports a deletion after the store made it: wait for the events too.
        yield* eventually(
          Effect.map(
            leaseKeys(repository),
            (keys) => keys.join() === open.join() && worker.events.filter((e) => e._tag === "LeaseDeleted").length >= 2
          ),
          "15 seconds",
          "only the open shards' leases"
        ).pipe(
          Effect.catch((error) =>
            Effect.flatMap(
              leaseKeys(repository),
              (keys) => Effect.fail(new Error(`${error.message}; leases: ${keys.join(", ")}`))
            )
          )
        )
        const deleted = worker.events.filter((e) => e._tag === "LeaseDeleted").map((e) => e.shardId)
        expect(deleted).toEqual([p, c1!.shardId])

        // C2's first records: read once, and the table keeps only the open shards' leases.
        yield* put(streamName, phaseOn(c2!.hashKey, 32, 8))
        yield* eventually(Effect.sync(() => worker.seen.length >= 40), "30 seconds", "C2's 8 records")
        yield* Effect.sleep("3 seconds")
        expect(yield* leaseKeys(repository)).toEqual(open)
        expect(worker.seen.map((r) => r.data).sort()).toEqual(phase(0, 40).map((r) => r.data).sort())
        const created = worker.events.filter((e) => e._tag === "NewShardDetected").map((e) => e.shardId).sort()
        expect(created).toEqual([p, c1!.shardId, c2!.shardId, d1!.shardId, d2!.shardId].sort())
      }))

    // With cleanup off the parent's lease stays: the consumed child below it must not be leased again either.
    for (
      const [initialPosition, cleanupFinished] of [["TRIM_HORIZON", true], ["LATEST", true], ["LATEST", false]] as const
    ) {
      it.effect(`${initialPosition}, cleanup ${cleanupFinished ? "on" : "off"}: a table an older cleanup left with a parent whose consumed descendants' leases were deleted first: nothing is read again, and the parent's lease goes with cleanup on`, () =>
        Effect.gen(function*() {
          const admin = yield* AdminClient.AdminClient
          const client = yield* Client.Client
          const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
          const p = shards[0]!.shardId
          yield* put(streamName, phase(0, 8))
          yield* admin.splitShard(streamName, p)
          const [c1, c2] = yield* childrenOf(streamName, p)
          yield* put(streamName, phaseOn(c1!.hashKey, 8, 8))
          yield* admin.splitShard(streamName, c1!.shardId)
          const ds = yield* childrenOf(streamName, c1!.shardId)
          for (const d of ds) yield* admin.splitShard(streamName, d.shardId)
          const es = [
            ...(yield* childrenOf(streamName, ds[0]!.shardId)),
            ...(yield* childrenOf(streamName, ds[1]!.shardId))
          ]
          // Two records on each grandchild of C1; its lease says the first was processed.
          const written = yield* client.putRecords(
            streamName,
            phase(16, 8).map((r, i) => ({
              PartitionKey: r.partitionKey,
              ExplicitHashKey: es[Math.floor(i / 2)]!.hashKey,
              Data: new TextEncoder().encode(r.data)
            }))
          )
          const lease = (
            key: string,
            checkpoint: ExtendedSequenceNumber.ExtendedSequenceNumber,
            parents: ReadonlyArray<string>,
            children: ReadonlyArray<string> = []
          ): Lease.Lease => ({
            leaseKey: key,
            leaseOwner: undefined,
            leaseCounter: 3,
            checkpoint,
            pendingCheckpoint: undefined,
            ownerSwitchesSinceCheckpoint: 0,
            parentShardIds: parents,
            childShardIds: children,
            hashKeyRange: undefined
          })
          // C1, D1 and D2 were consumed and their leases deleted before P's: P waits for C1's lease forever.
          const repository = yield* LeaseRepository.makeMemory({
            leases: [
              lease(p, ExtendedSequenceNumber.shardEnd, [], [c1!.shardId, c2!.shardId]),
              lease(c2!.shardId, ExtendedSequenceNumber.trimHorizon, [p]),
              ...es.map((e, i) =>
                lease(e.shardId, ExtendedSequenceNumber.make(written.Records![2 * i]!.SequenceNumber!), [
                  ds[Math.floor(i / 2)]!.shardId
                ])
              )
            ]
          })

          const worker = yield* startWorker({
            stream: streamName,
            workerId: "w",
            repository,
            initialPosition,
            lease: { ...fastLeases, cleanupFinished }
          })
          const open = [...(cleanupFinished ? [] : [p]), c2!.shardId, ...es.map((e) => e.shardId)].sort()
          yield* eventually(
            Effect.map(leaseKeys(repository), (keys) => keys.join() === open.join()),
            "15 seconds",
            "only the open shards' leases"
          ).pipe(
            Effect.catch((error) =>
              Effect.flatMap(
                leaseKeys(repository),
                (keys) => Effect.fail(new Error(`${error.message}; leases: ${keys.join(", ")}`))
              )
            )
          )
          yield* put(streamName, phaseOn(c2!.hashKey, 24, 8))
          yield* eventually(Effect.sync(() => worker.seen.length >= 12), "30 seconds", "12 records")
          yield* Effect.sleep("3 seconds")
          const expected = [...phase(16, 8).filter((_, i) => i % 2 === 1), ...phase(24, 8)].map((r) => r.data).sort()
          expect(worker.seen.map((r) => r.data).sort()).toEqual(expected)
          expect(worker.events.filter((e) => e._tag === "LeaseDeleted").map((e) => e.shardId)).toEqual(
            cleanupFinished ? [p] : []
          )
          expect(worker.events.filter((e) => e._tag === "NewShardDetected")).toEqual([])
          expect(yield* leaseKeys(repository)).toEqual(open)
        }))
    }

    it.effect("a store refusing deletes does not stop the consumer: the finished lease stays", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        let refused = 0
        const repository = yield* LeaseRepository.makeMemory({
          fault: (operation) => {
            if (operation !== "delete") return undefined
            refused++
            return new LeaseRepository.LeaseStoreError({ operation, message: "access denied", retryable: false })
          }
        })
        const parent = shards[0]!.shardId
        yield* put(streamName, phase(0, 8))
        yield* admin.splitShard(streamName, parent)
        yield* put(streamName, phase(8, 8))
        const worker = yield* startWorker({ stream: streamName, workerId: "w", repository })
        yield* eventually(Effect.sync(() => worker.seen.length >= 16), "30 seconds", "all 16 records")
        yield* eventually(Effect.sync(() => refused >= 2), "10 seconds", "two refused cleanups")
        yield* put(streamName, phase(16, 8))
        yield* eventually(Effect.sync(() => worker.seen.length >= 24), "30 seconds", "8 more records")
        expect(worker.fiber.pollUnsafe()).toBeUndefined()
        expect(worker.seen).toHaveLength(24)
        expect((yield* repository.list).map((l) => l.leaseKey)).toContain(parent)
      }))

    it.effect("with cleanupFinished off, finished leases stay", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        const parent = shards[0]!.shardId
        yield* put(streamName, phase(0, 8))
        yield* admin.splitShard(streamName, parent)
        yield* put(streamName, phase(8, 8))
        const worker = yield* startWorker({
          stream: streamName,
          workerId: "w",
          repository,
          lease: { ...fastLeases, cleanupFinished: false }
        })
        yield* eventually(Effect.sync(() => worker.seen.length >= 16), "30 seconds", "all 16 records")
        yield* Effect.sleep("2500 millis")
        const stored = (yield* repository.list).find((l) => l.leaseKey === parent)
        expect(stored !== undefined && ExtendedSequenceNumber.isShardEnd(stored.checkpoint)).toBe(true)
        expect(worker.events.some((e) => e._tag === "LeaseDeleted")).toBe(false)
      }))
  })

  describe("a crash at shard end", () => {
    // A worker killed after writing P's SHARD_END and before creating its children's leases, with
    // C1 split again before the next shard sync: C1 is closed and has no lease, D1 and D2 neither.
    for (
      const [name, initialPosition] of [
        ["LATEST", () => "LATEST" as const],
        ["AT_TIMESTAMP", (before: Date) => ({ atTimestamp: before })],
        // A timestamp taken at the restart (C1 closed before it, so Kinesis does not list it FROM_TIMESTAMP):
        // the leased lineage still decides, as the initial position only applies to shards it does not reach.
        ["AT_TIMESTAMP of the restart", () => ({ atTimestamp: new Date() })]
      ] as const
    ) {
      it.effect(`${name}: the closed child without a lease and its children are read from their beginning, children after parents`, () =>
        Effect.gen(function*() {
          const admin = yield* AdminClient.AdminClient
          const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
          const p = shards[0]!.shardId
          const before = new Date(Date.now() - 1000)
          yield* put(streamName, phase(0, 8))
          yield* admin.splitShard(streamName, p)
          const [c1, c2] = yield* childrenOf(streamName, p)
          yield* put(streamName, [...phaseOn(c1!.hashKey, 8, 8), ...phaseOn(c2!.hashKey, 16, 8)])
          yield* admin.splitShard(streamName, c1!.shardId)
          const [d1, d2] = yield* childrenOf(streamName, c1!.shardId)
          yield* put(streamName, [...phaseOn(d1!.hashKey, 24, 8), ...phaseOn(d2!.hashKey, 32, 8)])
          const repository = yield* LeaseRepository.makeMemory({
            leases: [{
              leaseKey: p,
              leaseOwner: undefined,
              leaseCounter: 7,
              checkpoint: ExtendedSequenceNumber.shardEnd,
              pendingCheckpoint: undefined,
              ownerSwitchesSinceCheckpoint: 0,
              parentShardIds: [],
              childShardIds: [c1!.shardId, c2!.shardId],
              hashKeyRange: undefined
            }]
          })

          // kinesis-mock records when a shard closed in whole seconds.
          yield* Effect.sleep("1100 millis")
          const worker = yield* startWorker({
            stream: streamName,
            workerId: "w",
            repository,
            initialPosition: initialPosition(before)
          })
          yield* eventually(Effect.sync(() => worker.seen.length >= 32), "30 seconds", "the 32 records after P").pipe(
            Effect.catch((error) => Effect.fail(new Error(`${error.message}; delivered ${worker.seen.length}`)))
          )
          yield* Effect.sleep("2 seconds")
          expect(worker.seen.map((r) => r.data).sort()).toEqual(phase(8, 32).map((r) => r.data).sort())
          // D1 and D2 begin only after C1's last record.
          const lastOfC1 = worker.seen.findLastIndex((r) => r.shardId === c1!.shardId)
          const firstOfD = worker.seen.findIndex((r) => r.shardId === d1!.shardId || r.shardId === d2!.shardId)
          expect(lastOfC1).toBeLessThan(firstOfD)
        }))
    }
  })

  describe("shard end", () => {
    it.effect("SHARD_END is written only once every record of the shard was staged; until then the checkpoint stays at the last staged record", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        const parent = shards[0]!.shardId
        yield* put(streamName, Array.from({ length: 5 }, (_, i) => ({ partitionKey: "k", data: `r${i}` })))
        yield* admin.splitShard(streamName, parent)

        // Reads the closed parent to its end, staging every record but those `skip` names, then stops.
        const readParent = (skip: (data: string) => boolean) =>
          Consumer.shardedStream(shardedStreamOptions(streamName)).pipe(
            Stream.filter((shard) => shard.shardId === parent),
            Stream.take(1),
            Stream.flatMap((shard) =>
              shard.records.pipe(
                Stream.tap((record) => skip(record.data) ? Effect.void : shard.checkpointer.stage(record))
              )
            ),
            Stream.runCollect,
            Effect.provide(Consumer.layer),
            Effect.provideService(LeaseRepository.LeaseRepository, repository)
          )
        const parentLease = Effect.map(repository.list, (leases) => leases.find((l) => l.leaseKey === parent)!)

        // The pipeline still owes its last record (as with concurrent or buffered processing).
        const first = yield* readParent((data) => data === "r4")
        expect(first.map((r) => r.data)).toEqual(["r0", "r1", "r2", "r3", "r4"])
        const pending = yield* parentLease
        expect(pending.checkpoint).toEqual(ExtendedSequenceNumber.make(first[3]!.sequenceNumber, 0))
        expect(pending.childShardIds).toEqual([])
        expect(pending.leaseOwner).toBeUndefined()

        // Resumed from that checkpoint, with every record staged, the shard ends.
        const second = yield* readParent(() => false)
        expect(second.map((r) => r.data)).toEqual(["r4"])
        const ended = yield* parentLease
        expect(ExtendedSequenceNumber.isShardEnd(ended.checkpoint)).toBe(true)
        expect(ended.childShardIds).toHaveLength(2)
      }))
  })
})
