import { EmbeddedMetrics } from "@effect-kinesis/cloudwatch"
import { MetricsCollector } from "@effect-kinesis/core"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { TestClock } from "effect/testing"

interface Directive {
  readonly Namespace: string
  readonly Dimensions: ReadonlyArray<ReadonlyArray<string>>
  readonly Metrics: ReadonlyArray<{ readonly Name: string; readonly Unit: string }>
}

interface Line {
  readonly _aws: { readonly Timestamp: number; readonly CloudWatchMetrics: ReadonlyArray<Directive> }
  readonly [member: string]: unknown
}

const dims = (d: Record<string, string>) => Object.entries(d).map(([name, value]) => ({ name, value }))

describe("EmbeddedMetrics", () => {
  it.effect("each interval becomes EMF lines: statistic sets under the metric names, dimensions as members, timestamp = interval end", () =>
    Effect.gen(function*() {
      const written: Array<string> = []
      const scope = yield* Scope.make()
      const collector = yield* Scope.provide(
        EmbeddedMetrics.make({ interval: "1 minute", write: (line) => written.push(line) }),
        scope
      )
      const shard = { StreamName: "orders", ShardId: "shardId-000000000001" }
      const put = collector.series({
        namespace: "KinesisProducerLibrary",
        name: "UserRecordsPut",
        unit: "Count",
        dimensions: dims(shard)
      })
      put.record(3)
      put.record(7)
      collector.series({
        namespace: "KinesisProducerLibrary",
        name: "BufferingTime",
        unit: "Milliseconds",
        dimensions: dims(shard)
      })
        .recordStatistics({ sampleCount: 2, sum: 30, minimum: 10, maximum: 20 })
      // 150 metrics of one dimension set: more than EMF's 100 per line.
      for (let i = 0; i < 150; i++) {
        collector.series({
          namespace: "my-app",
          name: `M${i}`,
          unit: "Count",
          dimensions: dims({ Operation: "ProcessTask" })
        })
          .record(i)
      }
      yield* TestClock.adjust("1 minute")
      const first = written.splice(0).map((line) => JSON.parse(line) as Line)
      expect(first).toHaveLength(3)
      const producer = first.find((l) => l._aws.CloudWatchMetrics[0]!.Namespace === "KinesisProducerLibrary")!
      expect(producer._aws.Timestamp).toBe(60_000)
      expect(producer._aws.CloudWatchMetrics[0]!.Dimensions).toEqual([["StreamName", "ShardId"]])
      expect(producer._aws.CloudWatchMetrics[0]!.Metrics.map((m) => [m.Name, m.Unit]).sort()).toEqual([
        ["BufferingTime", "Milliseconds"],
        ["UserRecordsPut", "Count"]
      ])
      expect(producer["StreamName"]).toBe("orders")
      expect(producer["ShardId"]).toBe("shardId-000000000001")
      expect(producer["UserRecordsPut"]).toEqual({ Max: 7, Min: 3, Count: 2, Sum: 10 })
      expect(producer["BufferingTime"]).toEqual({ Max: 20, Min: 10, Count: 2, Sum: 30 })
      const app = first.filter((l) => l._aws.CloudWatchMetrics[0]!.Namespace === "my-app")
      expect(app.map((l) => l._aws.CloudWatchMetrics[0]!.Metrics.length).sort()).toEqual([100, 50])
      // Every metric a directive names is a member of its line: nothing CloudWatch would ignore or reject.
      for (const line of first) {
        for (const m of line._aws.CloudWatchMetrics[0]!.Metrics) expect(line[m.Name]).toBeDefined()
      }
      expect(app.flatMap((l) => l._aws.CloudWatchMetrics[0]!.Metrics.map((m) => l[m.Name]))).toHaveLength(150)

      // The last interval is written when the scope closes.
      put.record(1)
      yield* TestClock.adjust("10 seconds")
      yield* Scope.close(scope, Exit.void)
      expect(written).toHaveLength(1)
      const last = JSON.parse(written[0]!) as Line
      expect(last._aws.Timestamp).toBe(70_000)
      expect(last["UserRecordsPut"]).toEqual({ Max: 1, Min: 1, Count: 1, Sum: 1 })
    }))

  it("a datum EMF cannot carry is left out, the others written", () => {
    const datum = (name: string, sum: number, dimensionCount = 1): MetricsCollector.MetricDatum => ({
      namespace: "App",
      name,
      unit: "Count",
      dimensions: Array.from({ length: dimensionCount }, (_, i) => ({ name: `D${i}`, value: "v" })),
      statistics: { sampleCount: 1, sum, minimum: sum, maximum: sum }
    })
    const lines = EmbeddedMetrics.lines({
      startTime: 0,
      endTime: 1,
      datums: [datum("Good", 1), datum("Infinite", Infinity), datum("Wide", 1, 31)]
    })
    expect(lines).toHaveLength(1)
    expect(JSON.parse(lines[0]!)["Good"]).toEqual({ Max: 1, Min: 1, Count: 1, Sum: 1 })
  })
})
