import { MetricsCollector } from "@effect-kinesis/core"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Metric } from "effect"
import { TestClock } from "effect/testing"

describe("MetricsCollector.layerEffectMetrics", () => {
  it.effect("totals become counters, levels and times gauges (average, max, min), dimensions attributes", () =>
    Effect.gen(function*() {
      yield* Effect.gen(function*() {
        const collector = yield* MetricsCollector.MetricsCollector
        const shard = [{ name: "StreamName", value: "orders" }, { name: "ShardId", value: "s1" }]
        const put = collector.series({ namespace: "KPL", name: "UserRecordsPut", unit: "Count", dimensions: shard })
        const time = collector.series({
          namespace: "KPL",
          name: "BufferingTime",
          unit: "Milliseconds",
          dimensions: shard
        })
        const pending = collector.series({
          namespace: "KPL",
          name: "UserRecordsPending",
          unit: "Count",
          dimensions: shard
        })
        put.record(5)
        put.record(7)
        time.record(10)
        time.record(30)
        pending.record(100)
        pending.record(300)
        yield* TestClock.adjust("15 seconds")
        put.record(1)
        // The second interval is published when the layer closes.
      }).pipe(
        Effect.provide(MetricsCollector.layerEffectMetrics({ interval: "15 seconds" }).pipe(Layer.fresh))
      )
      const attributes = { Namespace: "KPL", StreamName: "orders", ShardId: "s1" }
      const value = <S>(metric: Metric.Metric<number, S>) => Metric.value(Metric.withAttributes(metric, attributes))
      expect((yield* value(Metric.counter("UserRecordsPut"))).count).toBe(13)
      expect((yield* value(Metric.gauge("BufferingTime"))).value).toBe(20)
      expect((yield* value(Metric.gauge("BufferingTime.max"))).value).toBe(30)
      expect((yield* value(Metric.gauge("BufferingTime.min"))).value).toBe(10)
      expect((yield* value(Metric.gauge("UserRecordsPending"))).value).toBe(200)
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())))
})
