import type { Aggregation, Client, ShardMap } from "@effect-kinesis/core"
import type { Effect, Tracer } from "effect"
import * as ProducerError from "../ProducerError.ts"
import type * as ProducerSettings from "../ProducerSettings.ts"
import type { ShardTrafficLog } from "./autoSplit.ts"
import { Entry, Extras } from "./entry.ts"
import { KeyOrder, type KeyState } from "./keyOrder.ts"
import type { KplMetrics } from "./kplMetrics.ts"
import type { Recorder } from "./recorder.ts"
import { SECOND_MS } from "./secondLimit.ts"
import { type RateLimits, ShardState } from "./shardState.ts"

export type PutRecordsRequestEntry = Parameters<Client.Client["Service"]["putRecords"]>[1][number]
export type PutRecordsOutput = Effect.Success<ReturnType<Client.Client["Service"]["putRecords"]>>

/** The user records one aggregated Kinesis record of a request carries. */

export class Aggregate {
  readonly shard: ShardState
  readonly entries: Array<Entry>
  readonly size: number
  /**
   * With per-key order, the keys it claimed, each once (see `KeyOrder.take`): released by key
   * when it is answered, rather than record by record. Undefined without per-key order and for the
   * parts `isolate` builds (released record by record).
   */
  readonly claimed: Array<KeyState> | undefined
  constructor(shard: ShardState, entries: Array<Entry>, size: number, claimed?: Array<KeyState>) {
    this.shard = shard
    this.entries = entries
    this.size = size
    this.claimed = claimed
  }
}

/** What one Kinesis record of a request carries: a plain record is its own part (no wrapper). */
export type Part = Entry | Aggregate

export class Batch {
  readonly request: Array<PutRecordsRequestEntry>
  readonly parts: Array<Part>
  /** Records in `request` (and parts in `parts`); the arrays are longer until `seal`. */
  count = 0
  bytes = 0
  /** User records in the request (more than `count` when aggregates are among them). */
  userRecords = 0
  /** No further record fits (record count or bytes). */
  full = false
  /** When `step` first held it back (see `Engine.held`). */
  heldSince = 0
  sentAt = 0
  /** Set when close gave up on the request: its records already failed, its answer is ignored. */
  abandoned = false
  /** The request's span, while it is traced. */
  span: Tracer.Span | undefined = undefined
  // What the answer said, for the request's span and log line (see `Engine.onResponse`).
  /** Kinesis records refused one by one. */
  failedRecords = 0
  /** Of those, refused as throttled. */
  throttledRecords = 0
  /** User records sent again (or to be). */
  retriedRecords = 0
  /** The error of a request that failed as a whole. */
  requestError: RequestFailure | undefined = undefined
  /** Per-record error codes and their counts, when some record failed. */
  errorCodes: Map<string, number> | undefined = undefined

  /**
   * `capacity`: the records it will most likely hold. Arrays of that length from the start, as
   * growing them record by record copies them several times over.
   */
  constructor(capacity: number) {
    this.request = new Array(capacity)
    this.parts = new Array(capacity)
  }

  add(request: PutRecordsRequestEntry, part: Part, userRecords: number): void {
    const i = this.count++
    this.userRecords += userRecords
    if (i < this.request.length) {
      this.request[i] = request
      this.parts[i] = part
    } else {
      this.request.push(request)
      this.parts.push(part)
    }
    this.bytes += part.size
  }

  /** Trims the arrays to what was added, before the request is sent. */
  seal(): void {
    this.request.length = this.count
    this.parts.length = this.count
  }
}

/** Parts `from` to `to` of a sent request, as a request of their own. */
const subBatch = (batch: Batch, from: number, to: number): Batch => {
  const sub = new Batch(to - from)
  for (let i = from; i < to; i++) {
    const part = batch.parts[i]!
    sub.add(batch.request[i]!, part, part instanceof Entry ? 1 : part.entries.length)
  }
  sub.full = true
  return sub
}

/** A failed PutRecords call, reduced to what retry decisions need. */
export interface RequestFailure {
  readonly code: string
  readonly message: string
  readonly retryable: boolean
  readonly cause: unknown
  /** The AWS error code (`InvalidArgumentException`…), for metrics and logs; `code` when absent. */
  readonly errorCode?: string | undefined
}

/**
 * What the engine reports besides settling records: records that failed for good (for the log),
 * and the end of a sampled record's span. Both are rare, so they may allocate.
 */
export interface Observer {
  readonly gaveUp: (entry: Entry, error: ProducerError.ProducerError) => void
  readonly spanEnded: (
    entry: Entry,
    span: Tracer.Span,
    error: ProducerError.ProducerError | undefined,
    shardId: string,
    sequenceNumber: string,
    subSequenceNumber: number,
    request: Tracer.Span | undefined
  ) => void
  readonly retried: (entry: Entry, span: Tracer.Span, failure: RequestFailure) => void
}

const THROTTLED = "ProvisionedThroughputExceededException"
/**
 * `RequestFailure.code` of a request Kinesis found invalid as a whole: the same request fails
 * again, but one of its records is most likely the cause (see `Engine.isolate`).
 */
const INVALID_REQUEST = "InvalidArgument"
/**
 * Longest a partial request is held back while shards wait for their buckets (see
 * `Engine.held`): short against the TTL, and against the wait the bucket already imposes.
 */
const HOLD_MAX_MS = 20
// Per-record codes worth another attempt; anything else (KMS access, disabled keys…) is final.
const RETRYABLE_RECORD_CODES = new Set([
  THROTTLED,
  "InternalFailure",
  "InternalFailureException",
  "ServiceUnavailable",
  "ServiceUnavailableException",
  "KMSThrottlingException"
])

/**
 * Builds the aggregate `aggregator` holds (of `entries`), empties the aggregator and adds the
 * aggregate to `batch` as one Kinesis record; returns its size, exactly what Kinesis counts.
 */
const addAggregate = (
  batch: Batch,
  shard: ShardState,
  aggregator: Aggregation.Aggregator,
  entries: Array<Entry>,
  claimed?: Array<KeyState>
): number => {
  const size = aggregator.size
  const record = aggregator.build()!
  aggregator.reset()
  batch.add(
    record.explicitHashKey === undefined
      ? { PartitionKey: record.partitionKey, Data: record.data }
      : { PartitionKey: record.partitionKey, Data: record.data, ExplicitHashKey: record.explicitHashKey },
    new Aggregate(shard, entries, size, claimed),
    entries.length
  )
  return size
}

/**
 * The producer's state machine, plain and synchronous: intake, per-shard queues and token
 * buckets, batch building, response handling, retries. Effects only drive it (a dispatcher fiber
 * calling `step`, one fiber per request calling `onResponse`), so the per-record path costs no
 * fiber, no Deferred and no effect allocation.
 */
export class Engine {
  readonly settings: ProducerSettings.Resolved
  readonly recorder: Recorder
  /** The KPL-named metrics, when a collector is in the context and the level is not `none`. */
  readonly kpl: KplMetrics | undefined
  /** User records accepted since `takeReceived` (the KPL's `UserRecordsReceived`). */
  private received = 0
  /** User records `retryOrFail` sent back to their queues, during one `onResponse`. */
  private retriedNow = 0
  observer: Observer | undefined = undefined
  /** The span of the request whose answer is being handled, for the record spans it settles. */
  private answering: Tracer.Span | undefined = undefined
  private readonly limits: RateLimits
  /** Whole milliseconds a record may wait: its deadline is `enqueuedAt + ttl`. */
  private readonly ttl: number
  /**
   * User records one request carries at most: a quarter of the buffer. An aggregating request
   * could otherwise take the whole buffer, and then nothing is left to build the next one from
   * while it is in flight; with several, intake and sending overlap.
   */
  private readonly maxUserRecords: number
  /** Per-key order (undefined with `ordering: "unordered"`). */
  readonly keys: KeyOrder | undefined
  /** The last Kinesis record built (see `KeyOrder`). */
  private token = 0
  private shardMap: ShardMap.ShardMap
  private shards = new Map<string, ShardState>()
  private shardList: Array<ShardState> = []
  /** Bumped by each shard map, so that routes remembered under the previous one are not used. */
  private shardMapEpoch = 0
  private roundRobin = 0
  /** Accepted and not yet settled (queued, waiting to retry, or in flight). */
  buffered = 0
  /** Their bytes (data plus partition keys). */
  private bufferedBytes = 0
  /** Waiting in shard queues (not in flight). */
  private pending = 0
  private pendingBytes = 0
  inFlight = 0
  readonly inFlightBatches = new Set<Batch>()
  /**
   * A partial request kept back because some shard's records wait for its bucket. Such a shard
   * frees a record or so per millisecond (one its one-second limit holds may free nothing for
   * longer: then the hold only delays the others), and a request per trickle (a PutRecords call
   * costs as much CPU as a few hundred records) would make requests small exactly when the
   * producer is busiest. It fills from later steps and leaves when it is full, when no shard is held back by
   * its bucket any more, after `HOLD_MAX_MS`, or at close. Its records are neither pending nor in
   * flight (`abandon` fails them).
   */
  private held: Batch | undefined = undefined
  /**
   * Parts of requests Kinesis rejected as a whole, to send before anything new (see `isolate`).
   * Their records are neither pending nor in flight (`abandon` fails them).
   */
  private splits: Array<Batch> = []
  /** The shards of a split request waiting for room in their last second (see `step`). */
  private splitWaits: Set<ShardState> | undefined = undefined
  /** Set by `build`: a shard with due records was stopped by its bucket. */
  private bucketBlocked = false
  private waiters: Array<() => void> = []
  private idleWaiters: Array<() => void> = []
  /** Intake stopped: the scope is closing. */
  closed = false
  /** Close asked to send everything now, ignoring the linger time. */
  flushing = false
  /** Wakes the dispatcher; set while it sleeps. */
  wakeup: (() => void) | undefined = undefined
  /** Demand per shard, for auto-split (set when it is on). */
  traffic: ShardTrafficLog | undefined = undefined
  /** Called when Kinesis wrote a record to another shard than predicted. */
  onWrongShard: () => void = () => {}
  /** Sends a batch (forks the request); `onResponse` is called when it settles. */
  launch: (batch: Batch) => void = () => {}

  constructor(
    settings: ProducerSettings.Resolved,
    shardMap: ShardMap.ShardMap,
    recorder: Recorder,
    now: number,
    kpl?: KplMetrics
  ) {
    this.settings = settings
    this.recorder = recorder
    this.kpl = kpl
    this.ttl = Math.floor(settings.recordTtlMillis)
    this.maxUserRecords = Math.max(1, Math.floor(settings.bufferSize / 4))
    this.limits = {
      enabled: settings.rateLimit,
      bytesPerMs: settings.shardBytesPerSecond / 1000,
      recordsPerMs: settings.shardRecordsPerSecond / 1000,
      burstMs: settings.shardBurstMillis,
      bytesPerSecond: settings.shardBytesPerSecond,
      recordsPerSecond: settings.shardRecordsPerSecond
    }
    this.keys = settings.ordering === "unordered" ? undefined : new KeyOrder((entry) => this.route(entry))
    this.shardMap = shardMap
    this.applyShardMap(shardMap, now)
  }

  // ---------------------------------------------------------------------------------------------
  // intake

  /** Accepts the record into the buffer if there is room. The caller checked `closed`. */
  tryAccept(entry: Entry, now: number): boolean {
    if (!this.hasRoomFor(entry.size)) return false
    this.buffered++
    this.bufferedBytes += entry.size
    this.received++
    // Whole milliseconds fit in a small integer: a fractional time would box a heap number per
    // field of every buffered record.
    const ms = Math.floor(now)
    entry.enqueuedAt = ms
    this.route(entry).push(entry)
    this.traffic?.accepted(entry.shard!.info.shardId, entry.size)
    this.pending++
    this.pendingBytes += entry.size
    this.wake()
    return true
  }

  /** User records accepted since the last call. */
  takeReceived(): number {
    const received = this.received
    this.received = 0
    return received
  }

  private hasRoomFor(bytes: number): boolean {
    const settings = this.settings
    return this.buffered < settings.bufferSize && this.bufferedBytes + bytes <= settings.bufferBytes
  }

  /** Calls `waiter` when a buffer slot frees up (or the producer closes). */
  addWaiter(waiter: () => void, first = false): void {
    if (first) this.waiters.unshift(waiter)
    else this.waiters.push(waiter)
  }

  removeWaiter(waiter: () => void): void {
    const i = this.waiters.indexOf(waiter)
    if (i >= 0) this.waiters.splice(i, 1)
  }

  /** Calls `waiter` once nothing is buffered any more. */
  onIdle(waiter: () => void): void {
    if (this.buffered === 0) waiter()
    else this.idleWaiters.push(waiter)
  }

  removeIdleWaiter(waiter: () => void): void {
    const i = this.idleWaiters.indexOf(waiter)
    if (i >= 0) this.idleWaiters.splice(i, 1)
  }

  wake(): void {
    const wakeup = this.wakeup
    if (wakeup !== undefined) {
      this.wakeup = undefined
      wakeup()
    }
  }

  private route(entry: Entry): ShardState {
    const route = entry.hashKey
    if (route.epoch === this.shardMapEpoch) {
      const known = route.shard!
      entry.shard = known
      return known
    }
    // `shardList` is in the shard map's order (by starting hash key), so this is the map's own
    // binary search without the lookup by shard id after it.
    const high = route.high
    const shards = this.shardList
    let lo = 0
    let hi = shards.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1
      const shard = shards[mid]!
      // Unequal high bits decide alone; the exact BigInt comparison settles a tie.
      if (shard.startHigh < high || (shard.startHigh === high && shard.info.startingHashKey <= route.key)) lo = mid
      else hi = mid - 1
    }
    const shard = shards[lo]!
    entry.shard = shard
    route.shard = shard
    route.epoch = this.shardMapEpoch
    return shard
  }

  // ---------------------------------------------------------------------------------------------
  // settling

  private settle(
    entry: Entry,
    error: ProducerError.ProducerError | undefined,
    shardId: string,
    sequenceNumber: string,
    subSequenceNumber: number
  ) {
    this.buffered--
    this.bufferedBytes -= entry.size
    if (error !== undefined) {
      this.recorder.failed++
      entry.shard?.kpl?.userRecordFailed(entry.attempts, error._tag === "RecordExpired")
      this.observer?.gaveUp(entry, error)
    }
    const extras = entry.extras
    if (extras !== undefined && extras.span !== undefined) {
      this.observer?.spanEnded(
        entry,
        extras.span,
        error,
        shardId,
        sequenceNumber,
        subSequenceNumber,
        this.answering
      )
    }
    entry.done(entry, error, shardId, sequenceNumber, subSequenceNumber)
  }

  /**
   * Lets waiting offers in once the records of a response (or of a step) have settled: one call
   * per waiter admits a run of records, where one per freed slot would admit them one by one.
   */
  private release(): void {
    while (this.waiters.length > 0 && this.hasRoomFor(1)) {
      const waiter = this.waiters.shift()!
      waiter()
      // It found no room for its next record and queued itself first again: wait for more room.
      if (this.waiters[0] === waiter) break
    }
    if (this.buffered === 0 && this.idleWaiters.length > 0) {
      const idle = this.idleWaiters
      this.idleWaiters = []
      for (const waiter of idle) waiter()
    }
  }

  private fail(entry: Entry, error: ProducerError.ProducerError): void {
    this.settle(entry, error, "", "", 0)
  }

  private expire(entry: Entry): void {
    this.fail(entry, new ProducerError.RecordExpired({ attempts: entry.attempts, lastError: entry.extras?.lastError }))
  }

  private backoff(attempts: number): number {
    const { retryBaseMillis, retryMaxMillis } = this.settings
    const cap = Math.min(retryMaxMillis, retryBaseMillis * 2 ** Math.min(attempts - 1, 30))
    // Full jitter, with a floor so a retry never spins.
    return Math.max(1, Math.random() * cap)
  }

  private retryOrFail(entry: Entry, failure: RequestFailure, now: number): void {
    const retry = entry.extras ??= new Extras()
    retry.lastError = failure.errorCode ?? failure.code
    retry.attemptEndedAt = now
    if (retry.span !== undefined) this.observer?.retried(entry, retry.span, failure)
    if (!failure.retryable || entry.attempts >= this.settings.maxAttempts) {
      this.fail(
        entry,
        new ProducerError.PutFailed({
          code: failure.code,
          detail: failure.message,
          attempts: entry.attempts,
          retryable: failure.retryable,
          cause: failure.cause
        })
      )
      return
    }
    const at = now + this.backoff(entry.attempts)
    if (at >= entry.enqueuedAt + this.ttl) {
      this.expire(entry)
      return
    }
    retry.notBefore = Math.ceil(at)
    if (this.keys !== undefined) this.keys.returnEntry(entry)
    else this.route(entry).retries.push(entry)
    this.pending++
    this.pendingBytes += entry.size
    this.recorder.retried++
    this.retriedNow++
  }

  // ---------------------------------------------------------------------------------------------
  // dispatching

  /**
   * Sends what can be sent now and returns how long the dispatcher may sleep (ms) before
   * something becomes due: a linger deadline, a retry, a refilled bucket or a record's TTL.
   */
  step(now: number): number {
    let sleep = Number.POSITIVE_INFINITY
    if (this.pending === 0 && this.held === undefined && this.splits.length === 0) return sleep
    const settings = this.settings
    this.expireDue(now)
    this.release()
    this.splitWaits = undefined
    while (this.inFlight < settings.maxInFlightRequests && this.splits.length > 0) {
      const split = this.splits[0]!
      if (this.limits.enabled) {
        const at = this.roomAt(split, now)
        if (at > now) {
          // The shards of the splits waiting send nothing new until those go, or they could wait
          // behind them for good.
          const waits = this.splitWaits = new Set<ShardState>()
          for (const waiting of this.splits) for (const part of waiting.parts) waits.add(part.shard!)
          sleep = at - now
          break
        }
        // Its request was refused whole and taken back (see `isolate`): it counts now, as it goes.
        this.countSent(split, now)
      }
      this.splits.shift()
      this.send(split, now)
    }
    // Set when the due records wait out the linger time: then nothing is due before it ends
    // (new records wake the dispatcher anyway), however sendable they are.
    let lingering = false
    while (this.inFlight < settings.maxInFlightRequests && (this.pending > 0 || this.held !== undefined)) {
      if (this.held === undefined && settings.lingerMillis > 0 && !this.flushing && !this.fullBatchWaiting()) {
        const due = this.oldestEnqueuedAt() + settings.lingerMillis
        if (due > now) {
          sleep = Math.min(sleep, due - now)
          lingering = true
          break
        }
      }
      const wasHeld = this.held !== undefined
      const batch = this.build(now)
      if (batch === undefined) break
      if (
        !batch.full && this.bucketBlocked && !this.flushing &&
        (this.held === undefined || now - batch.heldSince < HOLD_MAX_MS)
      ) {
        if (this.held === undefined) batch.heldSince = now
        this.held = batch
        sleep = Math.min(sleep, batch.heldSince + HOLD_MAX_MS - now)
        break
      }
      this.held = undefined
      if (wasHeld && this.limits.enabled) {
        // Its records count against their shards' last second from now, when they go. Held for a
        // second or more (its slots taken by split requests), some counts aged out: all count again.
        if (now - batch.heldSince >= SECOND_MS) this.countSent(batch, now)
        else for (let i = 0; i < batch.count; i++) batch.parts[i]!.shard!.restamp(batch.heldSince, now)
      }
      this.send(batch, now)
    }
    if (!lingering && this.pending > 0 && this.inFlight < settings.maxInFlightRequests) {
      sleep = Math.min(sleep, this.nextDue(now) - now)
    }
    if (this.pending > 0) sleep = Math.min(sleep, this.earliestDeadline() - now)
    return Math.max(0, sleep)
  }

  /** When every shard of `batch` has room for its records in its last second (`now` if they do). */
  private roomAt(batch: Batch, now: number): number {
    const need = new Map<ShardState, { records: number; bytes: number }>()
    for (let i = 0; i < batch.count; i++) {
      const part = batch.parts[i]!
      const sum = need.get(part.shard!)
      if (sum === undefined) need.set(part.shard!, { records: 1, bytes: part.size })
      else {
        sum.records++
        sum.bytes += part.size
      }
    }
    let at = now
    for (const [shard, sum] of need) at = Math.max(at, shard.roomFor(sum.records, sum.bytes, now))
    return at
  }

  /** Counts `batch`'s Kinesis records against their shards' one-second limits (not the buckets). */
  private countSent(batch: Batch, now: number): void {
    for (let i = 0; i < batch.count; i++) batch.parts[i]!.shard!.countSent(batch.parts[i]!.size, now)
  }

  private send(batch: Batch, now: number): void {
    batch.seal()
    this.inFlight++
    this.inFlightBatches.add(batch)
    batch.sentAt = now
    this.launch(batch)
  }

  private fullBatchWaiting(): boolean {
    const s = this.settings
    return this.pendingBytes >= s.maxRequestBytes || this.pending >= this.maxUserRecords ||
      (!s.aggregate && this.pending >= s.maxRecordsPerRequest)
  }

  private oldestEnqueuedAt(): number {
    let at = Number.POSITIVE_INFINITY
    for (const shard of this.shardList) {
      const oldest = shard.oldest()
      if (oldest !== undefined && oldest.enqueuedAt < at) at = oldest.enqueuedAt
      if (shard.retries.length > 0 || shard.ready.length > 0) at = Math.min(at, shard.nextRetryAt())
    }
    return at
  }

  private earliestDeadline(): number {
    let at = Number.POSITIVE_INFINITY
    for (const shard of this.shardList) {
      const oldest = shard.oldest()
      if (oldest !== undefined && oldest.enqueuedAt < at) at = oldest.enqueuedAt
      for (const entry of shard.retries) if (entry.enqueuedAt < at) at = entry.enqueuedAt
    }
    if (this.keys !== undefined) at = Math.min(at, this.keys.oldestWaiting)
    return at + this.ttl
  }

  /** When the next record becomes sendable (bucket refilled, retry due). */
  private nextDue(now: number): number {
    let at = Number.POSITIVE_INFINITY
    for (const shard of this.shardList) {
      if (shard.queued === 0 || this.waitsForAnswer(shard) || this.splitWaits?.has(shard) === true) continue
      const sendable = shard.oldest() !== undefined ? now : shard.nextRetryAt()
      at = Math.min(at, Math.max(sendable, this.limits.enabled ? shard.readyAt(now) : now))
    }
    return at
  }

  private expireDue(now: number): void {
    for (const shard of this.shardList) {
      if (shard.queued === 0) continue
      const expired = shard.takeExpired(now - this.ttl)
      if (expired === undefined) continue
      const kpl = shard.kpl
      for (const entry of expired) {
        this.pending--
        this.pendingBytes -= entry.size
        // It never left: the KPL counts its whole wait as buffering time.
        kpl?.bufferingTime.add(now - entry.waitingSince)
        this.expire(entry)
      }
    }
    const waiting = this.keys?.expire(now - this.ttl)
    if (waiting !== undefined) {
      for (const entry of waiting) {
        this.pending--
        this.pendingBytes -= entry.size
        entry.shard?.kpl?.bufferingTime.add(now - entry.waitingSince)
        this.expire(entry)
      }
    }
  }

  /**
   * One PutRecords request from the due records, shards taken round-robin, adding to the held
   * request if there is one; undefined if none.
   */
  private build(now: number): Batch | undefined {
    const settings = this.settings
    const maxRecords = settings.maxRecordsPerRequest
    const maxBytes = settings.maxRequestBytes
    const shards = this.shardList
    const n = shards.length
    const batch = this.held ?? new Batch(Math.min(maxRecords, this.pending))
    let full = false
    this.bucketBlocked = false
    for (let k = 0; k < n && !full; k++) {
      const shard = shards[(this.roundRobin + k) % n]!
      if (shard.queued === 0 || this.waitsForAnswer(shard) || this.splitWaits?.has(shard) === true) continue
      shard.refill(now)
      if (!shard.canSend()) {
        if (shard.peek(now) !== undefined) this.bucketBlocked = true
        continue
      }
      while (shard.canSend()) {
        if (batch.count >= maxRecords || batch.userRecords >= this.maxUserRecords) {
          full = true
          break
        }
        const keys = this.keys
        const token = this.token + 1
        const first = shard.peek(now, token)
        if (first === undefined) break
        const aggregator = shard.aggregator
        if (aggregator !== undefined && first.size <= aggregator.maxBytes) {
          if (!this.addAggregate(batch, shard, aggregator, first, now)) {
            full = true
            break
          }
          continue
        }
        if (keys !== undefined && keys.park(shard, first, token)) continue
        if (!shard.fits(first.size)) break
        // A record larger than a request's byte budget (a stream may accept 10 MiB) goes alone.
        if (batch.bytes + first.size > maxBytes && batch.count > 0) {
          full = true
          break
        }
        if (keys === undefined) shard.take(first)
        else keys.take(shard, first, this.token = token)
        first.attempts++
        this.pending--
        this.pendingBytes -= first.size
        shard.kpl?.bufferingTime.add(now - first.waitingSince)
        // The entry is its own request entry (see `Entry.PartitionKey`): nothing to allocate.
        batch.add(first, first, 1)
        shard.consume(first.size, now)
      }
      if (!full && !shard.canSend() && shard.peek(now) !== undefined) this.bucketBlocked = true
    }
    this.roundRobin = n === 0 ? 0 : (this.roundRobin + 1) % n
    if (full || batch.count >= maxRecords || batch.bytes >= maxBytes || batch.userRecords >= this.maxUserRecords) {
      batch.full = true
    }
    return batch.count === 0 ? undefined : batch
  }

  /**
   * Whether `shard`'s next aggregate waits for the answer to the one it has out (with per-key
   * order), as TCP's Nagle algorithm holds a small segment while one is unacknowledged. Most
   * records of a busy shard belong to keys the aggregate out claimed: built now, the next
   * aggregate would park them one by one (see `KeyOrder.park`), to be taken again once the answer
   * comes. Waiting instead (the answer wakes the dispatcher), they all go in one aggregate then.
   * A record waits at most one round trip this way. A whole aggregate's worth of queued records
   * goes at once, so a busy shard is not held to one aggregate per round trip (the bench's
   * one-shard run through the limit-enforcing proxy reaches 100 % of 1 MiB/s), and everything
   * goes at close.
   */
  private waitsForAnswer(shard: ShardState): boolean {
    return shard.out > 0 && !this.flushing && shard.freshBytes < this.settings.maxAggregateBytes
  }

  /**
   * Adds one aggregated record of `shard`'s due records, starting with `first`, to `batch`;
   * false if not even `first` fits in the request. (A method of its own, so that `build` stays
   * compact for plain records in a process that also aggregates.)
   */
  private addAggregate(
    batch: Batch,
    shard: ShardState,
    aggregator: Aggregation.Aggregator,
    first: Entry,
    now: number
  ): boolean {
    const maxBytes = this.settings.maxRequestBytes
    // The aggregator is empty here: every aggregate is reset right after `build`.
    const entries: Array<Entry> = []
    let entry: Entry | undefined = first
    // The aggregate fits in the request and in the shard's last second (see `ShardState.fits`).
    const requestRoom = maxBytes - batch.bytes
    // No aggregate is larger than a second's bytes, unless one record alone is (see `fits`).
    const shardCap = shard.byteRoom()
    const shardRoom = Math.min(shardCap, shard.bytesPerSecond)
    // While a whole aggregate fits in both, `add` alone decides (one size computation).
    const roomy = aggregator.maxBytes <= requestRoom && aggregator.maxBytes <= shardRoom
    let shardFull = 0
    const room = this.maxUserRecords - batch.userRecords
    const keys = this.keys
    const claimed: Array<KeyState> | undefined = keys === undefined ? undefined : []
    const kpl = shard.kpl
    const token = ++this.token
    while (entry !== undefined && entries.length < room) {
      if (keys !== undefined && keys.park(shard, entry, token)) {
        entry = shard.peek(now, token)
        continue
      }
      if (roomy) {
        if (!aggregator.add(entry)) break
      } else {
        const size = aggregator.sizeWith(entry)
        if (size > aggregator.maxBytes || size > requestRoom) break
        if (size > shardRoom && (entries.length > 0 || size > shardCap)) {
          shardFull = size
          break
        }
        aggregator.add(entry)
      }
      if (keys === undefined) shard.take(entry)
      else keys.take(shard, entry, token, claimed)
      entries.push(entry)
      // Taken, so it goes in this aggregate (built below whenever it holds a record).
      entry.attempts++
      this.pendingBytes -= entry.size
      kpl?.bufferingTime.add(now - entry.waitingSince)
      entry = shard.peek(now, token)
    }
    if (entries.length === 0) {
      // Not even `first` fits in the shard's last second: the shard waits until it does.
      if (shardFull > 0) return !shard.fits(shardFull)
      // Everything due was parked: nothing more to send from this shard, yet the request has room.
      return entry === undefined
    }
    const size = addAggregate(batch, shard, aggregator, entries, claimed)
    if (claimed !== undefined) shard.out++
    this.pending -= entries.length
    shard.consume(size, now)
    return true
  }

  // ---------------------------------------------------------------------------------------------
  // responses

  onResponse(batch: Batch, output: PutRecordsOutput | undefined, failure: RequestFailure | undefined, now: number) {
    if (batch.abandoned) return
    this.inFlightBatches.delete(batch)
    this.inFlight--
    this.answering = batch.span
    this.retriedNow = 0
    const recorder = this.recorder
    const parts = batch.parts
    recorder.requests++
    recorder.kinesisRecordsSent += parts.length
    const kpl = this.kpl
    kpl?.request(now - batch.sentAt, parts.length, batch.userRecords)
    if (failure !== undefined || output === undefined) {
      recorder.requestsFailed++
      const f = failure ?? { code: "EmptyResponse", message: "no response", retryable: true, cause: undefined }
      batch.requestError = f
      if (kpl !== undefined) {
        kpl.requestFailed(f.errorCode ?? f.code)
        for (const part of parts) {
          part.shard!.kpl!.userRecordsPerKinesisRecord.add(part instanceof Entry ? 1 : part.entries.length)
        }
      }
      if (f.code === INVALID_REQUEST) {
        // Nothing of it was written: its shards' one-second counts are taken back.
        for (const part of parts) part.shard!.refund(part.size, batch.sentAt, now)
        this.isolate(batch, f)
      } else {
        for (const part of parts) {
          this.retryPart(part, f, now)
          this.releasePart(part)
        }
      }
    } else {
      const records = output.Records ?? []
      let wrongShard = false
      for (let i = 0; i < parts.length; i++) {
        const part = parts[i]!
        const shard = part.shard!
        const record = records[i]
        const code = record === undefined ? "MissingResult" : record.ErrorCode
        if (code !== undefined) {
          const f: RequestFailure = {
            code,
            message: record?.ErrorMessage ?? code,
            retryable: record === undefined || RETRYABLE_RECORD_CODES.has(code),
            cause: undefined
          }
          batch.failedRecords++
          const codes = batch.errorCodes ??= new Map()
          codes.set(code, (codes.get(code) ?? 0) + 1)
          if (code === THROTTLED) {
            batch.throttledRecords++
            recorder.throttledRecord(shard.info.shardId)
            shard.throttled(now)
          }
          shard.kpl?.kinesisRecordFailed(part instanceof Entry ? 1 : part.entries.length, code)
          this.retryPart(part, f, now)
          this.releasePart(part)
          continue
        }
        const shardId = record!.ShardId ?? shard.info.shardId
        const sequenceNumber = record!.SequenceNumber ?? ""
        // The KPL charges the Kinesis record to the shard it predicted, its user records to the
        // shard that stored them.
        let acc = shard.kpl
        if (shardId !== shard.info.shardId) {
          wrongShard = true
          if (kpl !== undefined) acc = kpl.shard(shardId)
          if (part instanceof Aggregate && part.entries.length > 1) {
            // Written, as far as Kinesis is concerned.
            shard.kpl?.kinesisRecordPut(part.entries.length, part.size)
            // The shard split or merged under us: an aggregate landed where the KCL would drop its
            // user records (their hash keys lie outside the shard), so they are sent again.
            const f: RequestFailure = {
              code: "WrongShard",
              message: `aggregate predicted for ${shard.info.shardId} landed on ${shardId}`,
              retryable: true,
              cause: undefined
            }
            this.retryPart(part, f, now)
            this.releasePart(part)
            continue
          }
        }
        // One path for plain records and aggregates (one call site each for the per-record work
        // below), so that a process using both modes keeps it compact for the optimizer.
        const entries = part instanceof Entry ? undefined : part.entries
        const count = entries === undefined ? 1 : entries.length
        recorder.kinesisPut(shard, shardId, count, part.size)
        shard.kpl?.kinesisRecordPut(count, part.size)
        for (let j = 0; j < count; j++) {
          const entry = entries === undefined ? part as Entry : entries[j]!
          recorder.userPut(entry, now)
          acc?.userRecordPut(entry.dataBytes, entry.attempts)
          this.settle(entry, undefined, shardId, sequenceNumber, count > 1 ? j : 0)
        }
        this.releasePart(part)
      }
      recorder.endResponse()
      if (wrongShard) this.onWrongShard()
    }
    batch.retriedRecords = this.retriedNow
    this.answering = undefined
    this.release()
    this.wake()
  }

  /**
   * A request Kinesis rejected as a whole, as invalid. The producer checks every record against
   * what Kinesis validates before buffering it, so this is a rule it did not predict, most likely
   * about one record: the request is split in halves (an aggregate into two smaller ones) and
   * both are sent again, recursively, until the culprit is alone and fails with `RecordRejected`,
   * and its neighbours land. A record in n requests costs at most 2n − 1 requests this way. The
   * split requests are not retries: they count no attempt, and take no more of the shard's
   * buckets (nothing of the rejected request was written). The rejected request's one-second
   * counts are taken back (`onResponse`) and the halves count as they go (`step`). They wait for
   * room in their shards' last second like any request (they find it at once unless the answer
   * took longer than a second), and those shards send nothing new meanwhile.
   */
  private isolate(batch: Batch, failure: RequestFailure): void {
    const parts = batch.parts
    if (batch.userRecords <= 1) {
      const error = new ProducerError.RecordRejected({
        code: failure.code,
        detail: failure.message,
        cause: failure.cause
      })
      for (const part of parts) {
        if (part instanceof Entry) this.fail(part, error)
        else for (const entry of part.entries) this.fail(entry, error)
        this.releasePart(part)
      }
      return
    }
    // With per-key order, the parts of a request hold distinct keys, so its halves may go at once.
    if (parts.length > 1) {
      const half = parts.length >>> 1
      this.splits.push(subBatch(batch, 0, half), subBatch(batch, half, parts.length))
    } else {
      const aggregate = parts[0] as Aggregate
      const entries = aggregate.entries
      const half = entries.length >>> 1
      if (this.keys !== undefined) {
        // Its parts are released record by record (they claim no keys): it is no longer out.
        if (aggregate.claimed !== undefined) aggregate.shard.out--
        this.isolateOrdered(aggregate, half)
        return
      }
      this.splits.push(
        this.aggregateBatch(aggregate.shard, entries.slice(0, half)),
        this.aggregateBatch(aggregate.shard, entries.slice(half))
      )
    }
  }

  /**
   * `isolate` of an aggregate, keeping per-key order: its first half goes again; of the rest, the
   * records of keys in the first half go back in front of their keys' waiting records (they must
   * not be out beside it), the others go as a second aggregate.
   */
  private isolateOrdered(aggregate: Aggregate, half: number): void {
    const keys = this.keys!
    const entries = aggregate.entries
    const first = entries.slice(0, half)
    const inFirst = new Set<string>()
    for (const entry of first) inFirst.add(entry.partitionKey)
    const second: Array<Entry> = []
    const back = new Map<string, Array<Entry>>()
    for (let i = half; i < entries.length; i++) {
      const entry = entries[i]!
      if (!inFirst.has(entry.partitionKey)) second.push(entry)
      else {
        const list = back.get(entry.partitionKey)
        if (list === undefined) back.set(entry.partitionKey, [entry])
        else list.push(entry)
        // Not sent after all: the attempt counted when the aggregate was built is undone.
        entry.attempts--
        this.pending++
        this.pendingBytes += entry.size
      }
    }
    for (const list of back.values()) keys.putBack(list)
    this.splits.push(this.aggregateBatch(aggregate.shard, first))
    if (second.length > 0) this.splits.push(this.aggregateBatch(aggregate.shard, second))
  }

  /** The Kinesis record `part` was answered: its keys may send their next records. */
  private releasePart(part: Part): void {
    const keys = this.keys
    if (keys === undefined) return
    if (part instanceof Entry) keys.release(part)
    else if (part.claimed !== undefined) {
      part.shard.out--
      for (const state of part.claimed) keys.releaseKey(state)
    } else for (const entry of part.entries) keys.release(entry)
  }

  /** A request of one aggregate of `entries`, part of an aggregate that fitted, so they fit. */
  private aggregateBatch(shard: ShardState, entries: Array<Entry>): Batch {
    // The aggregator is empty between `build`s, and this runs synchronously between them.
    const aggregator = shard.aggregator!
    for (const entry of entries) aggregator.add(entry)
    const batch = new Batch(1)
    addAggregate(batch, shard, aggregator, entries)
    batch.full = true
    return batch
  }

  private retryPart(part: Part, failure: RequestFailure, now: number): void {
    if (part instanceof Entry) this.retryOrFail(part, failure, now)
    else for (const entry of part.entries) this.retryOrFail(entry, failure, now)
  }

  // ---------------------------------------------------------------------------------------------
  // shard map

  applyShardMap(shardMap: ShardMap.ShardMap, now: number): void {
    this.shardMap = shardMap
    const next = new Map<string, ShardState>()
    const aggregateBytes = this.settings.aggregate ? this.settings.maxAggregateBytes : undefined
    for (const info of shardMap.shards) {
      const existing = this.shards.get(info.shardId)
      if (existing !== undefined) {
        existing.info = info
        next.set(info.shardId, existing)
      } else {
        const state = new ShardState(info, this.limits, aggregateBytes, now)
        state.kpl = this.kpl?.shard(info.shardId)
        next.set(info.shardId, state)
      }
    }
    this.kpl?.retainShards(new Set(next.keys()))
    const orphans: Array<Entry> = []
    const readyKeys = []
    for (const [id, state] of this.shards) {
      if (!next.has(id)) {
        orphans.push(...state.drain())
        readyKeys.push(...state.drainReady())
      }
    }
    this.shards = next
    this.shardMapEpoch++
    // In the map's order (by starting hash key): `route` searches it.
    this.shardList = Array.from(next.values())
    this.roundRobin = 0
    this.keys?.replace(readyKeys)
    for (const entry of orphans) {
      // With per-key order they wait behind their keys' records: the new shard's fresh queue may
      // hold later records of their keys.
      if (this.keys !== undefined) {
        this.keys.adopt(entry)
        continue
      }
      const shard = this.route(entry)
      if (entry.attempts > 0) shard.retries.push(entry)
      else shard.push(entry)
    }
    if (orphans.length > 0) this.wake()
  }

  get currentShardMap(): ShardMap.ShardMap {
    return this.shardMap
  }

  // ---------------------------------------------------------------------------------------------
  // closing

  /** Stops intake: waiting offers resume and find the producer closed; everything is flushed. */
  close(): void {
    this.closed = true
    this.flushing = true
    const waiters = this.waiters
    this.waiters = []
    for (const waiter of waiters) waiter()
    this.wake()
  }

  /** The close deadline passed: fail everything still unwritten. */
  abandon(): void {
    const held = this.held
    this.held = undefined
    if (held !== undefined) {
      held.seal()
      for (const part of held.parts) {
        const entries = part instanceof Entry ? [part] : part.entries
        for (const entry of entries) this.fail(entry, new ProducerError.ProducerClosed({ written: false }))
      }
    }
    const splits = this.splits
    this.splits = []
    for (const batch of splits) {
      for (const part of batch.parts) {
        const entries = part instanceof Entry ? [part] : part.entries
        for (const entry of entries) this.fail(entry, new ProducerError.ProducerClosed({ written: false }))
      }
    }
    for (const shard of this.shardList) {
      for (const entry of shard.drain()) {
        this.pending--
        this.pendingBytes -= entry.size
        this.fail(entry, new ProducerError.ProducerClosed({ written: false }))
      }
    }
    for (const entry of this.keys?.drain() ?? []) {
      this.pending--
      this.pendingBytes -= entry.size
      this.fail(entry, new ProducerError.ProducerClosed({ written: false }))
    }
    for (const batch of this.inFlightBatches) {
      batch.abandoned = true
      this.inFlight--
      for (const part of batch.parts) {
        const entries = part instanceof Entry ? [part] : part.entries
        for (const entry of entries) this.fail(entry, new ProducerError.ProducerClosed({ written: "unknown" }))
      }
    }
    this.inFlightBatches.clear()
    this.release()
  }
}
