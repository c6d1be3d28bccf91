import { LeaseRepository } from "@effect-kinesis/consumer"
import { AdminClient, ExtendedSequenceNumber } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { eventually, KinesisLive, put, startWorker } from "./fixtures.ts"

const KEYS = 8

// Record i of key k carries "k:i", so the order per key can be checked from the data.
const phase = (from: number, count: number) =>
  Array.from({ length: count }, (_, i) => {
    const n = from + i
    return { partitionKey: `key-${n % KEYS}`, data: `${n % KEYS}:${Math.floor(n / KEYS)}` }
  })

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("Resharding", (it) => {
  describe("split and merge while consuming", () => {
    it.effect("children start only after their parents end, and per-key order holds across split and merge", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        const parent = shards[0]!.shardId
        // The split happens before the worker starts, so it finds the parent and its children at
        // once; a slow processor keeps the parent's backlog around while the children have records.
        yield* put(streamName, phase(0, 48))
        yield* admin.splitShard(streamName, parent)
        yield* put(streamName, phase(48, 48))
        const worker = yield* startWorker({
          stream: streamName,
          workerId: "w",
          repository,
          handler: () => Effect.sleep("5 millis")
        })
        yield* eventually(
          Effect.map(repository.list, (leases) => leases.length === 3),
          "20 seconds",
          "child leases"
        )
        const children = (yield* repository.list).map((l) => l.leaseKey).filter((id) => id !== parent).sort()
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
      }))
  })
})
