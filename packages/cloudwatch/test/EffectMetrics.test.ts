import { MetricsCollector } from "@effect-kinesis/core"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Metric } from "effect"
import { TestClock } from "effect/testing"

describe("MetricsCollector.layerEffectMetrics", () => {
  it.effect("totals become counters, levels and times gauges (average, max, min), namespace and dimensions attributes", () =>
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

  it.effect("two applications' series of the same name and dimensions stay apart (the namespace is an attribute)", () =>
    Effect.gen(function*() {
      const collector = yield* MetricsCollector.make
      // Two KCL applications in one process, each reading shardId-000000000000 of its own stream.
      const dimensions = [{ name: "Operation", value: "ProcessTask" }, {
        name: "ShardId",
        value: "shardId-000000000000"
      }]
      collector.series({ namespace: "orders-app", name: "RecordsProcessed", unit: "Count", dimensions }).record(10)
      collector.series({ namespace: "audit-app", name: "RecordsProcessed", unit: "Count", dimensions }).record(3)
      collector.series({ namespace: "orders-app", name: "MillisBehindLatest", unit: "Milliseconds", dimensions })
        .record(1000)
      collector.series({ namespace: "audit-app", name: "MillisBehindLatest", unit: "Milliseconds", dimensions })
        .record(5)
      yield* MetricsCollector.publishEffectMetrics()(yield* collector.drain)
      const of = (namespace: string) => ({
        Namespace: namespace,
        Operation: "ProcessTask",
        ShardId: "shardId-000000000000"
      })
      const count = (namespace: string) =>
        Effect.map(
          Metric.value(Metric.withAttributes(Metric.counter("RecordsProcessed"), of(namespace))),
          (s) => s.count
        )
      const lag = (namespace: string) =>
        Effect.map(
          Metric.value(Metric.withAttributes(Metric.gauge("MillisBehindLatest"), of(namespace))),
          (s) => s.value
        )
      expect(yield* count("orders-app")).toBe(10)
      expect(yield* count("audit-app")).toBe(3)
      expect(yield* lag("orders-app")).toBe(1000)
      expect(yield* lag("audit-app")).toBe(5)
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())))

  it.effect("a zero interval drains every 10 ms rather than in a busy loop", () =>
    Effect.gen(function*() {
      let published = 0
      yield* Effect.gen(function*() {
        let orders: MetricsCollector.Series = MetricsCollector.disabled
        const collector = yield* MetricsCollector.makePublishing(
          // Every interval holds a value, so every drain publishes: the count is the drains'.
          () =>
            Effect.sync(() => {
              published++
              orders.record(1)
            }),
          { interval: "0 millis" }
        )
        orders = collector.series({ namespace: "App", name: "Orders", unit: "Count", dimensions: [] })
        orders.record(1)
        for (let i = 0; i < 5; i++) yield* TestClock.adjust("10 millis")
      }).pipe(Effect.scoped)
      // Five drains in 50 ms and the last at close.
      expect(published).toBeLessThanOrEqual(6)
    }))
})
