import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { readFileSync, rmSync } from "node:fs"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../../..")

// Runs the demo the way the README tells users to, with its own emulators.
const demo = (...args: ReadonlyArray<string>): Promise<{ code: number; stdout: string }> =>
  new Promise((resolve) => {
    const env = { ...process.env }
    delete env.KINESIS_ENDPOINT
    delete env.DYNAMODB_ENDPOINT
    execFile(
      process.execPath,
      ["--conditions=@effect-kinesis/source", Path.join("examples", "demo.ts"), ...args],
      { cwd: root, timeout: 110_000, maxBuffer: 16 * 1024 * 1024, env },
      (error, stdout) => resolve({ code: error === null ? 0 : Number(error.code ?? 1), stdout })
    )
  })

describe("demo --metrics", () => {
  it("cloudwatch: the demo publishes to a fake CloudWatch it starts and prints what it received", async () => {
    const result = await demo("--records", "2000", "--metrics", "cloudwatch")
    expect(result.code).toBe(0)
    const summary = new RegExp(
      "^metrics: fake CloudWatch received (\\d+) PutMetricData calls, (\\d+) datums, \\d+ metrics in \\d+ namespaces; "
        + "KinesisProducerLibrary/UserRecordsPut=(\\d+) demo-\\w+/RecordsProcessed=(\\d+)$",
      "m"
    ).exec(result.stdout)
    expect(summary).not.toBeNull()
    const [, calls, datums, userRecordsPut, recordsProcessed] = summary!.map(Number)
    expect(calls).toBeGreaterThan(0)
    expect(datums).toBeGreaterThan(0)
    // The producer's KPL metrics and the workers' KCL metrics both reached CloudWatch, up to the last interval: every
    // acknowledged record is counted as put, every consumed one as processed (at least once: delivery is).
    const [, produced, consumed] = (/^produced=(\d+) consumed=(\d+)/m.exec(result.stdout) ?? []).map(Number)
    expect(produced).toBe(2000)
    expect(userRecordsPut).toBeGreaterThanOrEqual(produced)
    expect(recordsProcessed).toBeGreaterThanOrEqual(produced)
    expect(recordsProcessed).toBeLessThanOrEqual(consumed)
    expect(result.stdout).not.toContain("REJECTED")
  }, 120_000)

  it("emf: the demo writes Embedded Metric Format lines to the file it names", async () => {
    const result = await demo("--records", "2000", "--metrics", "emf")
    expect(result.code).toBe(0)
    const file = /^metrics: Embedded Metric Format lines in (.+)$/m.exec(result.stdout)?.[1]
    expect(file).toBeDefined()
    const lines = readFileSync(file!, "utf8").split("\n").filter((line) => line.length > 0)
    rmSync(file!)
    for (const line of lines) expect(JSON.parse(line)._aws.CloudWatchMetrics).toBeDefined()
  }, 120_000)
})
