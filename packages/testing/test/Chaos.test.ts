import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../../..")

// The short chaos run (chaos/run.ts) as CI runs it: producer and consumer workers as processes on the embedded
// emulators, SIGKILLs, graceful stops, a split, a merge, and faults on Kinesis and DynamoDB. It prints its report and
// exits 1 when a check fails; the report is shown here on failure.
describe("chaos", () => {
  it("short run: no acknowledged record lost, per-key order kept, leases released, resumes within target", async () => {
    const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>(
      (resolve) => {
        execFile(
          process.execPath,
          ["--conditions=@effect-kinesis/source", Path.join("chaos", "run.ts"), "--short"],
          { cwd: root, timeout: 280_000, maxBuffer: 64 * 1024 * 1024 },
          (error, stdout, stderr) => resolve({ code: error === null ? 0 : Number(error.code ?? 1), stdout, stderr })
        )
      }
    )
    if (code !== 0) console.error(stdout.slice(-20_000), stderr.slice(-5_000))
    // The failed checks' lines, with their numbers, are the failure message.
    expect(stdout.split("\n").filter((line) => line.startsWith("FAIL"))).toEqual([])
    expect(stdout).toMatch(/chaos: all \d+ checks passed/)
    expect(code).toBe(0)
  }, 300_000)
})
