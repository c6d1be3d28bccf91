/**
 * Rebalancing on the DynamoDB lease store while records keep coming: a lease that moves for balance is handed over
 * (the owner checkpoints what it processed and lets go; the new owner starts there), so a worker joining a busy one
 * causes neither duplicates nor losses.
 */
import { UpdateItemCommand } from "@aws-sdk/client-dynamodb"
import { DynamoDbClient, DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Fiber, Schedule } from "effect"
import {
  Env,
  eventually,
  fastLeases,
  observer,
  produce,
  put,
  putRaw,
  readShard,
  startWorker,
  tally,
  uniqueTable
} from "./fixtures.ts"

layer(Env, { excludeTestServices: true, timeout: "90 seconds" })("Rebalancing on the DynamoDB lease store", (it) => {
  describe("graceful hand-off", () => {
    it.effect("a worker joining a busy one takes its share with no record processed twice and none lost", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 4 })
        const table = uniqueTable("rebalance")
        const written = { count: 0 }
        const producer = yield* Effect.forkScoped(produce(streamName, written))
        // Checkpoints a second apart: a lease moved without a hand-off resumes up to a second back.
        const options = { stream: streamName, applicationName: table, checkpointInterval: "1 second" } as const
        const a = yield* startWorker({ ...options, workerId: "a" })
        yield* eventually(Effect.sync(() => a.held().size === 4), "20 seconds", "a holding all shards")
        yield* eventually(Effect.sync(() => a.seen.length > 200), "20 seconds", "a processing")

        const b = yield* startWorker({ ...options, workerId: "b" })
        yield* eventually(Effect.sync(() => a.held().size === 2 && b.held().size === 2), "30 seconds", "2 + 2")
        yield* eventually(Effect.sync(() => b.seen.length > 200), "20 seconds", "b processing")

        yield* Fiber.interrupt(producer)
        const total = written.count
        yield* eventually(
          Effect.sync(() => tally([a, b], total).lost === 0),
          "30 seconds",
          `all ${total} records processed`
        )
        expect(tally([a, b], total)).toEqual({ duplicates: 0, lost: 0 })
        // b's leases came from a, a live worker: the moves were rebalancing, not expiry; a let them go, none was
        // taken from it.
        const acquired = b.events.filter((e) => e._tag === "LeaseAcquired")
        expect(acquired.map((e) => e._tag === "LeaseAcquired" && e.previousOwner)).toEqual(["a", "a"])
        expect(a.events.filter((e) => e._tag === "LeaseLost")).toEqual([])
        expect(a.events.filter((e) => e._tag === "LeaseReleased")).toHaveLength(2)
        // Nothing is left in a hand-off.
        const leases = yield* (yield* observer(table)).list
        expect(leases.map((l) => l.checkpointOwner)).toEqual([undefined, undefined, undefined, undefined])
      }))

    it.effect("a worker stopping while leases are being handed over to it calls those hand-offs off: no lease is left naming it", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 4 })
        const table = uniqueTable("hand-off-cancel")
        const leases = yield* observer(table)
        // Expiry far beyond the test: only the hand-offs and their calling off can move a lease.
        const lease = { ...fastLeases, expiry: "5 minutes", renewInterval: "1 second" } as const
        // a's handler is slow: a hand-off takes it a while (running handlers finish first).
        const a = yield* startWorker({
          stream: streamName,
          applicationName: table,
          workerId: "a",
          lease,
          handler: () => Effect.sleep("3 seconds")
        })
        yield* eventually(Effect.sync(() => a.held().size === 4), "20 seconds", "a holding all shards")
        yield* put(streamName, Array.from({ length: 40 }, (_, i) => ({ partitionKey: `key-${i}`, data: `x${i}` })))
        yield* eventually(Effect.sync(() => a.seen.length > 0), "20 seconds", "a processing")
        const b = yield* startWorker({ stream: streamName, applicationName: table, workerId: "b", lease })
        yield* eventually(
          Effect.map(leases.list, (stored) => stored.filter((l) => l.checkpointOwner === "a").length === 2),
          "20 seconds",
          "two hand-offs from a to b under way"
        )
        yield* b.stop
        const stored = yield* leases.list
        expect(stored.filter((l) => l.leaseOwner === "b" || l.checkpointOwner !== undefined)).toEqual([])
        // a finishes the stops it had begun and takes the leases back (they are free now).
        yield* eventually(Effect.sync(() => a.held().size === 4), "30 seconds", "a holding all shards again")
        expect(b.events.filter((e) => e._tag === "LeaseAcquired")).toEqual([])
      }))

    it.effect("a hand-off its previous owner does not complete is taken over: at once when that owner stopped renewing, after the hand-off time when it renews but ignores it", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const table = uniqueTable("hand-off-fallback")
        yield* put(streamName, Array.from({ length: 24 }, (_, i) => ({ partitionKey: `key-${i}`, data: `old${i}` })))
        const [s0, s1] = [...shards].sort((x, y) => x.shardId.localeCompare(y.shardId))
        const in0 = yield* readShard(streamName, s0!.shardId)
        const in1 = yield* readShard(streamName, s1!.shardId)
        yield* DynamoDbLeaseRepository.make({ applicationName: table })
        const handing = (shard: typeof s0, from: string, checkpoint: string) => ({
          leaseKey: { S: shard!.shardId },
          leaseOwner: { S: "b" },
          checkpointOwner: { S: from },
          leaseCounter: { N: "4" },
          checkpoint: { S: checkpoint },
          checkpointSubSequenceNumber: { N: "0" },
          ownerSwitchesSinceCheckpoint: { N: "0" },
          startingHashKey: { S: shard!.startingHashKey },
          endingHashKey: { S: shard!.endingHashKey }
        })
        // s0: its previous owner died. s1: its previous owner renews on (a KCL 2.x worker, say) but never lets go.
        yield* putRaw(table, handing(s0, "dead", in0[0]!.sequenceNumber))
        yield* putRaw(table, handing(s1, "deaf", in1[0]!.sequenceNumber))
        const { sdk } = yield* DynamoDbClient.DynamoDbClient
        yield* Effect.promise((abortSignal) =>
          sdk.send(
            new UpdateItemCommand({
              TableName: table,
              Key: { leaseKey: { S: s1!.shardId } },
              UpdateExpression: "ADD leaseCounter :one",
              ExpressionAttributeValues: { ":one": { N: "1" } }
            }),
            { abortSignal }
          )
        ).pipe(Effect.repeat(Schedule.spaced("300 millis")), Effect.forkScoped)

        const b = yield* startWorker({ stream: streamName, applicationName: table, workerId: "b" })
        yield* eventually(Effect.sync(() => b.held().size === 2), "40 seconds", "b holding both shards")
        const acquired = b.events.flatMap((e) => e._tag === "LeaseAcquired" ? [[e.shardId, e.previousOwner]] : [])
        // The dead owner's lease first (its counter stood still for an expiry), then the deaf one's.
        expect(acquired).toEqual([[s0!.shardId, "dead"], [s1!.shardId, "deaf"]])
        yield* eventually(
          Effect.sync(() => b.seen.length === in0.length + in1.length - 2),
          "20 seconds",
          "both shards from their checkpoints"
        )
        expect(b.seen.map((r) => r.data).sort()).toEqual(
          [...in0.slice(1), ...in1.slice(1)].map((r) => r.data).sort()
        )
      }))
  })
})
