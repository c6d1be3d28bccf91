import { Serde } from "@effect-kinesis/core"
import { DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { ConsumerWorker, DynamoEmulator, Emulator, KinesisEmulator, StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import * as Path from "node:path"
import { Env } from "./fixtures.ts"

const bin = Path.resolve(import.meta.dirname, "../src/bin.ts")

interface Finished {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** `effect-kinesis` as a real child process on the source entry, configured for the emulators from its environment. */
const spawnCli = (args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const kinesis = yield* KinesisEmulator.KinesisEmulator
    const dynamo = yield* DynamoEmulator.DynamoEmulator
    const child = spawn(process.execPath, ["--conditions=@effect-kinesis/source", bin, ...args], {
      env: {
        PATH: process.env["PATH"] ?? "",
        KINESIS_ENDPOINT: kinesis.endpoint,
        KINESIS_HTTP_HANDLER: "http1",
        DYNAMODB_ENDPOINT: dynamo.endpoint,
        AWS_REGION: kinesis.region,
        AWS_ACCESS_KEY_ID: Emulator.credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: Emulator.credentials.secretAccessKey
      },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout!.on("data", (chunk) => (stdout += chunk))
    child.stderr!.on("data", (chunk) => (stderr += chunk))
    const finished = new Promise<Finished>((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })))
    return { child, finished, stdout: () => stdout }
  })

const wait = (run: { readonly finished: Promise<Finished> }) => Effect.promise(() => run.finished)

const kill = (child: ChildProcess) => Effect.sync(() => child.kill("SIGINT"))

layer(Env, { excludeTestServices: true, timeout: "90 seconds" })("effect-kinesis as a process", (it) => {
  describe("bin.ts", () => {
    it.effect("stream prints the shards; a missing stream is one line on stderr and exit status 1, no stack trace", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const ok = yield* wait(yield* spawnCli(["stream", streamName]))
        expect(ok.stderr).toBe("")
        expect(ok.code).toBe(0)
        for (const shard of shards) expect(ok.stdout).toMatch(new RegExp(`${shard.shardId}\\s+open`))

        const missing = yield* wait(yield* spawnCli(["stream", "no-such-stream"]))
        expect(missing.code).toBe(1)
        expect(missing.stdout).toBe("")
        expect(missing.stderr).toBe(
          `effect-kinesis: stream "no-such-stream" not found: check the name, AWS_REGION and KINESIS_ENDPOINT\n`
        )
      }))

    it.effect("leases into a pipe prints JSON; with --watch one document per interval, and Ctrl-C ends it with status 0", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const app = `exec-${randomUUID().slice(0, 8)}`
        const worker = yield* ConsumerWorker.start({
          stream: streamName,
          applicationName: app,
          workerId: "only",
          deserializer: Serde.string,
          lease: ConsumerWorker.fastLeases,
          leases: DynamoDbLeaseRepository.layer({ applicationName: app })
        })
        yield* ConsumerWorker.eventually(Effect.sync(() => worker.held().size === 2), "30 seconds", "both leases")

        const once = yield* wait(yield* spawnCli(["leases", app, "--stream", streamName]))
        expect(once.stderr).toBe("")
        expect(once.code).toBe(0)
        expect(JSON.parse(once.stdout)).toMatchObject({ application: app, owners: { only: 2 } })

        const watching = yield* spawnCli(["leases", app, "--watch", "--interval", "300ms"])
        yield* ConsumerWorker.eventually(
          Effect.sync(() => watching.stdout().split("\n").length > 3),
          "20 seconds",
          "three documents"
        )
        yield* kill(watching.child)
        const watched = yield* wait(watching)
        expect(watched.code).toBe(0)
        expect(watched.stderr).toBe("")
        const documents = watched.stdout.trimEnd().split("\n").map((line) => JSON.parse(line))
        expect(documents.length).toBeGreaterThanOrEqual(3)
        for (const document of documents) expect(document.owners).toEqual({ only: 2 })
      }))
  })
})
