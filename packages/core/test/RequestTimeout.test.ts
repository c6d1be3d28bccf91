import { AdminClient, Client } from "@effect-kinesis/core"
import { KinesisEmulator } from "@effect-kinesis/testing"
import { assert, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as Net from "node:net"

const Live = KinesisEmulator.layerClient.pipe(Layer.provideMerge(KinesisEmulator.layer()))

/** A TCP proxy that passes answers on at `bytesPerSecond`: a slow link, data flowing all the time. */
const slowProxy = (upstream: string, bytesPerSecond: number) =>
  Effect.acquireRelease(
    Effect.callback<{ endpoint: string; server: Net.Server }>((resume) => {
      const target = new URL(upstream)
      const server = Net.createServer((client) => {
        const up = Net.connect(Number(target.port), target.hostname)
        client.pipe(up)
        const queue: Array<Buffer> = []
        const tick = setInterval(() => {
          let budget = bytesPerSecond / 20
          while (budget > 0 && queue.length > 0) {
            const head = queue[0]!
            const part = head.subarray(0, budget)
            client.write(part)
            budget -= part.length
            if (part.length === head.length) queue.shift()
            else queue[0] = head.subarray(part.length)
          }
        }, 50)
        up.on("data", (chunk: Buffer) => queue.push(chunk))
        const close = () => {
          clearInterval(tick)
          client.destroy()
          up.destroy()
        }
        client.on("close", close).on("error", close)
        up.on("close", close).on("error", close)
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({ endpoint: `http://127.0.0.1:${(server.address() as Net.AddressInfo).port}`, server })))
    }),
    ({ server }) =>
      Effect.sync(() =>
        server.close()
      )
  )

layer(Live, { timeout: 90_000, excludeTestServices: true })("requestTimeout on a slow but flowing answer", (it) => {
  for (const httpHandler of ["http1", "http2"] as const) {
    it.effect(`${httpHandler}: a GetRecords answer still arriving when requestTimeout ends is not abandoned`, () =>
      Effect.gen(function*() {
        const emulator = yield* KinesisEmulator.KinesisEmulator
        const admin = yield* AdminClient.AdminClient
        const direct = yield* Client.Client
        const stream = `slow-${Math.random().toString(36).slice(2, 10)}`
        yield* admin.createStream(stream, { shardCount: 1 })
        // About 1.2 MB of records (1.6 MB as base64 in the answer).
        const data = new Uint8Array(100_000).fill(65)
        for (let i = 0; i < 3; i++) {
          yield* direct.putRecords(stream, Array.from({ length: 4 }, () => ({ PartitionKey: "k", Data: data })))
        }
        const proxy = yield* slowProxy(emulator.endpoint, 400_000)
        const ctx = yield* Layer.build(Client.layer({
          ...emulator.clientConfig,
          endpoint: proxy.endpoint,
          httpHandler,
          requestTimeout: "2 seconds"
        }))
        const client = Context.get(ctx, Client.Client)
        const iterator = yield* client.getShardIterator(stream, {
          shardId: "shardId-000000000000",
          type: "TRIM_HORIZON"
        })
        // The answer takes about 4 s at 400 kB/s, bytes arriving all along; retrying cannot make it shorter.
        const attempts: Array<string> = []
        const out = yield* client.getRecords({ ShardIterator: iterator, Limit: 10_000 }).pipe(
          Effect.tapError((e) => Effect.sync(() => attempts.push(`${e._tag}: ${e.message}`))),
          Effect.retry({ times: 2 }),
          Effect.result
        )
        assert.deepStrictEqual(attempts, [])
        assert.strictEqual(out._tag, "Success")
      }))
  }
})
