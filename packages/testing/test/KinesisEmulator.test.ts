import { GetRecordsCommand, GetShardIteratorCommand, KinesisClient, PutRecordCommand } from "@aws-sdk/client-kinesis"
import { KinesisEmulator, StreamFixtures } from "@effect-kinesis/testing"
import { assert, describe, it, layer } from "@effect/vitest"
import { NodeHttpHandler } from "@smithy/node-http-handler"
import { Cause, Effect, Exit, Result } from "effect"
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import * as Net from "node:net"
import { fileURLToPath } from "node:url"
import { vi } from "vitest"

// Emulators start in about a second, more on a loaded machine; vitest's 5 s default leaves too little room.
vi.setConfig({ testTimeout: 30_000 })

/** The process no longer exists, and has been reaped. */
const isGone = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return false
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ESRCH"
  }
}

/** Running, as opposed to gone or a zombie (an orphan waiting for init to reap it). */
const isAlive = (pid: number): boolean => {
  if (isGone(pid)) return false
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  } catch {
    return true
  }
}

const waitUntilGone = async (pids: ReadonlyArray<number>): Promise<ReadonlyArray<number>> => {
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline && pids.some(isAlive)) await new Promise((resolve) => setTimeout(resolve, 100))
  return pids.filter(isAlive)
}

const sdkClient = (emulator: KinesisEmulator.KinesisEmulator["Service"]) =>
  Effect.acquireRelease(
    Effect.sync(() =>
      new KinesisClient({ ...emulator.clientConfig, requestHandler: new NodeHttpHandler(), maxAttempts: 1 })
    ),
    (client) => Effect.sync(() => client.destroy())
  )

layer(KinesisEmulator.layer())("KinesisEmulator", (it) => {
  it.effect("serves the Kinesis API: a record put is read back", () =>
    Effect.gen(function*() {
      const emulator = yield* KinesisEmulator.KinesisEmulator
      const stream = yield* StreamFixtures.stream({ prefix: "emulator" })
      const client = yield* sdkClient(emulator)
      const put = yield* Effect.promise(() =>
        client.send(
          new PutRecordCommand({ StreamName: stream.streamName, PartitionKey: "k", Data: Buffer.from("hello") })
        )
      )
      const iterator = yield* Effect.promise(() =>
        client.send(
          new GetShardIteratorCommand({
            StreamName: stream.streamName,
            ShardId: put.ShardId,
            ShardIteratorType: "TRIM_HORIZON"
          })
        )
      )
      const records = yield* Effect.promise(() =>
        client.send(new GetRecordsCommand({ ShardIterator: iterator.ShardIterator }))
      )
      assert.deepStrictEqual(
        records.Records?.map((record) => Buffer.from(record.Data ?? []).toString()),
        ["hello"]
      )
      assert.strictEqual(stream.shards.length, 1)
      assert.match(stream.streamArn, new RegExp(`:${emulator.accountId}:stream/${stream.streamName}$`))
    }).pipe(KinesisEmulator.withOutputOnFailure))

  it.effect("creates streams with the requested shards, tiling the hash key space", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ shardCount: 3 })
      assert.strictEqual(stream.shards.length, 3)
      const ranges = stream.shards
        .map((shard) => [BigInt(shard.startingHashKey), BigInt(shard.endingHashKey)] as const)
        .sort((a, b) => (a[0] < b[0] ? -1 : 1))
      assert.strictEqual(ranges[0]?.[0], 0n)
      assert.strictEqual(ranges[2]?.[1], 2n ** 128n - 1n)
      assert.strictEqual(ranges[1]?.[0], (ranges[0]?.[1] ?? 0n) + 1n)
    }))

  it.effect("a deleted stream is gone", () =>
    Effect.gen(function*() {
      const name = yield* StreamFixtures.uniqueStreamName("deleted")
      yield* StreamFixtures.createStream(name)
      yield* StreamFixtures.deleteStream(name)
      const result = yield* Effect.result(StreamFixtures.waitForActive(name, { timeout: "2 seconds" }))
      assert.isTrue(Result.isFailure(result))
      if (Result.isFailure(result)) {
        assert.instanceOf(result.failure, StreamFixtures.StreamFixtureError)
        assert.strictEqual(result.failure.operation, "DescribeStreamSummary")
        assert.strictEqual(result.failure.streamName, name)
      }
      // Deleting again is not an error.
      yield* StreamFixtures.deleteStream(name)
    }))

  it.effect("creates on-demand streams", () =>
    Effect.gen(function*() {
      const stream = yield* StreamFixtures.stream({ prefix: "on-demand", onDemand: true })
      assert.isAbove(stream.shards.length, 0)
      assert.isTrue(stream.shards.every((shard) => shard.parentShardId === undefined))
    }))

  it.effect("keeps the emulator's output", () =>
    Effect.gen(function*() {
      const emulator = yield* KinesisEmulator.KinesisEmulator
      const output = yield* emulator.output
      assert.isString(output)
    }))
})

describe("KinesisEmulator lifecycle", () => {
  it.effect("stops the emulator and its supervisor when the scope closes", () =>
    Effect.gen(function*() {
      const { pid, supervisorPid } = yield* Effect.scoped(KinesisEmulator.make())
      assert.isTrue(isGone(pid), "emulator process survived its scope")
      assert.isTrue(isGone(supervisorPid), "supervisor process survived its scope")
    }))

  it.effect("a missing main script fails with the emulator's output", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Effect.scoped(KinesisEmulator.make({ mainScript: "/nonexistent/kinesis-mock/main.js" }))
      )
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        const error = Cause.squash(exit.cause)
        assert.instanceOf(error, Error)
        assert.propertyVal(error, "_tag", "EmulatorStartError")
        assert.include((error as unknown as { output: string }).output, "Cannot find module")
        assert.include(error.message, "Cannot find module")
      }
    }))

  it.effect("a port already in use fails with the emulator's output", () =>
    Effect.gen(function*() {
      const blocker = yield* Effect.acquireRelease(
        Effect.promise(() =>
          new Promise<Net.Server>((resolve) => {
            const server = Net.createServer((socket) => socket.destroy())
            server.listen(0, "127.0.0.1", () => resolve(server))
          })
        ),
        (server) => Effect.promise(() => new Promise((resolve) => server.close(resolve)))
      )
      const port = (blocker.address() as Net.AddressInfo).port
      const error = yield* Effect.flip(Effect.scoped(KinesisEmulator.make({ port })))
      assert.strictEqual(error._tag, "EmulatorStartError")
      assert.match(error.output, /EADDRINUSE|address already in use/i)
    }))

  it.live("leaves no process behind when the test process is SIGKILLed", () =>
    Effect.gen(function*() {
      const script = fileURLToPath(new URL("./fixtures/holdEmulators.ts", import.meta.url))
      const holder = spawn(process.execPath, ["--conditions=@effect-kinesis/source", script], {
        stdio: ["ignore", "pipe", "inherit"]
      })
      const pids = yield* Effect.promise(() =>
        new Promise<ReadonlyArray<number>>((resolve, reject) => {
          let text = ""
          holder.stdout.setEncoding("utf8").on("data", (chunk: string) => {
            text += chunk
            const line = text.split("\n").find((l) => l.startsWith("PIDS "))
            if (line !== undefined) resolve(line.slice(5).split(" ").map(Number))
          })
          holder.once("exit", (code) => reject(new Error(`holder exited with ${code} before starting: ${text}`)))
        })
      )
      assert.strictEqual(pids.length, 4)
      assert.isTrue(pids.every(isAlive))
      assert.isNull(holder.exitCode, "the holder must still be running, or its exit hooks did the work")
      holder.kill("SIGKILL")
      const survivors = yield* Effect.promise(() => waitUntilGone(pids))
      assert.deepStrictEqual(survivors, [])
    }))
})
