import { describe, expect, it } from "@effect/vitest"
import { SequenceNumber } from "@effect-kinesis/core"

describe("SequenceNumber", () => {
  it("compares", () => {
    expect(SequenceNumber.compare("10", "9")).toBe(1)
  })
})
