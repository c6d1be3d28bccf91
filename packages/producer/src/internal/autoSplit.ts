import { AdminClient, type Client, type ShardMap } from "@effect-kinesis/core"
import { Effect, Stream } from "effect"
import type * as AutoSplit from "../AutoSplit.ts"

const sum = (values: ReadonlyArray<number>): number => {
  let total = 0
  for (const v of values) total += v
  return total
}

/** Slots the sliding window is kept in: the window slides by a sixth of itself. */
const SLOTS = 6
/** Hash keys sampled per shard and half window: bounded memory, a median within a few per cent. */
const SAMPLES = 256

/** A uniform sample of the hash keys of one shard's records over half a window (reservoir sampling). */
class Reservoir {
  readonly keys: Array<bigint> = []
  seen = 0
  add(key: bigint): void {
    this.seen++
    if (this.keys.length < SAMPLES) this.keys.push(key)
    else {
      const j = Math.floor(Math.random() * this.seen)
      if (j < SAMPLES) this.keys[j] = key
    }
  }
}

/** What the producer saw of one predicted shard over the sliding window. */
class ShardTraffic {
  readonly sent = new Array<number>(SLOTS).fill(0)
  readonly throttled = new Array<number>(SLOTS).fill(0)
  /** User records (and their bytes) accepted for the shard: the demand on it. */
  readonly acceptedRecords = new Array<number>(SLOTS).fill(0)
  readonly acceptedBytes = new Array<number>(SLOTS).fill(0)
  /** Since when it is watched: the window is not full before `windowMillis` have passed. */
  readonly since: number
  /** The slot `sent[slot % SLOTS]` counts. */
  slot = 0
  young = new Reservoir()
  old = new Reservoir()
  youngSince: number
  constructor(now: number) {
    this.youngSince = now
    this.since = now
  }
}

/**
 * The split point that halves `samples` (hash keys observed on a shard of range
 * `[start, end]`): their median, so that about half the records hash below it. `undefined` when
 * no key above `start` was seen (a split must start its upper child above the shard's start).
 */
export const splitPointOf = (samples: ReadonlyArray<bigint>, start: bigint, end: bigint): bigint | undefined => {
  const inRange = samples.filter((k) => k >= start && k <= end).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  if (inRange.length === 0) return undefined
  const median = inRange[inRange.length >> 1]!
  if (median > start) return median
  // The lower half is all the shard's first key: the upper child starts at the next key seen.
  return inRange.find((k) => k > start)
}

/** Why a hot shard cannot be split now, or `undefined` when it can. */
export const gate = (input: {
  readonly mode: "PROVISIONED" | "ON_DEMAND"
  readonly status: string
  readonly openShards: number
  readonly maxShardCount: number
  readonly sinceLastSplitMillis: number
  readonly cooldownMillis: number
  /** Undefined when `DescribeLimits` could not be read: then `SplitShard` itself tells. */
  readonly limits: AdminClient.AccountLimits | undefined
}): AutoSplit.SkipReason | undefined => {
  if (input.mode === "ON_DEMAND") return "onDemand"
  if (input.status !== "ACTIVE") return "streamNotActive"
  if (input.sinceLastSplitMillis < input.cooldownMillis) return "cooldown"
  if (input.openShards + 1 > input.maxShardCount) return "maxShardCount"
  if (input.limits !== undefined && input.limits.openShardCount + 1 > input.limits.shardLimit) return "shardLimit"
  return undefined
}

/**
 * A shard's write limit as the producer paces it: records count only without aggregation (an
 * aggregate of many user records is one Kinesis record).
 */
export interface ShardLimit {
  readonly recordsPerSecond: number | undefined
  readonly bytesPerSecond: number
}

/**
 * Per predicted shard over the sliding window: Kinesis records sent and throttled, user records
 * accepted (the demand), and a sample of the user records' hash keys. Fed by the engine and the
 * recorder, read by the decision loop.
 *
 * A shard's overload is the larger of two shares: of its Kinesis records that Kinesis throttled,
 * and of the demand above its limit. The second is what the producer's own rate limiter hides:
 * it paces a shard to its limit, so Kinesis throttles little while the shard's backlog grows.
 */
export class ShardTrafficLog {
  private readonly shards = new Map<string, ShardTraffic>()
  private readonly slotMillis: number
  private readonly halfWindow: number
  private readonly settings: AutoSplit.Resolved
  private readonly now: () => number
  private readonly limit: ShardLimit | undefined
  constructor(settings: AutoSplit.Resolved, now: () => number, limit?: ShardLimit) {
    this.settings = settings
    this.now = now
    this.limit = limit
    this.slotMillis = settings.windowMillis / SLOTS
    this.halfWindow = settings.windowMillis / 2
  }

  private traffic(shardId: string): ShardTraffic {
    let t = this.shards.get(shardId)
    if (t === undefined) {
      t = new ShardTraffic(this.now())
      this.shards.set(shardId, t)
    }
    return t
  }

  /** Moves `t` to the current slot, clearing the slots that fell out of the window. */
  private advance(t: ShardTraffic, now: number): void {
    const slot = Math.floor(now / this.slotMillis)
    if (slot !== t.slot) {
      for (let s = Math.max(t.slot + 1, slot - SLOTS + 1); s <= slot; s++) {
        t.sent[s % SLOTS] = 0
        t.throttled[s % SLOTS] = 0
        t.acceptedRecords[s % SLOTS] = 0
        t.acceptedBytes[s % SLOTS] = 0
      }
      t.slot = slot
    }
    if (now - t.youngSince >= this.halfWindow) {
      t.old = t.young
      t.young = new Reservoir()
      t.youngSince = now
    }
  }

  /** A Kinesis record predicted for `shardId` was answered: written, or throttled. */
  sent(shardId: string, throttled: boolean): void {
    const t = this.traffic(shardId)
    this.advance(t, this.now())
    const i = t.slot % SLOTS
    t.sent[i]!++
    if (throttled) t.throttled[i]!++
  }

  /** A user record of `bytes` was accepted for `shardId`. */
  accepted(shardId: string, bytes: number): void {
    const t = this.traffic(shardId)
    this.advance(t, this.now())
    const i = t.slot % SLOTS
    t.acceptedRecords[i]!++
    t.acceptedBytes[i]! += bytes
  }

  /** A user record routed to `shardId` by `hashKey` was written. */
  observe(shardId: string, hashKey: bigint): void {
    const t = this.traffic(shardId)
    if (this.now() - t.youngSince >= this.halfWindow) this.advance(t, this.now())
    t.young.add(hashKey)
  }

  /** The shard with the largest throttled share over the window, if it is hot. */
  hottest(): { readonly shardId: string; readonly share: number; readonly records: number } | undefined {
    const now = this.now()
    let best: { shardId: string; share: number; records: number } | undefined
    for (const [shardId, t] of this.shards) {
      this.advance(t, now)
      const sent = sum(t.sent)
      const accepted = sum(t.acceptedRecords)
      const records = Math.max(sent, accepted)
      if (records < this.settings.minRecords) continue
      let share = sent === 0 ? 0 : sum(t.throttled) / sent
      const limit = this.limit
      if (limit !== undefined && accepted > 0) {
        const seconds = Math.min(this.settings.windowMillis, Math.max(now - t.since, this.slotMillis)) / 1000
        share = Math.max(share, 1 - (limit.bytesPerSecond * seconds) / sum(t.acceptedBytes))
        if (limit.recordsPerSecond !== undefined) {
          share = Math.max(share, 1 - (limit.recordsPerSecond * seconds) / accepted)
        }
      }
      if (share > this.settings.throttledShare && (best === undefined || share > best.share)) {
        best = { shardId, share, records }
      }
    }
    return best
  }

  samples(shardId: string): ReadonlyArray<bigint> {
    const t = this.shards.get(shardId)
    return t === undefined ? [] : t.old.keys.concat(t.young.keys)
  }

  /** Forgets what was seen: after a split the shard map and the traffic are new. */
  clear(): void {
    this.shards.clear()
  }
}

/**
 * The decision loop: every `checkIntervalMillis`, the hottest shard is split if the gate allows,
 * one split at a time (the loop waits for ACTIVE before it looks again).
 */
export const run = (options: {
  readonly settings: AutoSplit.Resolved
  readonly log: ShardTrafficLog
  readonly client: Client.Client["Service"]
  readonly stream: Client.StreamId
  readonly shardMap: () => ShardMap.ShardMap
  /** Asks the producer to list the shards again now. */
  readonly refreshShardMap: () => void
  readonly report: (event: AutoSplit.AutoSplitEvent) => Effect.Effect<void>
  readonly now: () => number
}): Effect.Effect<never> => {
  const { client, log, settings, stream } = options
  const admin = AdminClient.fromClient(client)
  let lastSplitAt = Number.NEGATIVE_INFINITY
  // A skip is reported once per shard and reason per window, not at every check.
  const skipsReported = new Map<string, number>()
  const skip = (shardId: string, reason: AutoSplit.SkipReason, share: number) =>
    Effect.suspend(() => {
      const key = `${shardId}/${reason}`
      const at = skipsReported.get(key)
      const now = options.now()
      if (at !== undefined && now - at < settings.windowMillis) return Effect.void
      skipsReported.set(key, now)
      return options.report({ _tag: "SplitSkipped", shardId, reason, throttledShare: share })
    })

  const check = Effect.gen(function*() {
    const hot = log.hottest()
    if (hot === undefined) return
    const shard = options.shardMap().shards.find((s) => s.shardId === hot.shardId)
    // Not open any more (a parent whose late answers came in, or split by someone else).
    if (shard === undefined) return
    const summary = yield* admin.describeStream(stream)
    const limits = yield* Effect.option(admin.describeLimits)
    const reason = gate({
      mode: summary.mode,
      status: summary.status,
      openShards: summary.openShardCount,
      maxShardCount: settings.maxShardCount,
      sinceLastSplitMillis: options.now() - lastSplitAt,
      cooldownMillis: settings.cooldownMillis,
      limits: limits._tag === "Some" ? limits.value : undefined
    })
    if (reason !== undefined) return yield* skip(hot.shardId, reason, hot.share)
    const at = splitPointOf(log.samples(hot.shardId), shard.startingHashKey, shard.endingHashKey)
    if (at === undefined) return yield* skip(hot.shardId, "noSplitPoint", hot.share)
    lastSplitAt = options.now()
    yield* options.report({
      _tag: "SplitStarted",
      shardId: hot.shardId,
      newStartingHashKey: at,
      throttledShare: hot.share,
      records: hot.records
    })
    const split = yield* Effect.result(admin.splitShard(stream, hot.shardId, at))
    lastSplitAt = options.now()
    if (split._tag === "Failure") {
      return yield* options.report({ _tag: "SplitFailed", shardId: hot.shardId, error: split.failure.message })
    }
    log.clear()
    options.refreshShardMap()
    const children = yield* client.listShards(stream, { shardFilter: { Type: "AT_LATEST" } }).pipe(
      Stream.runCollect,
      Effect.map((shards) => shards.filter((s) => s.ParentShardId === hot.shardId).map((s) => s.ShardId!)),
      Effect.orElseSucceed((): ReadonlyArray<string> => [])
    )
    yield* options.report({
      _tag: "SplitCompleted",
      shardId: hot.shardId,
      newStartingHashKey: at,
      childShardIds: children
    })
  })

  return Effect.sleep(settings.checkIntervalMillis).pipe(
    Effect.andThen(check),
    Effect.catch((error) =>
      Effect.logWarning(`Kinesis producer: auto-split could not check the stream: ${error._tag}: ${error.message}`)
    ),
    Effect.forever
  )
}
