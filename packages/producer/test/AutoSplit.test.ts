import { Client, Serde } from "@effect-kinesis/core"
import { AutoSplit, Producer } from "@effect-kinesis/producer"
import { FaultProxy, KinesisEmulator, StreamFixtures } from "@effect-kinesis/testing"
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import type * as AutoSplitLoop from "../src/internal/autoSplit.ts"

// An internal module (the package does not export it): loaded by path, which the compiler leaves
// as is, where a static import across the src and test projects does not compile.
const { gate, ShardTrafficLog, splitPointOf }: typeof AutoSplitLoop = await import(
  new URL("../src/internal/autoSplit.ts", import.meta.url).href
)

const open = {
  mode: "PROVISIONED" as const,
  status: "ACTIVE",
  openShards: 4,
  maxShardCount: 64,
  sinceLastSplitMillis: Number.POSITIVE_INFINITY,
  cooldownMillis: 300_000,
  limits: { shardLimit: 500, openShardCount: 4 }
}

describe("auto-split decisions", () => {
  it("a hot shard is split unless the stream is on-demand, resharding, cooling down, at its maximum or at the account's quota", () => {
    assert.strictEqual(gate(open), undefined)
    assert.strictEqual(gate({ ...open, mode: "ON_DEMAND" }), "onDemand")
    assert.strictEqual(gate({ ...open, status: "UPDATING" }), "streamNotActive")
    assert.strictEqual(gate({ ...open, sinceLastSplitMillis: 1000 }), "cooldown")
    assert.strictEqual(gate({ ...open, openShards: 64 }), "maxShardCount")
    assert.strictEqual(gate({ ...open, limits: { shardLimit: 10, openShardCount: 10 } }), "shardLimit")
    // Limits that could not be read do not block: SplitShard itself refuses past the quota.
    assert.strictEqual(gate({ ...open, limits: undefined }), undefined)
  })

  it("the split point halves the observed keys, not the shard's range", () => {
    const start = 0n
    const end = (1n << 127n) - 1n
    // Traffic crowded in the lowest 1/16 of the range: the midpoint would leave it all in one child.
    const keys = Array.from({ length: 1000 }, (_, i) => (BigInt(i) * (1n << 123n)) / 1000n)
    const at = splitPointOf(keys, start, end)!
    const below = keys.filter((k) => k < at).length
    assert.isAtLeast(below, 450)
    assert.isAtMost(below, 550)
    assert.isTrue(at < 1n << 123n)
    // One key only, at the shard's start: nothing separates it.
    assert.strictEqual(splitPointOf([start, start], start, end), undefined)
    // Mostly the first key: the upper child starts at the next key seen.
    assert.strictEqual(splitPointOf([start, start, start, 7n], start, end), 7n)
  })

  it("a shard is hot when more than the set share of its records were throttled over the sliding window, with enough records to judge", () => {
    let now = 0
    const settings = AutoSplit.resolve({ enabled: true, window: "60 seconds", throttledShare: 0.1, minRecords: 100 })
    const log = new ShardTrafficLog(settings, () => now)
    for (let i = 0; i < 90; i++) log.sent("a", i % 2 === 0)
    assert.isUndefined(log.hottest(), "too few records to judge")
    for (let i = 0; i < 110; i++) log.sent("a", false)
    for (let i = 0; i < 500; i++) log.sent("b", i % 100 === 0)
    assert.strictEqual(log.hottest()?.shardId, "a")
    assert.closeTo(log.hottest()!.share, 45 / 200, 1e-9)
    // A minute later the throttles slid out of the window.
    now = 61_000
    for (let i = 0; i < 200; i++) log.sent("a", false)
    assert.isUndefined(log.hottest())
  })

  it("with the producer's rate limiter pacing a shard to its limit, the demand above the limit counts as throttled", () => {
    let now = 0
    const settings = AutoSplit.resolve({ enabled: true, window: "60 seconds", throttledShare: 0.1, minRecords: 100 })
    const log = new ShardTrafficLog(settings, () => now, { recordsPerSecond: 100, bytesPerSecond: 1_048_576 })
    // 150 records/s offered to a shard paced to 100/s, and 80/s to another: only the first is hot.
    for (let i = 0; i < 150 * 59; i++) log.accepted("hot", 100)
    for (let i = 0; i < 80 * 59; i++) log.accepted("cool", 100)
    now = 59_000
    const hot = log.hottest()
    assert.strictEqual(hot?.shardId, "hot")
    assert.closeTo(hot!.share, 1 / 3, 0.01)
    // With aggregation only bytes count: 150 small records/s are far below 1 MiB/s.
    const aggregated = new ShardTrafficLog(settings, () => now, {
      recordsPerSecond: undefined,
      bytesPerSecond: 1_048_576
    })
    for (let i = 0; i < 150 * 59; i++) aggregated.accepted("hot", 100)
    assert.isUndefined(aggregated.hottest())
  })

  it("keeps a bounded sample of hash keys per shard", () => {
    const log = new ShardTrafficLog(AutoSplit.resolve({ enabled: true }), () => 0)
    for (let i = 0; i < 100_000; i++) log.observe("a", BigInt(i))
    assert.isAtMost(log.samples("a").length, 512)
    const at = splitPointOf(log.samples("a"), 0n, 1_000_000n)!
    assert.isTrue(at > 40_000n && at < 60_000n, `median ${at}`)
  })
})

/** The producer's client goes through the proxy, which enforces 100 records/s per shard as Kinesis does 1000. */
const TestLayer = Layer.provideMerge(
  Layer.unwrap(Effect.map(FaultProxy.FaultProxy, (p) => Client.layer(p.clientConfig))),
  FaultProxy.layer({ shardLimits: true, shardRecordsPerSecond: 100 })
).pipe(Layer.provideMerge(KinesisEmulator.layer()))

layer(TestLayer, { timeout: 120_000, excludeTestServices: true })("auto-split on the emulator", (it) => {
  for (
    const [signal, producerLimits] of [
      ["Kinesis throttles it (the producer's limiter off)", { rateLimit: false }],
      ["the producer's limiter holds back a third of its demand", { shardRecordsPerSecond: 100 }]
    ] as const
  ) {
    it.effect(
      `a shard overloaded by a hot key range (${signal}) is split at the median of its observed keys; afterwards under 1 % of records are throttled`,
      () =>
        Effect.gen(function*() {
          const proxy = yield* FaultProxy.FaultProxy
          const stream = yield* StreamFixtures.stream({ shardCount: 2 })
          const [first] = stream.shards
          const start = BigInt(first!.startingHashKey)
          const span = BigInt(first!.endingHashKey) - start + 1n
          // 400 keys crowded in the lowest 1/16 of the first shard: a split at its midpoint would not help.
          const keys = Array.from({ length: 400 }, (_, i) => (start + (span / 16n) * BigInt(i) / 400n).toString())
          const events: Array<AutoSplit.AutoSplitEvent> = []
          let i = 0
          const next = (n: number) =>
            Array.from({ length: n }, () => {
              const k = i++
              const key = Math.floor(Math.random() * 400)
              return { partitionKey: `p${key}`, explicitHashKey: keys[key]!, data: `r${k}` }
            })
          yield* Effect.scoped(Effect.gen(function*() {
            const producer = yield* Producer.make({
              stream: stream.streamName,
              serde: Serde.string,
              settings: {
                ...producerLimits,
                autoSplit: { enabled: true, window: "5 seconds", minRecords: 300, checkInterval: "1 second" }
              },
              onDiagnostic: (event) => Effect.sync(() => events.push(event))
            })
            // 160 records/s into a shard that takes 100/s: after an even split each child gets 80/s.
            const offerFor = (ticks: number) =>
              Effect.gen(function*() {
                for (let t = 0; t < ticks; t++) {
                  yield* producer.offerAll(next(16))
                  yield* Effect.sleep("100 millis")
                }
              })
            let ticks = 0
            while (!events.some((e) => e._tag === "SplitCompleted")) {
              yield* offerFor(10)
              ticks += 10
              assert.isBelow(ticks, 600, "no split within 600 ticks")
            }
            // Let the records throttled before the split drain, then measure.
            while ((yield* producer.buffered) > 0) yield* Effect.sleep("100 millis")
            const map = yield* producer.shardMap
            assert.strictEqual(map.shards.length, 3)
            yield* proxy.resetStats
            yield* offerFor(100)
            while ((yield* producer.buffered) > 0) yield* Effect.sleep("100 millis")
          }))
          const started = events.filter((e) => e._tag === "SplitStarted")
          assert.strictEqual(started.length, 1)
          const split = started[0]!
          assert.strictEqual(split.shardId, first!.shardId)
          assert.isTrue(
            split.newStartingHashKey < start + span / 16n,
            "split inside the hot range, not at the midpoint"
          )
          const stats = yield* proxy.stats
          const byShard = Object.values(stats.shards[stream.streamName] ?? {})
          const forwarded = byShard.reduce((a, s) => a + s.forwardedRecords, 0)
          assert.strictEqual(forwarded, 1600)
          const throttled = stats.throttledRecords
          assert.isBelow(
            throttled / (forwarded + throttled),
            0.01,
            `${throttled} throttled of ${forwarded + throttled}`
          )
          // Each child took a share of the hot traffic.
          const children = (events.find((e) => e._tag === "SplitCompleted") as Extract<
            AutoSplit.AutoSplitEvent,
            { _tag: "SplitCompleted" }
          >).childShardIds
          assert.strictEqual(children.length, 2)
          for (const child of children) {
            assert.isAbove(stats.shards[stream.streamName]?.[child]?.forwardedRecords ?? 0, 400)
          }
        }),
      180_000
    )
  }
})
