import { defineConfig } from "vitest/config"
import type { Reporter, TestModule } from "vitest/node"
import { aloneProject } from "./vitest.project.ts"

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

// Two files at a time on CI's two cores (most wait on emulators and lease timers, not on the CPU),
// then the files that must not share them, one at a time (`vitest.project.ts`).
export default defineConfig({
  test: {
    projects: ["packages/*", "chaos", aloneProject],
    pool: "forks",
    maxWorkers: 2,
    reporters: ["default", summary]
  }
})
