import { LeaseRepository } from "@effect-kinesis/consumer"
import { StreamFixtures } from "@effect-kinesis/testing"
import { expect, layer } from "@effect/vitest"
import { Clock, Effect } from "effect"
import { eventually, fastLeases, KinesisLive, millis, startWorker } from "./fixtures.ts"

// A wall clock that can be stepped forward (an NTP step, a VM resumed with a stale clock): no time passes for sleeps.
const steppableClock = () => {
  let offset = 0
  const base = Clock.Clock.defaultValue()
  const clock: Clock.Clock = {
    monotonicTimeNanosUnsafe: () => base.monotonicTimeNanosUnsafe(),
    monotonicTimeNanos: Effect.sync(() => base.monotonicTimeNanosUnsafe()),
    sleep: (duration) => base.sleep(duration),
    currentTimeMillisUnsafe: () => base.currentTimeMillisUnsafe() + offset,
    currentTimeMillis: Effect.sync(() => base.currentTimeMillisUnsafe() + offset),
    currentTimeNanosUnsafe: () => base.currentTimeNanosUnsafe() + BigInt(offset) * 1_000_000n,
    currentTimeNanos: Effect.sync(() => base.currentTimeNanosUnsafe() + BigInt(offset) * 1_000_000n)
  }
  return { clock, step: (ms: number) => (offset += ms) }
}

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("wall-clock step", (it) => {
  it.effect("a worker whose wall clock steps forward past 3 expiries does not take leases its live peers keep renewing", () =>
    Effect.gen(function*() {
      const { streamName } = yield* StreamFixtures.stream({ shardCount: 6 })
      const repository = yield* LeaseRepository.makeMemory()
      const w1 = yield* startWorker({ stream: streamName, workerId: "w1", repository })
      const w2 = yield* startWorker({ stream: streamName, workerId: "w2", repository })
      const jumpy = steppableClock()
      const w3 = yield* startWorker({ stream: streamName, workerId: "w3", repository }).pipe(
        Effect.provideService(Clock.Clock, jumpy.clock)
      )
      const workers = [w1, w2, w3]
      yield* eventually(
        Effect.sync(() => workers.every((w) => w.held().size === 2)),
        "30 seconds",
        "2 shards each"
      )
      yield* Effect.sleep("1 second")
      const before = [w1, w2].map((w) => w.events.length)
      jumpy.step(3 * millis(fastLeases.expiry) + 1000)
      yield* Effect.sleep("2 seconds")
      const lostByPeers = [w1, w2].flatMap((w, i) =>
        w.events.slice(before[i]).filter((e) => e._tag === "LeaseLost").map((e) => `${w.workerId}:${e.shardId}`)
      )
      expect(lostByPeers).toEqual([])
    }))
})
