import { Consumer, LeaseRepository } from "@effect-kinesis/consumer"
import { Client, ExtendedSequenceNumber, KinesisError, Serde } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { assert, describe, expect, it, layer } from "@effect/vitest"
import { Effect, Exit, Layer, Stream } from "effect"
import { eventually, KinesisLive, put, startWorker } from "./fixtures.ts"

const lease = (leaseKey: string) => ({
  leaseKey,
  leaseOwner: undefined,
  leaseCounter: 0,
  checkpoint: ExtendedSequenceNumber.trimHorizon,
  pendingCheckpoint: undefined,
  ownerSwitchesSinceCheckpoint: 0,
  parentShardIds: [],
  childShardIds: [],
  hashKeyRange: undefined
})

// No stream behind it: a consumer that passes its start checks fails with StreamNotFound.
const gone = new KinesisError.StreamNotFound({ operation: "ListShards", message: "no such stream" })
const NoStream = Layer.succeed(
  Client.Client,
  new Proxy({}, {
    get: (_, method) =>
      method === "listShards" || method === "listStreams" || method === "subscribeToShard" ||
        method === "listStreamConsumers"
        ? () => Stream.fail(gone)
        : () => Effect.fail(gone)
  }) as Client.Client["Service"]
)

const startOn = (repository: LeaseRepository.LeaseStore, applicationName: string) =>
  Consumer.consumeWith(() => Effect.void, { stream: "orders", applicationName, deserializer: Serde.string }).pipe(
    Effect.provide(
      Consumer.layer.pipe(Layer.provide([NoStream, Layer.succeed(LeaseRepository.LeaseRepository, repository)]))
    ),
    Effect.exit
  )

const failureOf = (exit: Exit.Exit<unknown, unknown>) => {
  const reason = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
  return (reason?._tag === "Fail" ? reason.error : reason) as
    | { readonly _tag: string; readonly setting?: string; readonly message?: string }
    | undefined
}

describe("the in-memory store keeps each application's leases apart", () => {
  it.effect("each application has its own leases; the store's own operations are the first application's", () =>
    Effect.gen(function*() {
      const store = yield* LeaseRepository.makeMemory({ leases: [lease("shardId-000000000000")] })
      const billing = store.forApplication!("billing")
      const audit = store.forApplication!("audit")
      assert.strictEqual(billing.applicationName, "billing")
      assert.strictEqual(audit.applicationName, "audit")
      // The seeded lease is the first application's.
      assert.deepStrictEqual((yield* billing.list).map((l) => l.leaseKey), ["shardId-000000000000"])
      assert.deepStrictEqual(yield* audit.list, [])
      yield* audit.create(lease("shardId-000000000001"))
      const taken = yield* audit.take((yield* audit.get("shardId-000000000001"))!, "w")
      assert.strictEqual(taken.leaseOwner, "w")
      assert.deepStrictEqual((yield* billing.list).map((l) => l.leaseKey), ["shardId-000000000000"])
      assert.deepStrictEqual((yield* store.list).map((l) => l.leaseKey), ["shardId-000000000000"])
      // The same application gets the same leases again.
      assert.deepStrictEqual((yield* store.forApplication!("audit").list).map((l) => l.leaseOwner), ["w"])
    }))

  it.effect("a copy with operations replaced (a decorator) keeps them for the first application; another one fails at start", () =>
    Effect.gen(function*() {
      const store = yield* LeaseRepository.makeMemory()
      const decorated: LeaseRepository.LeaseStore = { ...store, list: Effect.succeed([lease("decorated")]) }
      const own = decorated.forApplication!("billing")
      assert.strictEqual(own, decorated)
      assert.deepStrictEqual((yield* own.list).map((l) => l.leaseKey), ["decorated"])
      const failure = failureOf(yield* startOn(decorated, "audit"))
      assert.strictEqual(failure?._tag, "InvalidSetting")
      assert.strictEqual(failure?.setting, "applicationName")
    }))

  it.effect("a store made for one application is that application's", () =>
    Effect.gen(function*() {
      const store = yield* LeaseRepository.makeMemory({ applicationName: "billing" })
      assert.strictEqual(store.applicationName, "billing")
      assert.isUndefined(store.forApplication)
    }))
})

describe("a consumer whose application name is not its lease store's", () => {
  it.effect("fails at start with InvalidSetting(applicationName), naming both", () =>
    Effect.gen(function*() {
      const store = yield* LeaseRepository.makeMemory({ applicationName: "billing" })
      const failure = failureOf(yield* startOn(store, "billing-v2"))
      assert.strictEqual(failure?._tag, "InvalidSetting")
      assert.strictEqual(failure?.setting, "applicationName")
      expect(failure?.message).toContain(`"billing"`)
      expect(failure?.message).toContain(`"billing-v2"`)
    }))

  it.effect("a store of any other kind that names its application is checked the same way", () =>
    Effect.gen(function*() {
      const store = { ...(yield* LeaseRepository.makeMemory()), applicationName: "billing", forApplication: undefined }
      assert.strictEqual(failureOf(yield* startOn(store, "orders"))?._tag, "InvalidSetting")
    }))

  it.effect("the same name passes (the consumer goes on to read the stream)", () =>
    Effect.gen(function*() {
      const bound = yield* LeaseRepository.makeMemory({ applicationName: "billing" })
      assert.deepStrictEqual(failureOf(yield* startOn(bound, "billing")), gone)
      const unbound = yield* LeaseRepository.makeMemory()
      assert.deepStrictEqual(failureOf(yield* startOn(unbound, "billing")), gone)
    }))
})

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })(
  "two applications on one in-memory store",
  (it) => {
    it.effect("each reads every record with its own leases and checkpoints; neither takes the other's", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const store = yield* LeaseRepository.makeMemory()
        const data = Array.from({ length: 20 }, (_, i) => ({ partitionKey: `k${i}`, data: `r${i}` }))
        yield* put(streamName, data)
        const billing = yield* startWorker({
          stream: streamName,
          workerId: "b",
          repository: store,
          applicationName: "billing"
        })
        const audit = yield* startWorker({
          stream: streamName,
          workerId: "a",
          repository: store,
          applicationName: "audit"
        })
        yield* eventually(
          Effect.sync(() => billing.seen.length >= 20 && audit.seen.length >= 20),
          "30 seconds",
          "20 records each"
        )
        yield* billing.stop
        yield* audit.stop
        expect(billing.seen.map((r) => r.data).sort()).toEqual(data.map((r) => r.data).sort())
        expect(audit.seen.map((r) => r.data).sort()).toEqual(data.map((r) => r.data).sort())
        for (const application of ["billing", "audit"]) {
          const leases = yield* store.forApplication!(application).list
          expect(leases).toHaveLength(2)
          // Each application's checkpoints are past every record of its shards.
          for (const l of leases) expect(ExtendedSequenceNumber.isSentinel(l.checkpoint)).toBe(false)
        }
      }))
  }
)
