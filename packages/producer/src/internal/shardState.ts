import { Aggregation } from "@effect-kinesis/core"
import type { ShardMap } from "@effect-kinesis/core"
import { type Entry, highBits } from "./entry.ts"
import type { KeyState } from "./keyOrder.ts"
import type { ShardAcc } from "./kplMetrics.ts"
import type { MutableShardMetrics } from "./recorder.ts"
import { SecondLimit } from "./secondLimit.ts"

/** Rate feedback: how much a throttle cuts the shard's rate, and how fast it recovers. */
const DECREASE = 0.7
const MIN_FACTOR = 0.05
/** Additive recovery, as a share of the shard limit per second. */
const RECOVERY_PER_MS = 0.1 / 1000
/** One cut per this long: the throttles of one window are one congestion signal, not many. */
const CUT_COOLDOWN_MS = 250

export interface RateLimits {
  readonly enabled: boolean
  readonly bytesPerMs: number
  readonly recordsPerMs: number
  readonly burstMs: number
  /** The hard limits of any one second (see `SecondLimit`). */
  readonly bytesPerSecond: number
  readonly recordsPerSecond: number
}

/**
 * Everything the producer keeps per predicted shard: the records waiting for it, its token
 * buckets and the rate factor that throttling feedback adjusts (AIMD), and what it was sent in the
 * last second.
 *
 * The buckets pace a busy shard at its limit and let one that idled send a burst. But a token
 * bucket lets a window hold its burst on top of the rate: a shard that idled (or whose records the
 * event loop reached late) would get up to `burst` more than its limit in the second that follows.
 * So the shard is also held to its limits over every window of one second (`SecondLimit`);
 * within that, it may still take the burst at once.
 */
export class ShardState {
  info: ShardMap.ShardInfo
  readonly explicitHashKey: string
  /** The high bits of the starting hash key, for `Engine.route`. */
  readonly startHigh: number
  // Fresh records, oldest first: `queue[head, end)`. The array keeps its room when it empties,
  // so that a shard refilled after every request does not grow a new one each time.
  private queue: Array<Entry | undefined> = []
  private head = 0
  private end = 0
  /** Records to send again once their `notBefore` has passed (without per-key order). */
  retries: Array<Entry> = []
  /**
   * With per-key order: keys whose waiting records are older than this shard's fresh ones, in the
   * order they became ready (see `KeyOrder`). One out under another token is dropped when met.
   */
  ready: Array<KeyState> = []
  /** The ready key whose record `peek` returned last; undefined when it came from elsewhere. */
  peekedKey: KeyState | undefined = undefined
  /**
   * Aggregates of this shard out (with per-key order): built and not yet answered. See
   * `Engine.waitsForAnswer`.
   */
  out = 0
  /** Bytes (`Entry.size`) of the fresh records in `queue`. */
  freshBytes = 0
  bytesTokens: number
  recordTokens: number
  private refilledAt: number
  /** The hard limits (with the limiter on). */
  private readonly recordLimit: SecondLimit
  private readonly byteLimit: SecondLimit
  /** The bytes the shard's next send needs within `byteLimit`: set when one did not fit. */
  private needBytes = 1
  factor = 1
  private lastCutAt = Number.NEGATIVE_INFINITY
  aggregator: Aggregation.Aggregator | undefined
  /** This shard's counters in the recorder's current interval (see `Recorder.kinesisPut`). */
  metrics: MutableShardMetrics | undefined = undefined
  metricsEpoch = -1
  /** This shard's KPL-named metrics, when they are recorded. */
  kpl: ShardAcc | undefined = undefined

  private readonly limits: RateLimits

  constructor(info: ShardMap.ShardInfo, limits: RateLimits, aggregateBytes: number | undefined, now: number) {
    this.info = info
    this.limits = limits
    this.explicitHashKey = info.startingHashKey.toString(10)
    this.startHigh = highBits(info.startingHashKey)
    this.bytesTokens = limits.bytesPerMs * limits.burstMs
    this.recordTokens = limits.recordsPerMs * limits.burstMs
    this.refilledAt = now
    this.recordLimit = new SecondLimit(limits.recordsPerSecond)
    this.byteLimit = new SecondLimit(limits.bytesPerSecond)
    this.aggregator = aggregateBytes === undefined
      ? undefined
      : Aggregation.makeAggregator({ explicitHashKey: this.explicitHashKey, maxBytes: aggregateBytes })
  }

  get queued(): number {
    return this.end - this.head + this.retries.length + this.ready.length
  }

  push(entry: Entry): void {
    if (this.end < this.queue.length) this.queue[this.end] = entry
    else this.queue.push(entry)
    this.end++
    this.freshBytes += entry.size
  }

  /** The fresh record that has waited longest, if any. */
  oldest(): Entry | undefined {
    return this.head < this.end ? this.queue[this.head] : undefined
  }

  /**
   * The next record to send at `now`: a due retry first, then the next record of a ready key that
   * is not out or out under `token` (the Kinesis record being built), then the oldest fresh
   * record. `undefined` when nothing is due.
   */
  peek(now: number, token = 0): Entry | undefined {
    this.peekedKey = undefined
    const retries = this.retries
    for (let i = 0; i < retries.length; i++) {
      if (retries[i]!.notBefore <= now) return retries[i]
    }
    const ready = this.ready
    for (let i = 0; i < ready.length; i++) {
      const key = ready[i]!
      if (key.out !== 0 && key.out !== token) {
        // Out with another Kinesis record: it comes back when that is answered.
        key.readyIn = undefined
        ready.splice(i--, 1)
        continue
      }
      const next = key.waiting[0]!
      if (next.notBefore <= now) {
        this.peekedKey = key
        return next
      }
    }
    return this.head < this.end ? this.queue[this.head] : undefined
  }

  /** Removes `entry`, which `peek` just returned. */
  take(entry: Entry): void {
    if (this.head < this.end && this.queue[this.head] === entry) {
      this.queue[this.head] = undefined
      this.head++
      this.freshBytes -= entry.size
      if (this.head === this.end) {
        this.head = 0
        this.end = 0
      } else if (this.head > 4096 && this.head * 2 > this.end) {
        this.queue = this.queue.slice(this.head, this.end)
        this.end -= this.head
        this.head = 0
      }
      return
    }
    const i = this.retries.indexOf(entry)
    if (i >= 0) this.retries.splice(i, 1)
  }

  /** The earliest time a waiting retry becomes due (infinity when none). */
  nextRetryAt(): number {
    let at = Number.POSITIVE_INFINITY
    for (const entry of this.retries) if (entry.notBefore < at) at = entry.notBefore
    for (const key of this.ready) {
      if (key.out === 0 && key.waiting[0]!.notBefore < at) at = key.waiting[0]!.notBefore
    }
    return at
  }

  /**
   * Removes and returns every record whose deadline has passed: those accepted at or before
   * `acceptedBy` (now minus the TTL).
   */
  takeExpired(acceptedBy: number): Array<Entry> | undefined {
    let expired: Array<Entry> | undefined
    // Fresh records arrive in deadline order (one TTL for all), so only the front can be due.
    while (this.head < this.end && this.queue[this.head]!.enqueuedAt <= acceptedBy) {
      const entry = this.queue[this.head]!
      this.take(entry)
      ;(expired ??= []).push(entry)
    }
    if (this.retries.length > 0) {
      const keep: Array<Entry> = []
      for (const entry of this.retries) {
        if (entry.enqueuedAt <= acceptedBy) (expired ??= []).push(entry)
        else keep.push(entry)
      }
      this.retries = keep
    }
    return expired
  }

  /** Removes and returns everything waiting (for re-routing after resharding, or at close). */
  drain(): Array<Entry> {
    const all = this.retries.concat(this.queue.slice(this.head, this.end) as Array<Entry>)
    this.queue = []
    this.head = 0
    this.end = 0
    this.freshBytes = 0
    this.retries = []
    return all
  }

  /** Removes and returns the ready keys (for re-routing after resharding). */
  drainReady(): Array<KeyState> {
    const ready = this.ready
    this.ready = []
    return ready
  }

  refill(now: number): void {
    if (this.limits.enabled) {
      this.recordLimit.update(now)
      this.byteLimit.update(now)
      this.needBytes = 1
    }
    const elapsed = now - this.refilledAt
    if (elapsed <= 0) return
    this.refilledAt = now
    if (this.factor < 1) this.factor = Math.min(1, this.factor + elapsed * RECOVERY_PER_MS)
    const limits = this.limits
    const bytesRate = limits.bytesPerMs * this.factor
    const recordsRate = limits.recordsPerMs * this.factor
    this.bytesTokens = Math.min(bytesRate * limits.burstMs, this.bytesTokens + elapsed * bytesRate)
    this.recordTokens = Math.min(recordsRate * limits.burstMs, this.recordTokens + elapsed * recordsRate)
  }

  /**
   * Whether the limits allow sending now: the buckets hold tokens, and the hard limits have room
   * for another Kinesis record and the bytes the next one needs. A send may overdraw the
   * buckets; the debt delays the next.
   */
  canSend(): boolean {
    return !this.limits.enabled || (
      this.bytesTokens > 0 && this.recordTokens > 0 && this.recordLimit.room >= 1 && this.needBytes <= this.byteRoom()
    )
  }

  /** Whether a Kinesis record of `bytes` fits in the byte limit now; when not, the shard waits until it does. */
  fits(bytes: number): boolean {
    if (bytes <= this.byteRoom()) return true
    this.needBytes = bytes
    return false
  }

  /**
   * The largest Kinesis record the byte limit takes now. A whole second's room takes any: a
   * record larger than a second's bytes goes when the shard has that, and its debt delays the next.
   */
  byteRoom(): number {
    const room = this.byteLimit.room
    return !this.limits.enabled || room >= this.byteLimit.perSecond ? Number.POSITIVE_INFINITY : room
  }

  /** Counts a Kinesis record of `bytes` sent at `now`. */
  consume(bytes: number, now: number): void {
    this.bytesTokens -= bytes
    this.recordTokens -= 1
    this.countSent(bytes, now)
  }

  /**
   * Counts a Kinesis record of `bytes` against the one-second limits only, not the buckets: as
   * `consume` does, and for the halves of a request Kinesis refused as a whole (see
   * `Engine.isolate`) and a request held back for so long that its counts aged out.
   */
  countSent(bytes: number, now: number): void {
    if (!this.limits.enabled) return
    this.recordLimit.count(1, now)
    this.byteLimit.count(bytes, now)
  }

  /** Takes back a Kinesis record of `bytes` counted at `at`: Kinesis refused its request whole. */
  refund(bytes: number, at: number, now: number): void {
    if (!this.limits.enabled) return
    this.recordLimit.refund(1, at, now)
    this.byteLimit.refund(bytes, at, now)
  }

  /** The byte limit of one second (infinite with the limiter off). */
  get bytesPerSecond(): number {
    return this.limits.enabled ? this.limits.bytesPerSecond : Number.POSITIVE_INFINITY
  }

  /** What was counted at `since` or later goes only `now` (a request held back meanwhile). */
  restamp(since: number, now: number): void {
    this.recordLimit.restamp(since, now)
    this.byteLimit.restamp(since, now)
  }

  /** When the limits will allow sending again (see `canSend`). */
  readyAt(now: number): number {
    this.recordLimit.update(now)
    this.byteLimit.update(now)
    if (this.canSend()) return now
    const limits = this.limits
    const byBytes = this.bytesTokens > 0 ? 0 : (-this.bytesTokens + 1) / (limits.bytesPerMs * this.factor)
    const byRecords = this.recordTokens > 0 ? 0 : (-this.recordTokens + 0.01) / (limits.recordsPerMs * this.factor)
    return Math.max(
      now + Math.max(byBytes, byRecords, 1),
      this.recordLimit.readyAt(1, now),
      this.byteLimit.readyAt(this.needBytes, now)
    )
  }

  /**
   * When `records` Kinesis records of `bytes` in all fit in the one-second limits (`now` if they
   * do); more than a second's worth needs a whole second, as in `byteRoom`. Not the buckets.
   */
  roomFor(records: number, bytes: number, now: number): number {
    if (!this.limits.enabled) return now
    this.recordLimit.update(now)
    this.byteLimit.update(now)
    return Math.max(this.recordLimit.readyAt(records, now), this.byteLimit.readyAt(bytes, now))
  }

  /** Kinesis throttled a record of this shard: cut the rate and pause until the buckets refill. */
  throttled(now: number): void {
    if (!this.limits.enabled) return
    this.refill(now)
    if (now - this.lastCutAt < CUT_COOLDOWN_MS) return
    this.lastCutAt = now
    this.factor = Math.max(MIN_FACTOR, this.factor * DECREASE)
    if (this.bytesTokens > 0) this.bytesTokens = 0
    if (this.recordTokens > 0) this.recordTokens = 0
  }
}
