/**
 * Rebalancing on the DynamoDB lease store while records keep coming: a lease that moves for balance is handed over
 * (the owner checkpoints what it processed and lets go; the new owner starts there), so a worker joining a busy one
 * causes neither duplicates nor losses.
 */
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { Env, eventually, observer, put, startWorker, uniqueTable, type Worker } from "./fixtures.ts"

// Records with unique ids over many partition keys, written in small batches until stopped.
const produce = (stream: string, written: { count: number }) =>
  Effect.gen(function*() {
    while (true) {
      const batch = Array.from({ length: 20 }, (_, i) => {
        const id = written.count + i
        return { partitionKey: `key-${id % 97}`, data: `r${id}` }
      })
      yield* put(stream, batch)
      written.count += batch.length
      yield* Effect.sleep("40 millis")
    }
  })

// How often each record id was handled, over all workers.
const tally = (workers: ReadonlyArray<Worker>, written: number) => {
  const counts = new Map<string, number>()
  for (const worker of workers) for (const r of worker.seen) counts.set(r.data, (counts.get(r.data) ?? 0) + 1)
  let duplicates = 0
  let lost = 0
  for (let id = 0; id < written; id++) {
    const n = counts.get(`r${id}`) ?? 0
    if (n === 0) lost++
    else duplicates += n - 1
  }
  return { duplicates, lost }
}

layer(Env, { excludeTestServices: true, timeout: "90 seconds" })("Rebalancing on the DynamoDB lease store", (it) => {
  describe("graceful hand-off", () => {
    it.effect("a worker joining a busy one takes its share with no record processed twice and none lost", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 4 })
        const table = uniqueTable("rebalance")
        const written = { count: 0 }
        const producer = yield* Effect.forkScoped(produce(streamName, written))
        // Checkpoints a second apart: a lease moved without a hand-off resumes up to a second back.
        const options = { stream: streamName, applicationName: table, checkpointInterval: "1 second" } as const
        const a = yield* startWorker({ ...options, workerId: "a" })
        yield* eventually(Effect.sync(() => a.held().size === 4), "20 seconds", "a holding all shards")
        yield* eventually(Effect.sync(() => a.seen.length > 200), "20 seconds", "a processing")

        const b = yield* startWorker({ ...options, workerId: "b" })
        yield* eventually(Effect.sync(() => a.held().size === 2 && b.held().size === 2), "30 seconds", "2 + 2")
        yield* eventually(Effect.sync(() => b.seen.length > 200), "20 seconds", "b processing")

        yield* Fiber.interrupt(producer)
        const total = written.count
        yield* eventually(
          Effect.sync(() => tally([a, b], total).lost === 0),
          "30 seconds",
          `all ${total} records processed`
        )
        expect(tally([a, b], total)).toEqual({ duplicates: 0, lost: 0 })
        // b's leases came from a, a live worker: the moves were rebalancing, not expiry; a let them go, none was
        // taken from it.
        const acquired = b.events.filter((e) => e._tag === "LeaseAcquired")
        expect(acquired.map((e) => e._tag === "LeaseAcquired" && e.previousOwner)).toEqual(["a", "a"])
        expect(a.events.filter((e) => e._tag === "LeaseLost")).toEqual([])
        expect(a.events.filter((e) => e._tag === "LeaseReleased")).toHaveLength(2)
        // Nothing is left in a hand-off.
        const leases = yield* (yield* observer(table)).list
        expect(leases.map((l) => l.checkpointOwner)).toEqual([undefined, undefined, undefined, undefined])
      }))
  })
})
