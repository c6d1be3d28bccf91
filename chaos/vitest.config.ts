import { defineProject } from "vitest/config"

// The chaos analysis's own tests (the chaos run itself is `packages/testing/test/Chaos.test.ts`).
export default defineProject({
  resolve: { conditions: ["@effect-kinesis/source"] },
  ssr: { resolve: { conditions: ["@effect-kinesis/source"] } },
  test: { name: "chaos", include: ["*.test.ts"] }
})
