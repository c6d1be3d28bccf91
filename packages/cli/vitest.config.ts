import { defineProject } from "vitest/config"

export default defineProject({
  resolve: { conditions: ["@effect-kinesis/source"] },
  ssr: { resolve: { conditions: ["@effect-kinesis/source"] } },
  test: { include: ["test/**/*.test.ts"], testTimeout: 60_000, hookTimeout: 60_000 }
})
