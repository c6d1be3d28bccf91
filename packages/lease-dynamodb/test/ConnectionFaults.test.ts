import { Client } from "@effect-kinesis/core"
import { DynamoDbClient, DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { DynamoEmulator, KinesisEmulator, StreamFixtures, TcpFaultProxy } from "@effect-kinesis/testing"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Env, eventually, put, startWorker, uniqueTable } from "./fixtures.ts"

const records = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ partitionKey: `key-${i % 8}`, data: `${prefix}${i}` }))

/** A proxy in front of dynalite, and a DynamoDB client through it (HTTP/1.1: DynamoDB speaks nothing else). */
const dynamoViaProxy = Effect.gen(function*() {
  const dynamo = yield* DynamoEmulator.DynamoEmulator
  const proxy = yield* TcpFaultProxy.make(dynamo.endpoint)
  return { proxy, client: DynamoDbClient.layer({ ...dynamo.clientConfig, endpoint: proxy.endpoint }) }
})

const outage = [{ mode: "refuse", duration: "750 millis" }, { mode: "reset", duration: "750 millis" }] as const

layer(Env, { excludeTestServices: true, timeout: "60 seconds" })(
  "DynamoDB lease store through a network outage",
  (it) => {
    it.effect("calls during 1.5 s of refused, then reset, DynamoDB connections are retried within the budget", () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* dynamoViaProxy
        const table = uniqueTable("outage-calls")
        // A budget well above the outage: backoff doubles, so the retry after a 1.5 s outage may come
        // as late as 2.4 s, past the default 2 s budget on a loaded machine.
        const store = yield* DynamoDbLeaseRepository.make({ applicationName: table, retry: { budget: "5 seconds" } })
          .pipe(
            Effect.provide(client)
          )
        assert.deepStrictEqual(yield* store.list, [])
        yield* proxy.outage(outage)
        // The first call waits the outage out.
        assert.deepStrictEqual(yield* store.list, [])
        assert.isUndefined(yield* store.get("shardId-000000000000"))
        const stats = yield* proxy.stats
        assert.isAtLeast(stats.dropped, 1)
        assert.strictEqual(stats.refusals, 1)
      }).pipe(Effect.scoped))

    it.effect("calls during 3 s of black-holed DynamoDB connections fail within the budget, and those after it succeed", () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* dynamoViaProxy
        const table = uniqueTable("blackhole-calls")
        const store = yield* DynamoDbLeaseRepository.make({ applicationName: table }).pipe(
          Effect.provide(client)
        )
        assert.deepStrictEqual(yield* store.list, [])
        // Established connections are reset; those opened in the next 3 s are never answered, also afterwards.
        yield* proxy.outage([{ mode: "blackHole", duration: "3 seconds" }])
        const error = yield* Effect.flip(store.list)
        assert.strictEqual(error._tag, "LeaseStoreError")
        assert.isTrue(error.retryable)
        yield* eventually(
          Effect.map(proxy.mode, (mode) => mode === "forward"),
          "5 seconds",
          "the end of the black hole"
        )
        assert.deepStrictEqual(yield* store.list, [])
        assert.isUndefined(yield* store.get("shardId-000000000000"))
        assert.isAtLeast((yield* proxy.stats).blackHoled, 1)
      }).pipe(Effect.scoped))

    it.effect("a consumer survives 3 s of black-holed DynamoDB connections, holds its leases after it, delivers all", () =>
      Effect.gen(function*() {
        const { client, proxy } = yield* dynamoViaProxy
        const emulator = yield* KinesisEmulator.KinesisEmulator
        const context = yield* Layer.build(Layer.mergeAll(client, Client.layer(emulator.clientConfig)))
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const table = uniqueTable("blackhole-consumer")
        const worker = yield* startWorker({ stream: streamName, applicationName: table, workerId: "w" }).pipe(
          Effect.provideContext(context)
        )
        yield* put(streamName, records("before-", 20))
        yield* eventually(
          Effect.sync(() => worker.seen.length >= 20 && worker.held().size === 2),
          "20 seconds",
          "20 records and both leases"
        )

        yield* proxy.outage([{ mode: "blackHole", duration: "3 seconds" }])
        yield* put(streamName, records("during-", 20))
        yield* eventually(
          Effect.map(proxy.mode, (mode) => mode === "forward"),
          "10 seconds",
          "the end of the black hole"
        )
        yield* put(streamName, records("after-", 20))
        // Leases lost while the store was silent are taken again from their checkpoints: records may come twice.
        yield* eventually(
          Effect.sync(() => new Set(worker.seen.map((r) => r.data)).size >= 60 && worker.held().size === 2),
          "30 seconds",
          "all 60 records, both leases held"
        ).pipe(
          Effect.catch((error) =>
            Effect.fail(
              new Error(`${error.message}; ${new Set(worker.seen.map((r) => r.data)).size} distinct delivered`)
            )
          )
        )
        assert.isUndefined(worker.fiber.pollUnsafe(), "the consumer is still running")
        assert.strictEqual(new Set(worker.seen.map((r) => r.data)).size, 60)
      }).pipe(Effect.scoped))

    for (const httpHandler of ["http1", "http2"] as const) {
      it.effect(`Kinesis on ${httpHandler}: a consumer survives a 1.5 s DynamoDB outage, holds its leases after it, delivers all`, () =>
        Effect.gen(function*() {
          const { client, proxy } = yield* dynamoViaProxy
          const emulator = yield* KinesisEmulator.KinesisEmulator
          const context = yield* Layer.build(
            Layer.mergeAll(client, Client.layer({ ...emulator.clientConfig, httpHandler }))
          )
          const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
          const table = uniqueTable("outage-consumer")
          const worker = yield* startWorker({ stream: streamName, applicationName: table, workerId: "w" }).pipe(
            Effect.provideContext(context)
          )
          yield* put(streamName, records("before-", 20))
          yield* eventually(
            Effect.sync(() => worker.seen.length >= 20 && worker.held().size === 2),
            "20 seconds",
            "20 records and both leases"
          )

          yield* proxy.outage(outage)
          yield* put(streamName, records("during-", 20))
          yield* eventually(Effect.map(proxy.mode, (mode) => mode === "forward"), "5 seconds", "the end of the outage")
          yield* put(streamName, records("after-", 20))
          yield* eventually(
            Effect.sync(() => worker.seen.length >= 60 && worker.held().size === 2),
            "20 seconds",
            "all 60 records, both leases held"
          )
          assert.isUndefined(worker.fiber.pollUnsafe(), "the consumer is still running")
          assert.strictEqual(new Set(worker.seen.map((r) => r.data)).size, 60)
          assert.strictEqual((yield* proxy.stats).refusals, 1)
        }).pipe(Effect.scoped))
    }
  }
)
