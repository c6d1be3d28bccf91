import { defineProject } from "vitest/config"

export default defineProject({
  resolve: { conditions: ["@effect-kinesis/source"] },
  ssr: { resolve: { conditions: ["@effect-kinesis/source"] } },
  test: { include: ["test/**/*.test.ts"] }
})
