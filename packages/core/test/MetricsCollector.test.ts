import { MetricsCollector } from "@effect-kinesis/core"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestClock } from "effect/testing"

const key = (name: string, dimensions: ReadonlyArray<MetricsCollector.Dimension> = []): MetricsCollector.MetricKey => ({
  namespace: "Test",
  name,
  unit: "Count",
  dimensions
})

describe("MetricsCollector", () => {
  it.effect("keeps one statistic set per key and interval, and starts the next interval empty", () =>
    Effect.gen(function*() {
      const collector = yield* MetricsCollector.make
      const a = collector.series(key("A", [{ name: "StreamName", value: "s" }, { name: "ShardId", value: "1" }]))
      // Same dimensions in another order: the same series.
      const same = collector.series(key("A", [{ name: "ShardId", value: "1" }, { name: "StreamName", value: "s" }]))
      expect(same).toBe(a)
      a.record(3)
      a.record(7)
      same.recordStatistics({ sampleCount: 2, sum: 4, minimum: 1, maximum: 3 })
      collector.series(key("B")).recordStatistics({ sampleCount: 0, sum: 0, minimum: 0, maximum: 0 })
      yield* TestClock.adjust("1 minute")
      const first = yield* collector.drain
      expect(first.endTime - first.startTime).toBe(60_000)
      expect(first.datums).toHaveLength(1)
      expect(first.datums[0]!.statistics).toEqual({ sampleCount: 4, sum: 14, minimum: 1, maximum: 7 })
      const second = yield* collector.drain
      expect(second.startTime).toBe(first.endTime)
      expect(second.datums).toEqual([])
    }))

  it.effect("an idle series leaves the index, and its old handle still records into one datum", () =>
    Effect.gen(function*() {
      const collector = yield* MetricsCollector.make
      const old = collector.series(key("A"))
      old.record(1)
      yield* collector.drain
      yield* collector.drain
      yield* collector.drain
      const fresh = collector.series(key("A"))
      expect(fresh).not.toBe(old)
      fresh.record(5)
      old.record(2)
      const interval = yield* collector.drain
      expect(interval.datums).toHaveLength(1)
      expect(interval.datums[0]!.statistics).toEqual({ sampleCount: 2, sum: 7, minimum: 2, maximum: 5 })
    }))

  it("levels include each other: detailed ⊃ summary ⊃ none", () => {
    expect(MetricsCollector.isEnabled("detailed", "detailed")).toBe(true)
    expect(MetricsCollector.isEnabled("detailed", "summary")).toBe(true)
    expect(MetricsCollector.isEnabled("summary", "summary")).toBe(true)
    expect(MetricsCollector.isEnabled("summary", "detailed")).toBe(false)
    expect(MetricsCollector.isEnabled("none", "summary")).toBe(false)
  })
})
