import { defineConfig } from "vitest/config"

// Workspace packages resolve to their TypeScript sources through the
// "@effect-kinesis/source" export condition, so tests never need a build.
export default defineConfig({
  resolve: { conditions: ["@effect-kinesis/source"] },
  ssr: { resolve: { conditions: ["@effect-kinesis/source"] } },
  test: {
    projects: ["packages/*"],
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
