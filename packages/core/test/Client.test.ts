import { AdminClient, Client, ShardMap } from "@effect-kinesis/core"
import { KinesisEmulator, TcpFaultProxy } from "@effect-kinesis/testing"
import { assert, describe, layer } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Result, Stream } from "effect"
import * as Net from "node:net"

const Live = KinesisEmulator.layerClient.pipe(Layer.provideMerge(KinesisEmulator.layer()))

const uniqueName = (prefix: string) => `${prefix}-${Math.random().toString(36).slice(2, 10)}`
const encode = (s: string) => new TextEncoder().encode(s)
const decode = (b: Uint8Array) => new TextDecoder().decode(b)

describe("Client against the embedded kinesis-mock", () => {
  layer(Live, { timeout: 60_000, excludeTestServices: true })((it) => {
    it.effect("puts records and reads them back from the shard Kinesis reported", () =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const admin = yield* AdminClient.AdminClient
        const stream = uniqueName("put-read")
        yield* admin.createStream(stream, { shardCount: 2 })

        const put = yield* client.putRecords(
          stream,
          Array.from({ length: 20 }, (_, i) => ({ PartitionKey: `key-${i}`, Data: encode(`value-${i}`) }))
        )
        assert.strictEqual(put.FailedRecordCount ?? 0, 0)

        const shards = yield* Stream.runCollect(client.listShards(stream))
        const map = Result.getOrThrow(ShardMap.fromShards(shards))
        const read: Array<string> = []
        for (const shard of shards) {
          const iterator = yield* client.getShardIterator(stream, { shardId: shard.ShardId!, type: "TRIM_HORIZON" })
          const out = yield* client.getRecords({ ShardIterator: iterator, Limit: 100 })
          for (const record of out.Records ?? []) {
            // Every record sits on the shard its partition key hashes to.
            assert.strictEqual(ShardMap.shardForRecord(map, record.PartitionKey!)?.shardId, shard.ShardId)
            read.push(decode(record.Data!))
          }
        }
        assert.deepStrictEqual(read.sort(), Array.from({ length: 20 }, (_, i) => `value-${i}`).sort())
        put.Records!.forEach((entry, i) =>
          assert.strictEqual(entry.ShardId, ShardMap.shardForRecord(map, `key-${i}`)?.shardId)
        )
      }).pipe(KinesisEmulator.withOutputOnFailure))

    it.effect("lists shards page by page and filters open shards", () =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const admin = yield* AdminClient.AdminClient
        const stream = uniqueName("paging")
        yield* admin.createStream(stream, { shardCount: 5 })
        const all = yield* Stream.runCollect(client.listShards(stream, { pageSize: 2 }))
        assert.deepStrictEqual(
          all.map((s) => s.ShardId),
          [0, 1, 2, 3, 4].map((i) => `shardId-00000000000${i}`)
        )
        // The stream is addressable by ARN too.
        const arn = yield* client.streamArn(stream)
        const byArn = yield* Stream.runCollect(client.listShards(arn, { pageSize: 3 }))
        assert.strictEqual(byArn.length, 5)
        const names = yield* Stream.runCollect(client.listStreams({ pageSize: 1 }))
        assert.isTrue(names.some((listing) => listing.streamName === stream))
      }))

    it.effect("splits a shard: the parent closes and two children cover its range", () =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const admin = yield* AdminClient.AdminClient
        const stream = uniqueName("split")
        yield* admin.createStream(stream, { shardCount: 1 })
        yield* admin.splitShard(stream, "shardId-000000000000")
        const shards = yield* Stream.runCollect(client.listShards(stream))
        const parent = shards.find((s) => s.ShardId === "shardId-000000000000")!
        const children = shards.filter((s) => s.ParentShardId === "shardId-000000000000")
        assert.isDefined(parent.SequenceNumberRange?.EndingSequenceNumber)
        assert.strictEqual(children.length, 2)
        const open = yield* Stream.runCollect(client.listShards(stream, { shardFilter: { Type: "AT_LATEST" } }))
        assert.deepStrictEqual(open.map((s) => s.ShardId).sort(), children.map((s) => s.ShardId!).sort())
        // The open shards still tile the whole hash space.
        assert.isTrue(Result.isSuccess(ShardMap.fromShards(shards)))
      }))

    it.effect("merges adjacent shards, rescales and changes retention, waiting for ACTIVE each time", () =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const admin = yield* AdminClient.AdminClient
        const stream = uniqueName("reshape")
        yield* admin.createStream(stream, { shardCount: 2 })
        yield* admin.mergeShards(stream, "shardId-000000000000", "shardId-000000000001")
        const afterMerge = yield* Stream.runCollect(client.listShards(stream, { shardFilter: { Type: "AT_LATEST" } }))
        assert.strictEqual(afterMerge.length, 1)
        assert.strictEqual(afterMerge[0]!.ParentShardId, "shardId-000000000000")
        assert.strictEqual(afterMerge[0]!.AdjacentParentShardId, "shardId-000000000001")
        assert.strictEqual((yield* client.describeStreamSummary(stream)).StreamStatus, "ACTIVE")

        // Kinesis allows at most doubling per update.
        yield* admin.updateShardCount(stream, 2)
        const afterScale = yield* Stream.runCollect(client.listShards(stream, { shardFilter: { Type: "AT_LATEST" } }))
        assert.strictEqual(afterScale.length, 2)
        assert.isTrue(Result.isSuccess(ShardMap.fromShards(afterScale)))

        yield* admin.setRetention(stream, 48)
        assert.strictEqual((yield* client.describeStreamSummary(stream)).RetentionPeriodHours, 48)
        yield* admin.setRetention(stream, 24)
        assert.strictEqual((yield* client.describeStreamSummary(stream)).RetentionPeriodHours, 24)
      }))

    it.effect("a missing stream fails at once with StreamNotFound", () =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const error = yield* Effect.flip(client.describeStreamSummary(uniqueName("missing")))
        assert.strictEqual(error._tag, "StreamNotFound")
        assert.isFalse(error.retryable)
        const putError = yield* Effect.flip(
          client.putRecords(uniqueName("missing"), [{ PartitionKey: "k", Data: encode("v") }])
        )
        assert.strictEqual(putError._tag, "StreamNotFound")
        const shardsError = yield* Effect.flip(Stream.runCollect(client.listShards(uniqueName("missing"))))
        assert.strictEqual(shardsError._tag, "StreamNotFound")
      }))

    it.effect("interrupting a call aborts its HTTP request and returns promptly", () =>
      Effect.gen(function*() {
        // A server that accepts connections and never answers: only an abort can end the call.
        const closed = yield* Effect.acquireRelease(
          Effect.callback<{ server: Net.Server; port: number; closed: Promise<void> }>((resume) => {
            let signal: () => void = () => {}
            const closed = new Promise<void>((resolve) => (signal = resolve))
            const server = Net.createServer((socket) => socket.on("close", () => signal()).resume())
            server.listen(0, "127.0.0.1", () =>
              resume(Effect.succeed({ server, port: (server.address() as Net.AddressInfo).port, closed })))
          }),
          ({ server }) =>
            Effect.sync(() =>
              server.close()
            )
        )
        const silent = yield* Layer.build(Client.layer({
          endpoint: `http://127.0.0.1:${closed.port}`,
          credentials: { accessKeyId: "x", secretAccessKey: "y" },
          httpHandler: "http1"
        }))
        const client = Context.get(silent, Client.Client)
        const fiber = yield* client.describeStreamSummary("any").pipe(Effect.forkChild)
        yield* Effect.sleep("200 millis")
        yield* Fiber.interrupt(fiber)
        const exit = yield* Fiber.await(fiber)
        assert.isTrue(Exit.hasInterrupts(exit))
        // The abort reached the socket: the server saw the connection close.
        yield* Effect.promise(() => closed.closed)
      }))

    for (const httpHandler of ["http1", "http2"] as const) {
      it.effect(`${httpHandler}: a call left without an answer fails after requestTimeout as a retryable ServiceUnavailable, and calls after the silence succeed`, () =>
        Effect.gen(function*() {
          const emulator = yield* KinesisEmulator.KinesisEmulator
          const admin = yield* AdminClient.AdminClient
          const stream = uniqueName("silent")
          yield* admin.createStream(stream, { shardCount: 1 })
          const proxy = yield* TcpFaultProxy.make(emulator.endpoint)
          const viaProxy = yield* Layer.build(
            Client.layer({
              ...emulator.clientConfig,
              endpoint: proxy.endpoint,
              httpHandler,
              requestTimeout: "500 millis"
            })
          )
          const client = Context.get(viaProxy, Client.Client)
          assert.strictEqual((yield* client.describeStreamSummary(stream)).StreamName, stream)

          // The established connection stalls, and the ones opened meanwhile are never answered, also afterwards.
          yield* proxy.setMode("blackHole")
          for (let i = 0; i < 2; i++) {
            const error = yield* Effect.flip(client.describeStreamSummary(stream))
            assert.strictEqual(error._tag, "ServiceUnavailable")
            assert.isTrue(error.retryable)
          }
          yield* proxy.restore
          assert.strictEqual((yield* client.describeStreamSummary(stream)).StreamName, stream)
        }))
    }

    it.effect("creating a stream whose name is taken fails at once with ResourceInUse", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const stream = uniqueName("taken")
        yield* admin.createStream(stream, { shardCount: 1 })
        const error = yield* Effect.flip(admin.createStream(stream, { shardCount: 1 }))
        assert.strictEqual(error._tag, "ResourceInUse")
      }))

    it.effect("deleteStream waits until the stream is gone", () =>
      Effect.gen(function*() {
        const client = yield* Client.Client
        const admin = yield* AdminClient.AdminClient
        const stream = uniqueName("delete")
        yield* admin.createStream(stream, { shardCount: 1 })
        yield* admin.deleteStream(stream)
        const error = yield* Effect.flip(client.describeStreamSummary(stream))
        assert.strictEqual(error._tag, "StreamNotFound")
      }))
  })
})
