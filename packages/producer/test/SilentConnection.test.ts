import { Client, Serde } from "@effect-kinesis/core"
import { Producer } from "@effect-kinesis/producer"
import { KinesisEmulator, StreamFixtures } from "@effect-kinesis/testing"
import { assert, layer } from "@effect/vitest"
import { Effect, Exit, Layer } from "effect"
import * as Net from "node:net"

/**
 * A TCP proxy whose `silence()` makes every connection established so far go silent for good in both directions (a
 * NAT or load balancer forgetting the flow: no answer, no reset), while new connections are forwarded as usual.
 */
const silencingProxy = (upstream: string) =>
  Effect.acquireRelease(
    Effect.callback<{ endpoint: string; silence: () => void; connections: () => number; server: Net.Server }>(
      (resume) => {
        const target = new URL(upstream)
        const live = new Set<{ silent: boolean }>()
        let connections = 0
        const server = Net.createServer((client) => {
          connections++
          const state = { silent: false }
          live.add(state)
          const up = Net.connect(Number(target.port), target.hostname)
          client.on("data", (chunk) => {
            if (!state.silent) up.write(chunk)
          })
          up.on("data", (chunk) => {
            if (!state.silent) client.write(chunk)
          })
          const close = () => {
            live.delete(state)
            client.destroy()
            up.destroy()
          }
          client.on("close", close).on("error", close)
          up.on("close", close).on("error", close)
        })
        server.listen(0, "127.0.0.1", () =>
          resume(Effect.succeed({
            endpoint: `http://127.0.0.1:${(server.address() as Net.AddressInfo).port}`,
            silence: () => {
              for (const state of live) state.silent = true
            },
            connections: () => connections,
            server
          })))
      }
    ),
    ({ server }) => Effect.sync(() => server.close())
  )

layer(KinesisEmulator.layer(), { timeout: 90_000, excludeTestServices: true })(
  "producer over an HTTP/2 session that went silent",
  (it) => {
    it.effect(
      "a record produced after the pooled HTTP/2 connection went silent is acknowledged (producer requestTimeout 2 s, client default 10 s)",
      () =>
        Effect.gen(function*() {
          const emulator = yield* KinesisEmulator.KinesisEmulator
          const stream = yield* StreamFixtures.stream({ shardCount: 1 })
          const proxy = yield* silencingProxy(emulator.endpoint)
          const viaProxy = Client.layer({ ...emulator.clientConfig, endpoint: proxy.endpoint, httpHandler: "http2" })
          const exit = yield* Effect.scoped(Effect.gen(function*() {
            const producer = yield* Producer.make({
              stream: stream.streamName,
              serde: Serde.string,
              settings: { requestTimeout: "2 seconds", recordTtl: "25 seconds" }
            })
            yield* producer.produce({ partitionKey: "warm", data: "warm" })
            const before = proxy.connections()
            proxy.silence()
            const exit = yield* Effect.exit(producer.produce({ partitionKey: "k", data: "after the silence" }))
            console.log("connections opened after the silence:", proxy.connections() - before)
            return exit
          })).pipe(Effect.provide(Layer.fresh(viaProxy)))
          assert.isTrue(Exit.isSuccess(exit), `the record failed: ${Exit.isFailure(exit) ? String(exit.cause) : ""}`)
        }).pipe(KinesisEmulator.withOutputOnFailure)
    )
    it.effect(
      "a record produced after the pooled HTTP/2 connection went silent is acknowledged (both requestTimeouts at their 10 s default)",
      () =>
        Effect.gen(function*() {
          const emulator = yield* KinesisEmulator.KinesisEmulator
          const stream = yield* StreamFixtures.stream({ shardCount: 1 })
          const proxy = yield* silencingProxy(emulator.endpoint)
          const viaProxy = Client.layer({ ...emulator.clientConfig, endpoint: proxy.endpoint, httpHandler: "http2" })
          const exit = yield* Effect.scoped(Effect.gen(function*() {
            const producer = yield* Producer.make({
              stream: stream.streamName,
              serde: Serde.string,
              settings: { recordTtl: "25 seconds" }
            })
            yield* producer.produce({ partitionKey: "warm", data: "warm" })
            const before = proxy.connections()
            proxy.silence()
            const exit = yield* Effect.exit(producer.produce({ partitionKey: "k", data: "after the silence" }))
            console.log("connections opened after the silence:", proxy.connections() - before)
            return exit
          })).pipe(Effect.provide(Layer.fresh(viaProxy)))
          assert.isTrue(Exit.isSuccess(exit), `the record failed: ${Exit.isFailure(exit) ? String(exit.cause) : ""}`)
        }).pipe(KinesisEmulator.withOutputOnFailure)
    )
  }
)
