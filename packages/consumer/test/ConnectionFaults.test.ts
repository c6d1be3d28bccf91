import { LeaseRepository } from "@effect-kinesis/consumer"
import { Client } from "@effect-kinesis/core"
import { KinesisEmulator, StreamFixtures, TcpFaultProxy } from "@effect-kinesis/testing"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { eventually, KinesisLive, put, startWorker } from "./fixtures.ts"

const records = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ partitionKey: `key-${i % 8}`, data: `${prefix}${i}` }))

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("Consumer through a network outage", (it) => {
  for (const httpHandler of ["http1", "http2"] as const) {
    it.effect(`${httpHandler}: polling survives 1.5 s of refused, then reset, Kinesis connections and delivers everything`, () =>
      Effect.gen(function*() {
        const emulator = yield* KinesisEmulator.KinesisEmulator
        const proxy = yield* TcpFaultProxy.make(emulator.endpoint)
        // The worker reads through the proxy; the test writes straight to the emulator.
        const viaProxy = yield* Layer.build(
          Client.layer({ ...emulator.clientConfig, endpoint: proxy.endpoint, httpHandler })
        )
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const repository = yield* LeaseRepository.makeMemory()
        const worker = yield* startWorker({ stream: streamName, workerId: "w", repository }).pipe(
          Effect.provideContext(viaProxy)
        )
        yield* put(streamName, records("before-", 20))
        yield* eventually(Effect.sync(() => worker.seen.length >= 20), "20 seconds", "the first 20 records")

        yield* proxy.outage([{ mode: "refuse", duration: "750 millis" }, { mode: "reset", duration: "750 millis" }])
        yield* put(streamName, records("during-", 20))
        yield* eventually(
          Effect.map(proxy.mode, (mode) => mode === "forward"),
          "5 seconds",
          "the end of the outage"
        )
        yield* put(streamName, records("after-", 20))
        yield* eventually(Effect.sync(() => worker.seen.length >= 60), "20 seconds", "all 60 records")

        assert.isUndefined(worker.fiber.pollUnsafe(), "the consumer is still running")
        assert.strictEqual(new Set(worker.seen.map((r) => r.data)).size, 60)
        const stats = yield* proxy.stats
        assert.isAtLeast(stats.dropped, 1)
        assert.strictEqual(stats.refusals, 1)
      }))

    it.effect(`${httpHandler}: polling survives 3 s of black-holed Kinesis connections (accepted, never answered) and delivers everything`, () =>
      Effect.gen(function*() {
        const emulator = yield* KinesisEmulator.KinesisEmulator
        const proxy = yield* TcpFaultProxy.make(emulator.endpoint)
        const viaProxy = yield* Layer.build(
          Client.layer({ ...emulator.clientConfig, endpoint: proxy.endpoint, httpHandler })
        )
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const repository = yield* LeaseRepository.makeMemory()
        const worker = yield* startWorker({ stream: streamName, workerId: "w", repository }).pipe(
          Effect.provideContext(viaProxy)
        )
        yield* put(streamName, records("before-", 20))
        yield* eventually(Effect.sync(() => worker.seen.length >= 20), "20 seconds", "the first 20 records")

        // Every established connection is reset, and those opened in the next 3 s never get an answer, also
        // afterwards: a flow a NAT or load balancer forgot.
        yield* proxy.outage([{ mode: "blackHole", duration: "3 seconds" }])
        yield* put(streamName, records("during-", 20))
        yield* eventually(
          Effect.map(proxy.mode, (mode) => mode === "forward"),
          "10 seconds",
          "the end of the black hole"
        )
        yield* put(streamName, records("after-", 20))
        const distinct = () => new Set(worker.seen.map((r) => r.data)).size
        yield* eventually(Effect.sync(() => distinct() >= 60), "30 seconds", "all 60 records").pipe(
          Effect.catch((error) => Effect.fail(new Error(`${error.message}; delivered ${distinct()}`)))
        )

        assert.isUndefined(worker.fiber.pollUnsafe(), "the consumer is still running")
        assert.strictEqual(new Set(worker.seen.map((r) => r.data)).size, 60)
        assert.isAtLeast((yield* proxy.stats).blackHoled, 1)
      }))
  }
})
