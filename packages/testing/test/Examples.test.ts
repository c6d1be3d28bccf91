import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../../..")

interface Run {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

// Runs an example the way the README tells users to, with Node resolving workspace packages to
// their sources; each starts (and stops) its own emulators.
const run = (script: string, ...args: ReadonlyArray<string>): Promise<Run> =>
  new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--conditions=@effect-kinesis/source", Path.join("examples", script), ...args],
      { cwd: root, timeout: 110_000, maxBuffer: 16 * 1024 * 1024, env: withoutEndpoints() },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : Number(error.code ?? 1), stdout, stderr })
    )
  })

// An endpoint left in the environment would point the examples away from their embedded emulators.
const withoutEndpoints = (): NodeJS.ProcessEnv => {
  const env = { ...process.env }
  delete env.KINESIS_ENDPOINT
  delete env.DYNAMODB_ENDPOINT
  return env
}

const expectSuccess = (result: Run) => {
  if (result.code !== 0) console.error(result.stdout, result.stderr)
  expect(result.code).toBe(0)
}

describe("examples", () => {
  it("producer-metrics.ts: the metrics delivered while producing and at close add up to every record", async () => {
    const result = await run("producer-metrics.ts", "2000")
    expectSuccess(result)
    expect(result.stdout).toContain("total: 2000 user records")
  }, 120_000)

  it("opentelemetry.ts: the library's spans and KPL/KCL metrics reach an OTLP receiver", async () => {
    const result = await run("opentelemetry.ts", "300")
    expectSuccess(result)
    expect(result.stdout).toContain("produced and consumed 300 records")
    expect(result.stdout).toMatch(/span kinesis\.producer\.PutRecords: \d+/)
    expect(result.stdout).toMatch(/span kinesis\.consumer\.batch: \d+/)
    expect(result.stdout).toMatch(/span kinesis\.lease\.take: \d+/)
    expect(result.stdout).toContain("UserRecordsPut: true, RecordsProcessed: true")
  }, 120_000)

  it(
    "batch-handler.ts: bisect isolates every poison record, which reaches the dead-letter stream; every other record is processed",
    async () => {
      const result = await run("batch-handler.ts", "400")
      expectSuccess(result)
      expect(result.stdout).toContain("processed 395 records, 5 sent to")
    },
    120_000
  )

  it("sharded-stream.ts: every record is consumed and each shard's checkpoint is written on shutdown", async () => {
    const result = await run("sharded-stream.ts", "300")
    expectSuccess(result)
    expect(result.stdout).toContain("consumed 300 distinct records")
    expect(result.stdout).toMatch(/shardId-000000000002: checkpoint \d+, owner none/)
  }, 120_000)

  it("consume-with.ts: failing records are retried, then handed to the dead-letter hook and skipped", async () => {
    const result = await run("consume-with.ts", "200")
    expectSuccess(result)
    expect(result.stdout).toContain("processed 180 records, 20 dead letters")
  }, 120_000)

  it("dynamodb-leases.ts: the same consumer keeps its leases in DynamoDB, released and checkpointed", async () => {
    const result = await run("dynamodb-leases.ts", "300")
    expectSuccess(result)
    expect(result.stdout).toMatch(/shardId-000000000000 {2}counter=\d+ {2}owner=- {2}checkpoint=\d+/)
  }, 120_000)

  it("aggregated.ts: KPL aggregates and the producer's aggregates are unpacked into user records", async () => {
    const result = await run("aggregated.ts", "1000")
    expectSuccess(result)
    expect(result.stdout).toContain("consumed 1000 user records; 1000 came out of aggregates")
  }, 120_000)

  it("demo.ts: with a split and a worker stopped midway, every acknowledged record is consumed", async () => {
    const result = await run("demo.ts", "--records", "2000")
    expectSuccess(result)
    const lines = result.stdout.trimEnd().split("\n")
    expect(lines.at(-1)).toMatch(/^produced=2000 consumed=\d+ unique=2000 lost=0 duplicates=0 copies=\d+$/)
    expect(result.stdout).toContain("stopping worker-b gracefully")
    expect(result.stdout).toMatch(/read #\d+ to its end/)
  }, 120_000)
})
