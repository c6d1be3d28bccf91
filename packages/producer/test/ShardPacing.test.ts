import { Aggregation, HashKey, ShardMap } from "@effect-kinesis/core"
import { ProducerSettings } from "@effect-kinesis/producer"
import { assert, describe, it } from "@effect/vitest"
import { Context, Result } from "effect"
import type * as EngineModule from "../src/internal/engine.ts"
import type * as EntryModule from "../src/internal/entry.ts"
import type * as RecorderModule from "../src/internal/recorder.ts"
import type * as SecondLimitModule from "../src/internal/secondLimit.ts"

// Internal modules (the package does not export them): loaded by path, as in KeyOrder.test.ts.
const { Engine }: typeof EngineModule = await import(new URL("../src/internal/engine.ts", import.meta.url).href)
const { Entry, HashKeyRoute }: typeof EntryModule = await import(
  new URL("../src/internal/entry.ts", import.meta.url).href
)
const { Recorder }: typeof RecorderModule = await import(
  new URL("../src/internal/recorder.ts", import.meta.url).href
)
const { SecondLimit }: typeof SecondLimitModule = await import(
  new URL("../src/internal/secondLimit.ts", import.meta.url).href
)

const SHARDS = 64
const shardId = (i: number) => `shardId-${String(i).padStart(12, "0")}`
const span = (1n << 128n) / BigInt(SHARDS)
const shardMap = Result.getOrThrow(ShardMap.fromShards(Array.from({ length: SHARDS }, (_, i) => ({
  ShardId: shardId(i),
  HashKeyRange: {
    StartingHashKey: (span * BigInt(i)).toString(),
    EndingHashKey: (i === SHARDS - 1 ? (1n << 128n) - 1n : span * BigInt(i + 1) - 1n).toString()
  },
  SequenceNumberRange: { StartingSequenceNumber: "0" }
}))))

/**
 * The engine on a simulated clock (whole milliseconds, no real time): its buffer kept full with
 * records of `keys` partition keys and `dataBytes` bytes, every request answered `roundTripMs`
 * after it left, the dispatcher stepping when the engine asks to be woken or when its sleep ends,
 * as `Producer` drives it. `roundTrip` may instead say, per request as it leaves, how long its
 * answer takes and whether Kinesis refuses the request as a whole (asked when it answers).
 * Returns, per shard and millisecond of simulated time, the user records stored, the Kinesis
 * records and their bytes (data and partition key, as Kinesis counts them) sent, and the bytes
 * written (sent in a request Kinesis did not refuse as a whole).
 */
const simulate = (
  keys: number,
  roundTrip: number | ((batch: EngineModule.Batch, t: number, engine: EngineModule.Engine) => Answer),
  durationMs: number,
  settings: Partial<ProducerSettings.ProducerSettings>,
  dataBytes = 100
) => {
  const engine = new Engine(
    ProducerSettings.resolve({ bufferSize: 2000, ...settings }),
    shardMap,
    new Recorder("s", Context.empty() as Context.Context<never>, () => 0),
    0
  )
  const inFlight: Array<{ readonly batch: EngineModule.Batch; readonly sentAt: number; readonly answer: Answer }> = []
  let t = 0
  const perMs = () => Array.from({ length: SHARDS }, () => new Array<number>(durationMs).fill(0))
  const storedAt = perMs()
  const sentRecordsAt = perMs()
  const sentBytesAt = perMs()
  const writtenBytesAt = perMs()
  const eachRecord = (batch: EngineModule.Batch, f: (shard: number, bytes: number) => void) => {
    for (let i = 0; i < batch.count; i++) {
      const entry = batch.request[i]!
      f(
        shardIndex(batch.parts[i]!.shard!.info.shardId),
        entry.Data!.byteLength + Buffer.byteLength(entry.PartitionKey!)
      )
    }
  }
  engine.launch = (batch) => {
    const answer = typeof roundTrip === "number" ? { delay: roundTrip } : roundTrip(batch, t, engine)
    inFlight.push({ batch, sentAt: t, answer })
    inFlight.sort((a, b) => a.sentAt + a.answer.delay - (b.sentAt + b.answer.delay))
    eachRecord(batch, (shard, bytes) => {
      sentRecordsAt[shard]![t]!++
      sentBytesAt[shard]![t]! += bytes
      writtenBytesAt[shard]![t]! += bytes
    })
  }
  const routes = Array.from({ length: keys }, (_, k) => {
    const key = `key-${k}`
    return { key, route: new HashKeyRoute(HashKey.fromPartitionKey(key), Aggregation.partitionKeyBytes(key)) }
  })
  const data = new Uint8Array(dataBytes)
  let offered = 0
  let wakeAt = 0
  for (; t < durationMs; t++) {
    while (inFlight.length > 0 && inFlight[0]!.sentAt + inFlight[0]!.answer.delay <= t) {
      const { answer, batch, sentAt } = inFlight.shift()!
      if (answer.refused?.() === true) {
        eachRecord(batch, (shard, bytes) => writtenBytesAt[shard]![sentAt]! -= bytes)
        engine.onResponse(
          batch,
          undefined,
          { code: "InvalidArgument", message: "refused", retryable: false, cause: undefined },
          t
        )
      } else {
        engine.onResponse(
          batch,
          { Records: batch.parts.map((part) => ({ ShardId: part.shard!.info.shardId, SequenceNumber: "1" })) },
          undefined,
          t
        )
      }
    }
    for (;;) {
      const { key, route } = routes[offered % keys]!
      const entry = new Entry(key, data, data.length + route.partitionKeyBytes, route, (e, error) => {
        if (error === undefined) storedAt[Number(e.hashKey.key / span)]![t]!++
      }, undefined)
      if (!engine.tryAccept(entry, t)) break
      offered++
    }
    if (t >= wakeAt) {
      // New records and answers wake the dispatcher; otherwise it sleeps as long as `step` says.
      engine.wakeup = undefined
      const sleep = engine.step(t)
      wakeAt = sleep === Number.POSITIVE_INFINITY ? Number.POSITIVE_INFINITY : t + Math.max(1, Math.ceil(sleep))
      engine.wakeup = () => {
        wakeAt = t + 1
      }
    }
  }
  return { storedAt, sentRecordsAt, sentBytesAt, writtenBytesAt }
}

/** How long a simulated request's answer takes, and whether Kinesis refuses it as a whole. */
interface Answer {
  readonly delay: number
  readonly refused?: () => boolean
}

const shardIndex = (shardId: string) => Number(shardId.slice("shardId-".length))

/** The most any window of `ms` consecutive milliseconds holds of `perMs` (one second by default). */
const busiestSecond = (perMs: ReadonlyArray<number>, ms = 1000): number => {
  let sum = 0
  let most = 0
  for (let t = 0; t < perMs.length; t++) {
    sum += perMs[t]!
    if (t >= ms) sum -= perMs[t - ms]!
    most = Math.max(most, sum)
  }
  return most
}

describe("per-shard pacing with a full buffer", () => {
  it("the busiest shards reach at least 95 % of their limit and never more", () => {
    // 200 keys over 64 shards, 200 records/s per shard, 5 ms round trips, per-key order on.
    // With fewer keys per shard, per-key order caps a shard below its limit instead: a key sends
    // one record per round trip plus the time it waits in a request held for other shards'
    // buckets (at 100 keys, the third busiest shard reached 60 % of its limit with the 20 ms
    // hold, 100 % with a 5 ms one).
    const limit = 200
    const { storedAt } = simulate(200, 5, 4000, { shardRecordsPerSecond: limit, bufferSize: 4000 })
    // Per shard and second of simulated time, after the first (the buckets' initial burst).
    const perSecond = storedAt.map((shard) =>
      [1, 2, 3].map((second) => shard.slice(second * 1000, (second + 1) * 1000).reduce((a, b) => a + b, 0))
    )
    const busiest = perSecond.map((seconds) => Math.min(...seconds)).sort((a, b) => b - a).slice(0, 3)
    for (const stored of busiest) assert.isAtLeast(stored, 0.95 * limit)
    assert.isAtMost(Math.max(...perSecond.flat()), limit)
  })

  it("no shard is sent more than its records limit in any one second, the first included", () => {
    const limit = 200
    const { sentRecordsAt } = simulate(200, 5, 4000, { shardRecordsPerSecond: limit, bufferSize: 4000 })
    const most = Math.max(...sentRecordsAt.map((perMs) => busiestSecond(perMs)))
    assert.isAtMost(most, limit)
    // And the limiter is not merely slow: the busiest shards use their second.
    assert.isAtLeast(most, 0.95 * limit)
    // A longer window holds at most the rate and one burst of the buckets (200 ms) besides.
    const mostIn2500 = Math.max(...sentRecordsAt.map((perMs) => busiestSecond(perMs, 2500)))
    assert.isAtMost(mostIn2500, 2.5 * limit + 0.2 * limit + 1)
  })

  it.each([
    { name: "plain records", aggregate: false },
    { name: "aggregates", aggregate: true }
  ])("no shard is sent more than its bytes limit in any one second ($name)", ({ aggregate }) => {
    // 5,000-byte records against 100,000 bytes per second: a burst or one record over would show.
    const limit = 100_000
    const { sentBytesAt } = simulate(200, 5, 4000, { shardBytesPerSecond: limit, bufferSize: 4000, aggregate }, 5000)
    const most = Math.max(...sentBytesAt.map((perMs) => busiestSecond(perMs)))
    assert.isAtMost(most, limit)
    assert.isAtLeast(most, 0.9 * limit)
  })
})

describe("per-shard limits on rarer paths", () => {
  const limit = 100_000
  const refusedFailure = (at: number, minRecords: number) => {
    let refused = false
    return (batch: EngineModule.Batch, t: number) => ({
      delay: 50,
      refused: () => {
        if (refused || t < at || batch.count < minRecords) return false
        return refused = true
      }
    })
  }

  it("a request Kinesis refuses as a whole: its halves count when they go, and what is written stays within the limit", () => {
    const { writtenBytesAt } = simulate(200, refusedFailure(1500, 4), 4000, {
      shardBytesPerSecond: limit,
      bufferSize: 4000,
      ordering: "unordered"
    }, 5000)
    assert.isAtMost(Math.max(...writtenBytesAt.map((perMs) => busiestSecond(perMs))), limit)
  })

  it.each([
    { name: "plain records", aggregate: false },
    { name: "aggregates", aggregate: true }
  ])("a request refused as a whole after more than a second: its halves wait for room ($name)", ({ aggregate }) => {
    // Its counts aged out while it was out, so taking them back frees nothing: the halves go on
    // top of what the shard was sent meanwhile unless they wait for room like any request.
    let refusedAt = Number.POSITIVE_INFINITY
    const refused = new Set<EntryModule.Entry>()
    // Per shard, its refused records not sent again yet.
    const unsent = new Map<unknown, number>()
    let resent = 0
    // Records of those shards sent after the refusal while some of their refused records wait.
    let overtook = 0
    const entriesOf = (batch: EngineModule.Batch) =>
      batch.parts.slice(0, batch.count).flatMap((part) => part instanceof Entry ? [part] : part.entries)
    const { writtenBytesAt } = simulate(
      200,
      (batch, t) => {
        if (refused.size === 0 && t >= 1500 && batch.count >= 4) {
          refusedAt = t + 1500
          for (const entry of entriesOf(batch)) {
            refused.add(entry)
            unsent.set(entry.shard, (unsent.get(entry.shard) ?? 0) + 1)
          }
          return { delay: 1500, refused: () => true }
        }
        const entries = entriesOf(batch)
        for (const entry of entries) {
          if (!refused.has(entry) && t >= refusedAt && (unsent.get(entry.shard) ?? 0) > 0) overtook++
        }
        for (const entry of entries) {
          if (refused.has(entry)) {
            resent++
            unsent.set(entry.shard, unsent.get(entry.shard)! - 1)
          }
        }
        return { delay: 50 }
      },
      5000,
      { shardBytesPerSecond: limit, bufferSize: 4000, ordering: "unordered", aggregate },
      5000
    )
    assert.isAbove(refused.size, 0)
    assert.isAtMost(Math.max(...writtenBytesAt.map((perMs) => busiestSecond(perMs))), limit)
    // They do go, and their shards send nothing new before they have (or they could wait for good).
    assert.strictEqual(resent, refused.size)
    assert.strictEqual(overtook, 0)
  })

  it("no aggregate is larger than a second's bytes", () => {
    const small = 30_000
    const { sentBytesAt } = simulate(
      200,
      5,
      4000,
      { shardBytesPerSecond: small, bufferSize: 4000, aggregate: true },
      1000
    )
    assert.isAtMost(Math.max(...sentBytesAt.map((perMs) => busiestSecond(perMs))), small)
  })

  it("a request held back for over a second (its slots taken by slow split requests) counts when it goes", () => {
    let refusedParts: Set<unknown> | undefined
    const { writtenBytesAt } = simulate(
      400,
      (batch, t, engine) => {
        // The halves of the refused request take 1.5 s to answer: they hold both slots, while a
        // request is held back.
        if (refusedParts?.has(batch.parts[0]) === true) return { delay: 1500 }
        return {
          delay: 5,
          refused: () => {
            const held = (engine as unknown as { readonly held: EngineModule.Batch | undefined }).held
            if (refusedParts !== undefined || t < 2500 || batch.count < 2 || held === undefined) return false
            refusedParts = new Set(batch.parts.slice(0, batch.count))
            return true
          }
        }
      },
      6000,
      { shardBytesPerSecond: limit, bufferSize: 800, ordering: "unordered", maxInFlightRequests: 2 },
      5000
    )
    assert.isDefined(refusedParts)
    assert.isAtMost(Math.max(...writtenBytesAt.map((perMs) => busiestSecond(perMs))), limit)
  })
})

describe("SecondLimit", () => {
  it("room is the limit less what the last second was sent, and readyAt the first millisecond with room enough", () => {
    // Checked against counting the last second by brute force, over random sends and restamps.
    let seed = 42
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648
    const perSecond = 1000
    const limit = new SecondLimit(perSecond)
    const sent: Array<{ at: number; amount: number }> = []
    const inLastSecond = (now: number) => sent.filter((s) => s.at > now - 1000).reduce((sum, s) => sum + s.amount, 0)
    let now = 0
    let heldSince: number | undefined
    for (let step = 0; step < 5000; step++) {
      now += Math.floor(random() * 40)
      limit.update(now)
      assert.strictEqual(limit.room, perSecond - inLastSecond(now))
      const need = 1 + Math.floor(random() * 300)
      const ready = limit.readyAt(need, now)
      assert.isAtLeast(ready, now)
      assert.isAtLeast(perSecond - inLastSecond(ready), need)
      if (ready > now) assert.isBelow(perSecond - inLastSecond(ready - 1), need)
      if (limit.room >= need) {
        limit.count(need, now)
        sent.push({ at: now, amount: need })
        heldSince ??= random() < 0.2 ? now : undefined
      }
      if (heldSince !== undefined && random() < 0.3) {
        // A request held back since `heldSince` leaves now: what it took counts from now.
        limit.restamp(heldSince, now)
        for (const s of sent) if (s.at >= heldSince) s.at = now
        heldSince = undefined
      }
    }
  })
})
