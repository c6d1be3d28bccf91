import { defineConfig } from "vitest/config"
import type { Reporter, TestModule } from "vitest/node"

// Ends the run with the plain "N passed, N failed, N skipped" line that CI reads.
const summary: Reporter = {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>) {
    let passed = 0
    let failed = 0
    let skipped = 0
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state
        if (state === "passed") passed++
        else if (state === "failed") failed++
        else skipped++
      }
      // A file that fails to load has no tests but is a failure all the same.
      if (module.state() === "failed" && [...module.children.allTests()].length === 0) failed++
    }
    process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`)
  }
}

// Workspace packages resolve to their TypeScript sources through the
// "@effect-kinesis/source" export condition, so tests never need a build.
export default defineConfig({
  test: {
    projects: ["packages/*"],
    pool: "forks",
    reporters: ["default", summary]
  }
})
