import { Client, Serde } from "@effect-kinesis/core"
import { Producer } from "@effect-kinesis/producer"
import { KinesisEmulator, StreamFixtures, TcpFaultProxy } from "@effect-kinesis/testing"
import { assert, layer } from "@effect/vitest"
import { Effect, Exit, Layer, Stream } from "effect"

const TestLayer = TcpFaultProxy.layer(Effect.map(KinesisEmulator.KinesisEmulator, (e) => e.endpoint)).pipe(
  Layer.provideMerge(KinesisEmulator.layer())
)

/** A client through the TCP fault proxy, over the given HTTP handler. */
const viaProxy = (httpHandler: "http1" | "http2") =>
  Layer.unwrap(Effect.gen(function*() {
    const emulator = yield* KinesisEmulator.KinesisEmulator
    const proxy = yield* TcpFaultProxy.TcpFaultProxy
    return Client.layer({ ...emulator.clientConfig, endpoint: proxy.endpoint, httpHandler })
  }))

const direct = Layer.unwrap(Effect.map(KinesisEmulator.KinesisEmulator, (e) => Client.layer(e.clientConfig)))

/** How many records the stream holds, read straight from the emulator. */
const storedCount = (stream: string) =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    let count = 0
    for (const shard of yield* Stream.runCollect(client.listShards(stream))) {
      const iterator = yield* client.getShardIterator(stream, { shardId: shard.ShardId!, type: "TRIM_HORIZON" })
      const out = yield* client.getRecords({ ShardIterator: iterator, Limit: 10_000 })
      count += out.Records?.length ?? 0
    }
    return count
  }).pipe(Effect.provide(direct))

layer(TestLayer, { timeout: 60_000, excludeTestServices: true })("Producer through a network outage", (it) => {
  for (const httpHandler of ["http1", "http2"] as const) {
    it.effect(`${httpHandler}: records offered while connections are refused, then reset, are all acknowledged`, () =>
      Effect.gen(function*() {
        const proxy = yield* TcpFaultProxy.TcpFaultProxy
        const stream = yield* StreamFixtures.stream({ shardCount: 2 })
        const exits = yield* Effect.scoped(
          Effect.gen(function*() {
            const producer = yield* Producer.make({ stream: stream.streamName, serde: Serde.string })
            yield* producer.produce({ partitionKey: "warm", data: "warm" })
            yield* proxy.resetStats
            yield* proxy.outage([{ mode: "refuse", duration: "750 millis" }, { mode: "reset", duration: "750 millis" }])
            // One record every 50 ms for the 1.5 s of the outage, each awaited on its own.
            return yield* Effect.forEach(
              Array.from({ length: 30 }, (_, i) => i),
              (i) =>
                Effect.sleep(i * 50).pipe(
                  Effect.andThen(producer.produce({ partitionKey: `key-${i}`, data: `record-${i}` })),
                  Effect.exit
                ),
              { concurrency: "unbounded" }
            )
          }).pipe(Effect.provide(viaProxy(httpHandler)))
        )
        const failures = exits.filter(Exit.isFailure).map((exit) => String(exit.cause))
        assert.deepStrictEqual(failures, [])
        const stats = yield* proxy.stats
        // The outage really happened: the warm connection was dropped and the listener closed.
        assert.isAtLeast(stats.dropped, 1)
        assert.strictEqual(stats.refusals, 1)
        assert.strictEqual(yield* storedCount(stream.streamName), 31)
      }))
  }
})
