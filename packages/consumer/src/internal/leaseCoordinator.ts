/**
 * One worker's side of lease coordination: finding shards and creating their leases, taking
 * leases toward a fair share, renewing, self-fencing, checkpointing through the lease, and
 * releasing. Leases this worker acquires are handed out through `acquired`.
 *
 * @internal
 */
import type { ChildShard, Shard } from "@aws-sdk/client-kinesis"
import { type Client, ExtendedSequenceNumber, type KinesisError } from "@effect-kinesis/core"
import { type Cause, Clock, Deferred, Duration, Effect, Queue, Random, Schedule, Semaphore, Stream } from "effect"
import { ShardLeaseLost } from "../ConsumerError.ts"
import type { ConsumerError } from "../ConsumerError.ts"
import type { DiagnosticEvent } from "../DiagnosticEvent.ts"
import type { Lease } from "../Lease.ts"
import { type LeaseRepository, LeaseStoreError } from "../LeaseRepository.ts"
import type { ShardAssignment } from "../ShardAssignment.ts"
import { type ConsumerMetrics, type ShardMetrics, timed } from "./consumerMetrics.ts"
import * as FinishedLeases from "./finishedLeases.ts"
import * as LeaderAssignment from "./leaderAssignment.ts"
import * as LeaderElection from "./leaderElection.ts"
import { monotonicMillis } from "./monotonicMillis.ts"
import * as RoundCadence from "./roundCadence.ts"
import * as ShardLineage from "./shardLineage.ts"
import * as ThroughputBalance from "./throughputBalance.ts"

/** The longest a hand-off waits for the previous owner's running handlers (then + expiry). */
const MAX_HAND_OFF_GRACE_MILLIS = 60_000
// Writes of one checkpoint, each refused one checked against the stored lease.
const CHECKPOINT_TRIES = 4

/** @internal */
export interface LeaseSettings {
  readonly expiry: Duration.Duration
  readonly renewInterval: Duration.Duration
  readonly takeInterval: Duration.Duration
  readonly scanInterval: Duration.Duration
  readonly shardSyncInterval: Duration.Duration
  readonly cleanupFinished: boolean
  /** `"leader"`: leader-based assignment (docs/design/leader-assignment.md). */
  readonly coordination: "workers" | "leader"
  /** How long a stop lets running handlers finish; the streams get this and a renewal interval. */
  readonly shutdownGracePeriod: Duration.Duration
}

/**
 * A lease this worker holds. Mutable on purpose: every write under `semaphore` uses and replaces
 * `lease`, so the next conditional write carries the counter of the last one.
 *
 * @internal
 */
export interface OwnedLease {
  readonly shardId: string
  lease: Lease
  /** When the last successful write (take, renew, checkpoint) was sent, on this worker's monotonic clock. */
  lastRenewedAt: number
  state: "active" | "lost" | "released" | "ended"
  /** Completed when the shard stream must end: the lease stopped being active, or shutdown. */
  readonly done: Deferred.Deferred<void>
  /** Completed when the lease stops being active (released, lost or ended). */
  readonly settled: Deferred.Deferred<void>
  /** Shard streams running on this lease; at shutdown they write their final checkpoint first. */
  streams: number
  /** Writes what the shard's processing staged; set by the shard stream's checkpointer. */
  flush: Effect.Effect<void>
  readonly semaphore: Semaphore.Semaphore
  /** The shard's metric series, taken once with the lease. */
  readonly metrics: ShardMetrics
  /** Set by `stopShard`: `done` then means a graceful stop of this shard alone, not a shutdown. */
  stopRequested: boolean
  /** Of the latest batch fetched; for the control handle's status. */
  millisBehindLatest: number | undefined
  /** The staged position and the records staged so far; set by the shard stream's checkpointer. */
  progress: () => ShardProgress | undefined
  /** Data bytes handed on since the last renewal; for the lease's `throughputKBps`. */
  fetchedBytes: number
  /** When this worker took it from another (monotonic clock); -Infinity when it was free. */
  readonly movedHereAt: number
}

/** @internal */
export interface ShardProgress {
  readonly processed: ExtendedSequenceNumber.ExtendedSequenceNumber
  readonly records: number
}

/**
 * What a control handle asks of the coordinator: take nothing while paused, never take or steal
 * a stopped shard.
 *
 * @internal
 */
export interface Holds {
  readonly paused: () => boolean
  readonly isStopped: (shardId: string) => boolean
}

/** @internal */
export interface LeaseCoordinator {
  readonly workerId: string
  readonly acquired: Queue.Dequeue<OwnedLease, ConsumerError | Cause.Done>
  readonly checkpoint: (
    owned: OwnedLease,
    position: ExtendedSequenceNumber.ExtendedSequenceNumber,
    childShardIds?: ReadonlyArray<string>
  ) => Effect.Effect<void, ShardLeaseLost | LeaseStoreError>
  /** After `SHARD_END` was checkpointed: creates the children's leases and lets the lease go. */
  readonly shardEnded: (owned: OwnedLease, childShards: ReadonlyArray<ChildShard>) => Effect.Effect<void>
  /** The shard stream ended early (not at shard end, lease still held): release and do not retake. */
  readonly park: (owned: OwnedLease) => Effect.Effect<void>
  /**
   * Stops one held shard as a shutdown does (its stream ends, running handlers get the grace
   * period, the final checkpoint is written) and releases its lease; completes once released.
   */
  readonly stopShard: (shardId: string) => Effect.Effect<void>
  /** Lets a shard whose stream ended early (parked) be taken again. */
  readonly unpark: (shardId: string) => void
  /** The leases held now. */
  readonly held: () => ReadonlyArray<OwnedLease>
}

/** @internal */
export interface CoordinatorOptions {
  readonly workerId: string
  readonly stream: Client.StreamId
  readonly client: Client.Client["Service"]
  readonly repository: LeaseRepository["Service"]
  readonly initialPosition: ExtendedSequenceNumber.ExtendedSequenceNumber
  /** The time of an `AT_TIMESTAMP` initial position. */
  readonly timestamp: Date | undefined
  readonly settings: LeaseSettings
  readonly assignment: ShardAssignment
  readonly emit: (event: DiagnosticEvent) => Effect.Effect<void>
  readonly metrics: ConsumerMetrics
  /** A control handle's holds. Default: none. */
  readonly holds?: Holds | undefined
}

const noHolds: Holds = { paused: () => false, isStopped: () => false }

/**
 * Leases one worker creates at once: one at a time, a fleet on a stream of 1,000 shards would wait
 * for 1,000 round trips in a row before every shard had a lease.
 */
const CREATE_CONCURRENCY = 8

/**
 * A log line with structured fields (annotations), so that a log shipper can filter on them.
 *
 * @internal
 */
export const logWith = (
  log: (message: string) => Effect.Effect<void>,
  message: string,
  fields: Record<string, unknown>
): Effect.Effect<void> => Effect.annotateLogs(log(message), fields)

const storeRetry = Schedule.exponential("50 millis").pipe(Schedule.jittered)

// Lease timing (expiry, self-fencing, renewal budgets) is measured on a monotonic clock: a wall
// clock stepped forward (NTP, a VM resumed) would otherwise make leases its peers keep renewing
// look expired, and one stepped back would keep this worker processing past its expiry.

// The KCL's rule (`veryOldLeaseDurationNanosMultiplier`, default 3): a lease whose counter has not
// moved for this many expiries is taken regardless of the fair share.
const veryOldMultiplier = 3

// The worker processing the shard now: the checkpoint owner during a hand-off (KCL 3.x's `actualOwner`).
const actualOwner = (lease: Lease): string | undefined => lease.checkpointOwner ?? lease.leaseOwner

/** @internal */
export const make = Effect.fnUntraced(function*(options: CoordinatorOptions) {
  const { assignment, client, emit, initialPosition, metrics, repository, settings, stream, workerId } = options
  const holds = options.holds ?? noHolds
  const expiryMillis = Duration.toMillis(settings.expiry)
  const owned = new Map<string, OwnedLease>()
  // The counter of every lease and since when (on our clock) it has not moved: expiry needs no
  // cross-host clock comparison.
  const seen = new Map<string, { counter: number; since: number }>()
  const parked = new Set<string>()
  // Graceful hand-offs (KCL 3.x's `checkpointOwner`). Outgoing: leases this worker holds and is
  // handing over (its stream stops, checkpoints, then the lease is released to its next owner).
  // Incoming: leases naming this worker as next owner while their previous owner finishes, by
  // lease key: since when (our clock) and from whom.
  const handingOver = new Map<string, string>()
  const incoming = new Map<string, { readonly since: number; readonly from: string }>()
  // A previous owner that has not let go by then (dead, or a worker that ignores hand-offs:
  // an older version, a KCL 2.x) is taken over from, as a steal is.
  // An unbounded grace period must not let an owner that renews and never lets go (a KCL 2.x
  // worker ignores hand-offs) keep the lease for ever: a hand-off waits at most a minute for it.
  const handOffMillis = Math.min(Duration.toMillis(settings.shutdownGracePeriod), MAX_HAND_OFF_GRACE_MILLIS) +
    expiryMillis
  let existingShards: ReadonlySet<string> = new Set()
  let otherWorkers: ReadonlySet<string> = new Set()
  let lastFullRound = Number.NEGATIVE_INFINITY
  const scanMillis = Duration.toMillis(settings.scanInterval)
  const takeMillis = Math.max(Duration.toMillis(settings.takeInterval), scanMillis)
  let shuttingDown = false
  // Balancing by throughput: renewals write each lease's measured throughput, and take rounds
  // move leases by it rather than by count.
  const byThroughput = assignment._tag === "Balanced" ? assignment.throughput : undefined
  const meter = byThroughput === undefined ? undefined : ThroughputBalance.meter()
  const minMoveMillis = byThroughput === undefined
    ? undefined
    : Duration.toMillis(Duration.fromInputUnsafe(byThroughput.minMoveInterval))
  const moves = minMoveMillis === undefined ? undefined : ThroughputBalance.moves(minMoveMillis)
  const cadence = RoundCadence.make(scanMillis, takeMillis)
  // Leader-based assignment (docs/design/leader-assignment.md): the lock lasts two expiries and
  // its holder refreshes it every half expiry; it reads the table every two expiries (sooner when
  // work is left); the others read the lock every two expiries and their own lease keys every
  // expiry. A worker holding nothing takes toward its share as in the every-worker mode, so that
  // one joining is seen by the leader (as the owner of a lease) without a heartbeat item.
  const leaderLocks = repository.leaderLock
  const listOwnedKeys = repository.listOwnedKeys
  const leaderMillis = 2 * expiryMillis
  const leaderCadence = RoundCadence.make(leaderMillis, leaderMillis)
  const election = settings.coordination === "leader" && leaderLocks !== undefined && listOwnedKeys !== undefined
    ? LeaderElection.make({
      workerId,
      locks: leaderLocks,
      durationMillis: leaderMillis,
      refreshMillis: expiryMillis / 2,
      readMillis: leaderMillis,
      onElected: Effect.sync(() => {
        leaderCadence.wake()
        newLeader = true
      })
    })
    : undefined
  const leading = Effect.map(monotonicMillis, (now) => election?.isLeader(now) ?? false)
  // Just elected: the second scan comes an expiry after the first, when the leases the last
  // leader held (it may have died with them) can be judged expired.
  let newLeader = false
  // Leases the leader took for another worker, at the counter it wrote: that worker finds them
  // within an expiry (its key lookup), so they count as expired only after two.
  const assignedFor = new Map<string, number>()
  // When the leader last moved each lease (a hand-off, or a take from a live-looking owner).
  const lastMovedAt = new Map<string, number>()
  let nextLookupAt = 0
  const warmUntil = (yield* monotonicMillis) + expiryMillis

  // Where a hand-off's shard stop runs: it outlives the take round that starts it.
  const roundScope = yield* Effect.scope
  const acquired = yield* Queue.unbounded<OwnedLease, ConsumerError | Cause.Done>()
  const syncNow = yield* Queue.dropping<void>(1)

  const settle = (o: OwnedLease) =>
    Effect.andThen(Deferred.succeed(o.done, undefined), Deferred.succeed(o.settled, undefined))

  // Uninterruptible, event first: completing `done` can interrupt the very shard stream that
  // found the loss (its checkpoint), and the event must not be skipped then.
  const lose = (o: OwnedLease, reason: "taken" | "expired") =>
    Effect.uninterruptible(Effect.suspend(() => {
      if (o.state !== "active") return Effect.void
      o.state = "lost"
      owned.delete(o.shardId)
      handingOver.delete(o.shardId)
      lostInRound++
      // Expiry means this worker could not renew in time (self-fencing): worth a warning.
      const log = reason === "expired"
        ? logWith(Effect.logWarning, "lease lost: not renewed within its expiry, stopped processing", {
          shardId: o.shardId,
          reason,
          heldLeases: owned.size
        })
        : logWith(Effect.logInfo, "lease lost: taken by another worker", {
          shardId: o.shardId,
          reason,
          heldLeases: owned.size
        })
      return Effect.andThen(
        Effect.andThen(log, emit({ _tag: "LeaseLost", workerId, shardId: o.shardId, reason })),
        settle(o)
      )
    }))

  const fenced = (o: OwnedLease, now: number) => now - o.lastRenewedAt >= expiryMillis

  // A lease we are handing over whose next owner changed and whose counter moved was taken by a
  // worker that does not know hand-offs (a KCL 2.x take keeps `checkpointOwner`): it is not ours
  // any more. With the counter where we left it, another worker asked for it after the first one
  // called its hand-off off (a request leaves the counter as it is): we hand it to that one.
  // Only on a consistent read of the lease: a scan may predate our own latest renewal.
  const handedElsewhere = (o: OwnedLease, stored: Lease) => {
    const to = handingOver.get(o.shardId)
    return to !== undefined && stored.leaseOwner !== to && stored.leaseOwner !== workerId &&
      stored.leaseCounter !== o.lease.leaseCounter
  }

  // A conflict can also come from our own earlier write whose answer was lost: then the lease
  // still names us and we carry on with what is stored. Or another worker started a hand-off:
  // then we still write the checkpoints until we let go (the take round sees it and stops the shard).
  // A hand-off another worker asked for is found here, by the renewal's refused write, as well as
  // by the take round's scan: the scan need not run often for it.
  const reconcile = (o: OwnedLease) =>
    Effect.flatMap(repository.get(o.shardId), (current) => {
      if (current !== undefined && actualOwner(current) === workerId && !handedElsewhere(o, current)) {
        o.lease = current
        if (handingOver.has(o.shardId) && current.leaseOwner !== workerId && current.leaseOwner !== undefined) {
          handingOver.set(o.shardId, current.leaseOwner)
        }
        return Effect.as(handOverIfAsked(o, current), true)
      }
      return Effect.as(lose(o, "taken"), false)
    })

  // The lease names another worker as next owner and us as checkpoint owner: its stream stops as at
  // a shutdown (running handlers finish, what they processed is checkpointed), then the release
  // lets the next owner start there.
  const handOverIfAsked = (o: OwnedLease, stored: Lease) =>
    Effect.gen(function*() {
      if (stored.leaseOwner === workerId || handingOver.has(o.shardId) || o.state !== "active") return
      // Balancing by throughput, a lease taken here less than `minMoveInterval` ago stays (a worker
      // that just started asks without knowing): the hand-off is called off. Forked: a renewal's
      // reconciliation may hold the lease's permit, which `keep` takes.
      if (minMoveMillis !== undefined && (yield* monotonicMillis) - o.movedHereAt < minMoveMillis) {
        yield* Effect.forkIn(keep(o, stored), roundScope)
        return
      }
      handingOver.set(o.shardId, stored.leaseOwner ?? "")
      yield* Effect.forkIn(
        stopShard(o.shardId, "handing a lease over to the worker that asked for it", {
          nextOwner: stored.leaseOwner
        }),
        roundScope
      )
    })

  const checkpoint = (
    o: OwnedLease,
    position: ExtendedSequenceNumber.ExtendedSequenceNumber,
    childShardIds?: ReadonlyArray<string>
  ): Effect.Effect<void, ShardLeaseLost | LeaseStoreError> => {
    // Every refusal is checked against the stored lease: another worker's hand-off asked for and
    // called off between our writes refuses two attempts in a row while the lease stays ours.
    const attempt = (triesLeft: number): Effect.Effect<void, ShardLeaseLost | LeaseStoreError> =>
      Effect.gen(function*() {
        if (o.state !== "active") return yield* new ShardLeaseLost({ shardId: o.shardId })
        const sentAt = yield* monotonicMillis
        if (fenced(o, sentAt)) {
          yield* lose(o, "expired")
          return yield* new ShardLeaseLost({ shardId: o.shardId })
        }
        const startedAt = yield* Clock.currentTimeMillis
        const result = yield* repository.checkpoint(o.lease, position, childShardIds).pipe(
          Effect.map((lease) => ({ lease })),
          Effect.catchTag("LeaseConflict", () => Effect.succeed({ lease: undefined })),
          Effect.onExit((exit) =>
            Effect.flatMap(Clock.currentTimeMillis, (now) =>
              Effect.sync(() => {
                // As the KCL's `UpdateLease`: a conditional write refused still counts as answered.
                o.metrics.updateLeaseSuccess.record(exit._tag === "Success" ? 1 : 0)
                o.metrics.updateLeaseTime.record(now - startedAt)
              }))
          )
        )
        if (result.lease !== undefined) {
          o.lease = result.lease
          o.lastRenewedAt = sentAt
          return yield* emit({ _tag: "Checkpoint", workerId, shardId: o.shardId, checkpoint: position })
        }
        if (!(yield* reconcile(o))) return yield* new ShardLeaseLost({ shardId: o.shardId })
        if (triesLeft > 1) return yield* attempt(triesLeft - 1)
        // Still ours, yet changing under every write: the checkpointer retries later.
        return yield* new LeaseStoreError({
          operation: "checkpoint",
          message: `the lease of ${o.shardId} changed during each of ${CHECKPOINT_TRIES} checkpoint writes`,
          retryable: true
        })
      })
    return o.semaphore.withPermit(attempt(CHECKPOINT_TRIES)).pipe(
      Effect.withSpan("kinesis.consumer.checkpoint", {
        attributes: {
          "kinesis.stream": stream,
          "kinesis.shard_id": o.shardId,
          "kinesis.worker_id": workerId,
          "kinesis.sequence_number": position.sequenceNumber,
          "kinesis.sub_sequence_number": position.subSequenceNumber
        }
      })
    )
  }

  // The write is conditional on the counter last seen, but our own renewal or checkpoint whose
  // answer was lost (cut short by shutdown or a timeout) may have moved it: then the lease still
  // names us and is released as stored. Failures are left to the shutdown's last sweep.
  const releaseStored = (lease: Lease) =>
    repository.release(lease).pipe(
      Effect.catchTag("LeaseConflict", () =>
        Effect.flatMap(
          repository.get(lease.leaseKey),
          (current) =>
            current !== undefined && actualOwner(current) === workerId ? repository.release(current) : Effect.void
        )),
      Effect.ignore
    )

  // The staged position is written first (outside the permit: the checkpoint takes it), so that
  // the next owner does not replay what was processed: at shutdown, and when a manual assignment
  // drops a shard whose stream still runs.
  const release = (o: OwnedLease) =>
    Effect.andThen(
      Effect.suspend(() => o.state === "active" ? o.flush : Effect.void),
      o.semaphore.withPermit(Effect.uninterruptible(
        Effect.gen(function*() {
          if (o.state !== "active") return
          o.state = "released"
          owned.delete(o.shardId)
          yield* releaseStored(o.lease)
          const to = handingOver.get(o.shardId)
          handingOver.delete(o.shardId)
          yield* logWith(Effect.logInfo, to === undefined ? "lease released" : "lease handed over", {
            shardId: o.shardId,
            ...(to === undefined ? {} : { nextOwner: to }),
            leaseCounter: o.lease.leaseCounter,
            checkpoint: o.lease.checkpoint.sequenceNumber,
            heldLeases: owned.size
          })
          yield* emit({ _tag: "LeaseReleased", workerId, shardId: o.shardId })
          yield* settle(o)
        }).pipe(leaseSpan("kinesis.lease.release", o.shardId, o.lease.leaseCounter))
      ))
    )

  // A shard the user stopped is held back by the control's set, which `startShard` clears.
  const park = (o: OwnedLease) =>
    Effect.suspend(() => {
      if (!shuttingDown && !o.stopRequested) parked.add(o.shardId)
      return release(o)
    })

  // As the shutdown finalizer does for every lease, for one: the stream ends (a handler running
  // gets the grace period), writes its final checkpoint and releases; a stream stuck behind its
  // consumer is given up on after the grace period and a renewal interval.
  const stopShard = (shardId: string, why = "stopping a shard on request", fields: Record<string, unknown> = {}) =>
    Effect.suspend(() => {
      const o = owned.get(shardId)
      if (o === undefined || o.state !== "active") return Effect.void
      o.stopRequested = true
      return Effect.gen(function*() {
        yield* logWith(Effect.logInfo, why, { shardId, ...fields })
        yield* Deferred.succeed(o.done, undefined)
        if (o.streams > 0) {
          yield* Effect.timeoutOption(
            Deferred.await(o.settled),
            Duration.sum(settings.shutdownGracePeriod, settings.renewInterval)
          )
        }
        yield* release(o)
      })
    })

  /** Creates `lease`; false when it exists already (another worker created it). */
  const createLease = (lease: Lease): Effect.Effect<boolean, LeaseStoreError> =>
    repository.create(lease).pipe(
      Effect.andThen(logWith(Effect.logInfo, "lease created for a new shard", {
        shardId: lease.leaseKey,
        parentShardIds: lease.parentShardIds
      })),
      Effect.andThen(emit({
        _tag: "NewShardDetected",
        workerId,
        shardId: lease.leaseKey,
        parentShardIds: lease.parentShardIds
      })),
      Effect.as(true),
      Effect.catchTag("LeaseExists", () => Effect.succeed(false))
    )

  /**
   * Creates the missing `leases`. Workers listing the table at about the same time (a fleet
   * starting on an empty table) find the same leases missing, in the same order, so the first
   * create decides: a worker refused it leaves the rest to the worker that made it, instead of every
   * worker writing every lease (20 workers over 1,000 shards: 19,975 creates for 1,000 leases). The
   * one that made it creates the rest `CREATE_CONCURRENCY` at a time, a wave of the lineage at a
   * time (parents before children, see `creationWaves`), stopping at a refusal too (a worker that
   * listed later joined in) or a failure. A pass that stopped at a refusal returns true: the next
   * shard sync comes soon (`resyncSoon`), to create what the other worker did not (it may have
   * died, or stopped at a refusal too).
   */
  const createMissing = (leases: ReadonlyArray<Lease>) =>
    Effect.gen(function*() {
      if (leases.length === 0) return false
      const waves = ShardLineage.creationWaves(leases)
      const [first, ...rest] = waves[0]!
      if (!(yield* createLease(first!))) return true
      let refused = false
      const create = (lease: Lease) =>
        refused ? Effect.void : Effect.map(createLease(lease), (created) => {
          if (!created) refused = true
        })
      for (const wave of [rest, ...waves.slice(1)]) {
        if (refused) break
        yield* Effect.forEach(wave, create, { concurrency: CREATE_CONCURRENCY, discard: true })
      }
      return refused
    })

  /** Set by a shard sync whose lease creation stopped at a refusal (see `createMissing`). */
  let resyncSoon = false

  const shardEnded = (o: OwnedLease, childShards: ReadonlyArray<ChildShard>) =>
    Effect.gen(function*() {
      yield* Effect.forEach(
        childShards,
        (child) => Effect.ignore(createLease(ShardLineage.childLease(child))),
        { discard: true }
      )
      // The event comes before the lease leaves `owned`: the take round holds back the children of a
      // shard this worker still owns, so no child is taken before its parent's `ShardEnded`.
      yield* logWith(Effect.logInfo, "shard ended: read to its end and checkpointed SHARD_END", {
        shardId: o.shardId,
        childShardIds: childShards.map((child) => child.ShardId!)
      })
      yield* emit({
        _tag: "ShardEnded",
        workerId,
        shardId: o.shardId,
        childShardIds: childShards.map((child) => child.ShardId!)
      })
      yield* o.semaphore.withPermit(Effect.uninterruptible(Effect.gen(function*() {
        if (o.state !== "active") return
        o.state = "ended"
        yield* releaseStored(o.lease)
        owned.delete(o.shardId)
        yield* settle(o)
      })))
      // The children are leased now: the next round reads the table to take them.
      cadence.wake()
      yield* Queue.offer(syncNow, undefined)
    })

  // --- shard discovery -----------------------------------------------------------------------

  const syncShards = Effect.gen(function*() {
    const shardFilter = ShardLineage.shardFilter(initialPosition, options.timestamp)
    const listed: ReadonlyArray<Shard> = yield* Stream.runCollect(client.listShards(stream, { shardFilter }))
    // The take round's last read of the table serves when it is recent: every write made from it
    // (create, delete) is conditional, so a lease that changed since costs one refused write.
    const at = yield* monotonicMillis
    const recent =
      lastListed !== undefined && at - lastListed.at <= (election === undefined ? takeMillis : leaderMillis)
        ? lastListed.leases
        : undefined
    const leases = new Map((recent ?? (yield* repository.list)).map((lease) => [lease.leaseKey, lease]))
    // Leases from a run with an earlier timestamp may reach shards that closed before this one.
    const shards = shardFilter !== undefined && ShardLineage.missesLeased(listed, leases)
      ? ShardLineage.withLeasedLineage(listed, yield* Stream.runCollect(client.listShards(stream)), leases)
      : listed
    // Before the lineage: a lease deleted here must not be created again below.
    if (settings.cleanupFinished) {
      // Cleanup is housekeeping: a store refusing deletes (say, no DeleteItem permission) must
      // not stop the consumer. What was not deleted stays a lease and is tried again next sync.
      // A child whose lease was deleted before its parent's (as an older cleanup did) counts as
      // consumed when the lineage says so, also when its own children's leases are gone too.
      const consumed = ShardLineage.consumedShards(shards, leases)
      const isConsumed = (shardId: string) => consumed.has(shardId)
      // Each delete is reported as it is made: one failing later in the pass does not hide it.
      const deleted = (shardId: string) =>
        Effect.suspend(() => {
          leases.delete(shardId)
          return Effect.andThen(
            logWith(Effect.logInfo, "lease of a finished shard deleted", { shardId }),
            emit({ _tag: "LeaseDeleted", workerId, shardId })
          )
        })
      yield* FinishedLeases.deleteFinished(repository, [...leases.values()], isConsumed, deleted).pipe(
        Effect.catch((error) => Effect.logWarning(`deleting finished leases failed: ${error.message}`))
      )
    }
    let lineage = ShardLineage.fromShards(shards, initialPosition, leases)
    if (lineage.leasesToCreate.length > 0 && recent !== undefined) {
      // Leases made since the take round's read (by this worker's own `shardEnded`, or another
      // worker) would look missing, and a refused create ends the pass (`createMissing`): read afresh.
      const fresh = new Map((yield* repository.list).map((lease) => [lease.leaseKey, lease]))
      lineage = ShardLineage.fromShards(shards, initialPosition, fresh)
    }
    existingShards = lineage.existing
    resyncSoon = yield* createMissing(lineage.leasesToCreate)
  })

  // --- taking --------------------------------------------------------------------------------

  // Uninterruptible (bounded by the store's own timeouts): a take cut short after its write
  // landed would leave a lease naming this worker that nothing renews or releases, and the next
  // owner would wait out the expiry. One landing while shutting down is handed back at once.
  // `steal`: taken from a live worker (else the lease was free, or its owner's had expired).
  // `handedOverBy`: the lease was handed over to us by that worker (or, when it still names it as
  // checkpoint owner, is taken because the hand-off did not complete in time).
  const take = (lease: Lease, steal: boolean, handedOverBy?: string) =>
    Effect.uninterruptible(
      Effect.gen(function*() {
        if (shuttingDown) return false
        const sentAt = yield* monotonicMillis
        const startedAt = yield* Clock.currentTimeMillis
        const taken = yield* repository.take(lease, workerId).pipe(
          Effect.catchTag("LeaseConflict", () => Effect.succeed(undefined)),
          Effect.onExit((exit) =>
            Effect.flatMap(Clock.currentTimeMillis, (now) =>
              Effect.sync(() => {
                metrics.take.takeLeaseSuccess.record(exit._tag === "Success" ? 1 : 0)
                metrics.take.takeLeaseTime.record(now - startedAt)
              }))
          )
        )
        const previousOwner = handedOverBy ?? (lease.leaseOwner === workerId ? undefined : lease.leaseOwner)
        const how = handedOverBy !== undefined
          ? lease.checkpointOwner === undefined ? "handed over" : "hand-off timed out"
          : steal
          ? "stolen"
          : previousOwner === undefined
          ? "free"
          : "expired"
        yield* Effect.annotateCurrentSpan({
          "kinesis.lease.taken": taken !== undefined,
          "kinesis.lease.how": how,
          ...(previousOwner === undefined ? {} : { "kinesis.lease.previous_owner": previousOwner }),
          ...(taken === undefined ? {} : { "kinesis.lease.counter": taken.leaseCounter })
        })
        if (taken === undefined) {
          untakenInRound++
          yield* logWith(Effect.logDebug, "lease not taken: another worker wrote it first", { shardId: lease.leaseKey })
          return false
        }
        takenInRound++
        const o: OwnedLease = {
          shardId: taken.leaseKey,
          lease: taken,
          lastRenewedAt: sentAt,
          state: "active",
          done: yield* Deferred.make<void>(),
          settled: yield* Deferred.make<void>(),
          streams: 0,
          flush: Effect.void,
          semaphore: yield* Semaphore.make(1),
          metrics: metrics.shard(taken.leaseKey),
          stopRequested: false,
          millisBehindLatest: undefined,
          progress: () => undefined,
          fetchedBytes: 0,
          movedHereAt: previousOwner === undefined ? Number.NEGATIVE_INFINITY : sentAt
        }
        owned.set(o.shardId, o)
        seen.set(o.shardId, { counter: taken.leaseCounter, since: sentAt })
        yield* logWith(
          how === "hand-off timed out" ? Effect.logWarning : Effect.logInfo,
          how === "stolen"
            ? "lease stolen toward a fair share"
            : how === "expired"
            ? "lease taken over from a worker whose lease expired"
            : how === "handed over"
            ? "lease taken after its previous owner handed it over"
            : how === "hand-off timed out"
            ? "lease taken: its previous owner did not hand it over in time"
            : "lease taken",
          {
            shardId: o.shardId,
            ...(previousOwner === undefined ? {} : { previousOwner }),
            leaseCounter: taken.leaseCounter,
            checkpoint: taken.checkpoint.sequenceNumber,
            heldLeases: owned.size
          }
        )
        yield* emit({
          _tag: "LeaseAcquired",
          workerId,
          shardId: o.shardId,
          checkpoint: taken.checkpoint,
          previousOwner
        })
        // A stop requested while the take was on its way hands the lease back at once.
        if (shuttingDown || holds.isStopped(o.shardId) || !(yield* Queue.offer(acquired, o))) {
          yield* release(o)
          return false
        }
        return true
      }).pipe(leaseSpan("kinesis.lease.take", lease.leaseKey, lease.leaseCounter))
    )

  // A lease moved for balance is handed over when the store can: its owner finishes what it is
  // processing, checkpoints and lets go, and we start where it stopped (no record is repeated).
  // Without `handOff` in the store, it is taken, and we resume at its last checkpoint.
  // Uninterruptible as `take`: a hand-off requested must be known here, or a stop would not call it off.
  const steal = (lease: Lease, now: number) =>
    Effect.uninterruptible(Effect.gen(function*() {
      const handOff = repository.handOff
      if (handOff === undefined) return yield* take(lease, true)
      if (shuttingDown) return false
      const from = lease.leaseOwner!
      const started = yield* handOff(lease, workerId).pipe(
        Effect.as(true),
        // Refused, it may still have landed unanswered, the owner writing since (its renewal): then
        // the lease names us as next owner, and we wait for the hand-off as for one answered.
        Effect.catchTag("LeaseConflict", () =>
          repository.get(lease.leaseKey).pipe(
            Effect.map((stored) => stored?.leaseOwner === workerId && stored.checkpointOwner === from),
            Effect.orElseSucceed(() => false)
          ))
      )
      if (!started) {
        untakenInRound++
        yield* logWith(Effect.logDebug, "lease hand-off not started: the lease changed", { shardId: lease.leaseKey })
        return false
      }
      incoming.set(lease.leaseKey, { since: now, from })
      yield* logWith(Effect.logInfo, "lease hand-off requested toward a fair share", {
        shardId: lease.leaseKey,
        previousOwner: from
      })
      return true
    })).pipe(leaseSpan("kinesis.lease.hand_off", lease.leaseKey, lease.leaseCounter))

  // Gives a lease asked of us back to us (`handOff` to its checkpoint owner calls the hand-off
  // off); the asking worker sees it and lets it be. On failure, the next round tries again.
  const keep = (o: OwnedLease, stored: Lease) =>
    o.semaphore.withPermit(Effect.gen(function*() {
      if (o.state !== "active" || repository.handOff === undefined) return
      o.lease = yield* repository.handOff(stored, workerId)
      yield* logWith(Effect.logInfo, "lease hand-off called off: the lease moved here recently", {
        shardId: o.shardId,
        askedBy: stored.leaseOwner
      })
    })).pipe(Effect.ignore)

  // Per-round counts for the `TakeLeases` and `RenewAllLeases` metrics (one round of each at a time).
  let takenInRound = 0
  let untakenInRound = 0
  let lostInRound = 0
  let orphansInRound = 0
  let followUpAt = Number.POSITIVE_INFINITY
  let lastListed: { readonly at: number; readonly leases: ReadonlyArray<Lease> } | undefined

  const listLeases = Effect.gen(function*() {
    const startedAt = yield* Clock.currentTimeMillis
    return yield* (roundAsLeader ? repository.listEventuallyConsistent ?? repository.list : repository.list).pipe(
      Effect.onExit((exit) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.sync(() => {
            metrics.take.listLeasesSuccess.record(exit._tag === "Success" ? 1 : 0)
            metrics.take.listLeasesTime.record(now - startedAt)
          }))
      )
    )
  })

  const resetTakeCounts = Effect.sync(() => {
    takenInRound = 0
    untakenInRound = 0
  })
  const recordTakeCounts = Effect.sync(() => {
    metrics.take.takenLeases.record(takenInRound)
    metrics.take.untakenLeases.record(untakenInRound)
  })

  // How many expiries a lease's counter may stand still before it counts as expired.
  const grace = (lease: Lease) => assignedFor.get(lease.leaseKey) === lease.leaseCounter ? 2 : 1

  let leaderBusy = false
  // Whether the take round running is the leader's (`takeRound`, `listLeases`).
  let roundAsLeader = false

  // Takes `lease` for worker `to` (conditional on the counter read); `to` finds it by its own keys.
  const assignTo = (lease: Lease, to: string, now: number) =>
    repository.take(lease, to).pipe(
      Effect.flatMap((taken) =>
        Effect.andThen(
          Effect.sync(() => {
            assignedFor.set(taken.leaseKey, taken.leaseCounter)
            seen.set(taken.leaseKey, { counter: taken.leaseCounter, since: now })
            if (lease.leaseOwner !== undefined) lastMovedAt.set(lease.leaseKey, now)
          }),
          logWith(Effect.logInfo, "lease assigned to a worker", {
            shardId: lease.leaseKey,
            to,
            ...(lease.leaseOwner === undefined ? {} : { previousOwner: lease.leaseOwner })
          })
        )
      ),
      Effect.catchTag("LeaseConflict", () =>
        Effect.sync(() => {
          leaderBusy = true
        }))
    )

  // Asks the owner of `lease` to hand it over to `to` (the owner's next renewal finds it), or hands
  // it over to this worker as a steal does.
  const moveTo = (lease: Lease, to: string, now: number) =>
    Effect.gen(function*() {
      if (to === workerId) {
        if (yield* steal(lease, now)) lastMovedAt.set(lease.leaseKey, now)
        return
      }
      const handOff = repository.handOff
      if (handOff === undefined) return yield* assignTo(lease, to, now)
      const started = yield* handOff(lease, to).pipe(
        Effect.as(true),
        Effect.catchTag("LeaseConflict", () => Effect.succeed(false))
      )
      if (!started) {
        leaderBusy = true
        return
      }
      lastMovedAt.set(lease.leaseKey, now)
      yield* logWith(Effect.logInfo, "lease hand-off requested by the leader", {
        shardId: lease.leaseKey,
        owner: lease.leaseOwner,
        nextOwner: to
      })
    })

  // The leader's decision (`LeaderAssignment.decide`) over the table it read, and its writes. The
  // workers are this one and the owners of unexpired leases (a worker holding none takes toward
  // its share itself, and so becomes one).
  const assignAsLeader = (leases: ReadonlyArray<Lease>, now: number, expired: (lease: Lease) => boolean) =>
    Effect.gen(function*() {
      const workers = new Set<string>(holds.paused() ? [] : [workerId])
      for (const lease of leases) {
        if (lease.leaseOwner !== undefined && lease.leaseOwner !== workerId && !expired(lease)) {
          workers.add(lease.leaseOwner)
        }
      }
      for (const key of assignedFor.keys()) if (!seen.has(key)) assignedFor.delete(key)
      for (const key of lastMovedAt.keys()) if (!seen.has(key)) lastMovedAt.delete(key)
      const decision = LeaderAssignment.decide({
        leases,
        workers,
        // Naming this worker without being held or handed over here: left from an earlier run.
        expired: (lease) =>
          lease.leaseOwner === workerId
            ? !owned.has(lease.leaseKey) && !incoming.has(lease.leaseKey) && lease.checkpointOwner === undefined
            : expired(lease),
        existingShards,
        lastMovedAt: (key) => lastMovedAt.get(key),
        now,
        minMoveMillis: minMoveMillis ?? 0,
        balance: byThroughput === undefined
          ? { _tag: "count" }
          : { _tag: "throughput", tolerance: byThroughput.tolerance },
        maxTakes: Number.POSITIVE_INFINITY,
        maxMoves: assignment._tag === "Balanced" ? assignment.maxStealsPerRound : 0
      })
      leaderBusy = decision.handOffs.length >= (assignment._tag === "Balanced" ? assignment.maxStealsPerRound : 0) &&
        decision.handOffs.length > 0
      const t = metrics.take
      t.neededLeases.record(decision.takes.filter((m) => m.to === workerId).length)
      t.leasesToTake.record(decision.takes.length + decision.handOffs.length)
      t.veryOldLeases.record(0)
      yield* Effect.forEach(decision.takes, ({ lease, to }) =>
        to !== workerId
          ? assignTo(lease, to, now)
          : parked.has(lease.leaseKey) || holds.isStopped(lease.leaseKey)
          ? Effect.void
          : Effect.asVoid(take(lease, false)), { concurrency: 8, discard: true })
      yield* Effect.forEach(decision.handOffs, ({ lease, to }) => moveTo(lease, to, now), {
        concurrency: 8,
        discard: true
      })
    })

  // The leader's round (`asLeader`) reads the table eventually consistently and assigns leases to
  // every worker instead of taking toward this worker's share.
  const takeRound = Effect.gen(function*() {
    const asLeader = roundAsLeader
    yield* resetTakeCounts
    const leases = yield* listLeases
    const now = yield* monotonicMillis
    lastListed = { at: now, leases }
    const full = now - lastFullRound >= RoundCadence.MIN_SHARE * Duration.toMillis(settings.takeInterval)
    if (full) lastFullRound = now
    const byKey = new Map(leases.map((lease) => [lease.leaseKey, lease]))
    for (const lease of leases) {
      const s = seen.get(lease.leaseKey)
      if (s === undefined || s.counter !== lease.leaseCounter) {
        seen.set(lease.leaseKey, { counter: lease.leaseCounter, since: now })
      }
    }
    for (const key of seen.keys()) if (!byKey.has(key)) seen.delete(key)
    followUpAt = Number.POSITIVE_INFINITY
    for (const lease of leases) {
      const since = seen.get(lease.leaseKey)!.since
      if (since < now && lease.leaseOwner !== undefined && lease.leaseOwner !== workerId) {
        followUpAt = Math.min(followUpAt, since + expiryMillis * grace(lease))
      }
    }

    // A lease taken from us, or one naming another worker as next owner and us as checkpoint owner
    // (being handed over), shows up here or at our next renewal, whichever comes first; a lease
    // being handed over and taken by a worker that ignores hand-offs, at the renewal (its read is
    // consistent). Not from the leader's eventually consistent read, which may predate a take of ours: its
    // renewals find what changed, with a consistent read.
    for (const o of asLeader ? [] : [...owned.values()]) {
      const stored = byKey.get(o.shardId)
      if (stored === undefined || actualOwner(stored) !== workerId) {
        yield* lose(o, "taken")
      } else if (fenced(o, now)) yield* lose(o, "expired")
      else yield* handOverIfAsked(o, stored)
    }
    // Ours to let go of, though we do not hold it (this worker restarted while handing it over).
    for (const lease of leases) {
      if (lease.checkpointOwner === workerId && lease.leaseOwner !== workerId && !owned.has(lease.leaseKey)) {
        yield* releaseStored(lease)
      }
    }

    // How long the lease's counter has stood still, on our clock.
    const idle = (lease: Lease) => now - (seen.get(lease.leaseKey)?.since ?? now)
    const expired = (lease: Lease) => lease.leaseOwner !== undefined && idle(lease) >= expiryMillis * grace(lease)
    // A parent this worker still owns is finishing here (its `SHARD_END` may be stored already).
    const ready = leases.filter((lease) =>
      !ExtendedSequenceNumber.isShardEnd(lease.checkpoint) &&
      ShardLineage.parentsDone(lease, byKey, existingShards) &&
      lease.parentShardIds.every((parent) => !owned.has(parent))
    )
    const live = new Map<string, Array<Lease>>()
    for (const lease of ready) {
      if (lease.leaseOwner === undefined || lease.leaseOwner === workerId || expired(lease)) continue
      const theirs = live.get(lease.leaseOwner)
      if (theirs === undefined) live.set(lease.leaseOwner, [lease])
      else theirs.push(lease)
    }
    yield* reportWorkers(new Set(live.keys()))

    // Leases handed over to us: taken once their previous owner let go (it checkpointed what it
    // processed), or when it has not within `handOffMillis` or stopped renewing (then it is
    // taken over as from an expired or stolen lease). Meanwhile they count toward our share.
    for (const key of incoming.keys()) {
      const lease = byKey.get(key)
      if (lease === undefined || lease.leaseOwner !== workerId || owned.has(key)) incoming.delete(key)
    }
    for (const lease of ready) {
      if (lease.leaseOwner !== workerId || owned.has(lease.leaseKey)) continue
      const from = lease.checkpointOwner
      if (from !== undefined && from !== workerId && !incoming.has(lease.leaseKey)) {
        incoming.set(lease.leaseKey, { since: now, from })
      }
      const handOff = incoming.get(lease.leaseKey)
      if (handOff === undefined || holds.paused() || holds.isStopped(lease.leaseKey)) continue
      if (from === undefined || expired(lease) || now - handOff.since >= handOffMillis) {
        yield* take(lease, false, handOff.from)
      }
    }

    const mine = (lease: Lease) =>
      lease.leaseOwner === workerId && (owned.has(lease.leaseKey) || incoming.has(lease.leaseKey))
    // Unowned, or naming us without us holding it (left over from an earlier run of this worker).
    const free = (lease: Lease) =>
      !parked.has(lease.leaseKey) && !holds.isStopped(lease.leaseKey) &&
      (lease.leaseOwner === undefined ||
        (lease.leaseOwner === workerId && !owned.has(lease.leaseKey) && !incoming.has(lease.leaseKey)))
    // Held by no live worker. Taken on every round, not only on full ones: then the scan interval,
    // not the take interval, is what a dead worker's shards wait past the expiry.
    const orphan = (lease: Lease) =>
      free(lease) ||
      (!parked.has(lease.leaseKey) && !holds.isStopped(lease.leaseKey) && lease.leaseOwner !== workerId &&
        expired(lease))
    // Since when no live worker has held it: an expired lease from its expiry on.
    const orphanedFor = (lease: Lease) => expired(lease) ? idle(lease) - expiryMillis : idle(lease)
    // Longest orphaned first; the shuffle breaks ties, so that workers do not all reach for the same lease.
    const orphans = (yield* Random.shuffle(ready.filter(orphan))).sort((a, b) => orphanedFor(b) - orphanedFor(a))
    const t = metrics.take
    t.totalLeases.record(leases.length)
    t.expiredLeases.record(orphans.length)
    t.numWorkers.record(live.size + 1)
    // No per-worker maximum here, so nothing spills over.
    t.leaseSpillover.record(0)

    // The leader assigns also while paused (not to itself then).
    if (asLeader) return yield* assignAsLeader(leases, now, expired)

    // Paused: the leases held are renewed (and lost ones noticed above), none is taken.
    if (holds.paused()) {
      t.neededLeases.record(0)
      t.leasesToTake.record(0)
      t.veryOldLeases.record(0)
      return
    }

    if (assignment._tag === "Manual") {
      const wanted = new Set(assignment.select(ready.map((lease) => lease.leaseKey)))
      for (const o of [...owned.values()]) if (!wanted.has(o.shardId)) yield* release(o)
      const toTake = orphans.filter((lease) => wanted.has(lease.leaseKey))
      t.neededLeases.record(toTake.length)
      t.leasesToTake.record(toTake.length)
      t.veryOldLeases.record(0)
      yield* Effect.forEach(toTake, (lease) => take(lease, false), { discard: true })
      return
    }

    // Orphans left for a later round (paused or manual ones do not count) keep the rounds coming.
    orphansInRound = orphans.length
    const target = Math.ceil(ready.length / (live.size + 1))
    // Shards stopped here count toward this worker's share: a stop hands work to the others, it
    // must not make this worker steal another shard (a steal repeats what the victim processed
    // since its last checkpoint).
    let need = target - ready.filter((lease) => mine(lease) || holds.isStopped(lease.leaseKey)).length
    t.neededLeases.record(Math.max(need, 0))
    let attempts = 0
    let veryOld = 0
    // The fair share counts a worker that died as live until its leases expire; while workers keep
    // dying, every live worker can be at its share while a dead one's leases wait. So an orphan
    // that no worker below its share took within a take interval is taken beyond the share, one
    // per round (the steals even the shares out later); one whose counter has stood still for
    // `veryOldMultiplier` expiries is taken regardless of the share, as the KCL does.
    let beyond = 1
    for (const lease of orphans) {
      if (need > 0) {
        attempts++
        if (yield* take(lease, false)) need--
      } else if (idle(lease) >= veryOldMultiplier * expiryMillis) {
        attempts++
        veryOld++
        yield* take(lease, false)
      } else if (beyond > 0 && orphanedFor(lease) >= takeMillis) {
        beyond--
        attempts++
        yield* take(lease, false)
      }
    }
    t.veryOldLeases.record(veryOld)
    if (moves !== undefined && byThroughput !== undefined) {
      // By throughput, these moves replace the steals toward a count; they are handed over alike.
      moves.observe(leases, now)
      const chosen = full
        ? ThroughputBalance.decide({
          self: workerId,
          workers: live.keys(),
          leases: ThroughputBalance.held(
            workerId,
            ready,
            live,
            mine,
            (lease) =>
              !parked.has(lease.leaseKey) && !holds.isStopped(lease.leaseKey) && moves.movable(lease.leaseKey, now)
          ),
          tolerance: byThroughput.tolerance,
          maxMoves: assignment.maxStealsPerRound
        })
        : []
      for (const key of chosen) {
        attempts++
        if (yield* steal(byKey.get(key)!, now)) moves.moved(key, now)
      }
      t.leasesToTake.record(attempts)
      return
    }
    if (need <= 0 || !full) {
      t.leasesToTake.record(attempts)
      return
    }
    // Steal from the most loaded worker while it holds at least two more than we do: that
    // converges to shares differing by at most one, also when no worker is above the target.
    let steals = assignment.maxStealsPerRound
    let holding = target - need
    const stealable = (lease: Lease) =>
      !parked.has(lease.leaseKey) && !holds.isStopped(lease.leaseKey) && lease.checkpointOwner === undefined
    const victims = yield* Effect.forEach(
      [...live.values()],
      (theirs) =>
        Effect.map(Random.shuffle(theirs.filter(stealable)), (leases) => ({
          leases,
          count: theirs.length
        }))
    )
    while (need > 0 && steals > 0) {
      const victim = victims.reduce<typeof victims[number] | undefined>(
        (most, v) => v.leases.length > 0 && (most === undefined || v.count > most.count) ? v : most,
        undefined
      )
      if (victim === undefined || victim.count < holding + 2) break
      const lease = victim.leases.pop()!
      victim.count--
      steals--
      attempts++
      if (yield* steal(lease, now)) {
        holding++
        need--
      }
    }
    t.leasesToTake.record(attempts)
  }).pipe(
    timed(metrics.take.success, metrics.take.time),
    Effect.ensuring(recordTakeCounts)
  )

  const reportWorkers = (now: ReadonlySet<string>) =>
    Effect.gen(function*() {
      for (const other of now) {
        if (otherWorkers.has(other)) continue
        yield* logWith(Effect.logInfo, "worker joined", { otherWorkerId: other, workers: now.size + 1 })
        yield* emit({ _tag: "WorkerJoined", workerId, otherWorkerId: other })
      }
      for (const other of otherWorkers) {
        if (now.has(other)) continue
        yield* logWith(Effect.logInfo, "worker left (holds no unexpired lease)", {
          otherWorkerId: other,
          workers: now.size + 1
        })
        yield* emit({ _tag: "WorkerLeft", workerId, otherWorkerId: other })
      }
      otherWorkers = now
    })

  // --- renewing ------------------------------------------------------------------------------

  // A renewal refused while the lease is still ours (our earlier write landed unanswered, or a
  // hand-off was asked for) is written once more: the reconciliation alone renews nothing.
  const renew = (o: OwnedLease) => o.semaphore.withPermit(renewOnce(o, true))

  const renewOnce = (o: OwnedLease, again: boolean): Effect.Effect<void> =>
    Effect.gen(function*() {
      if (o.state !== "active") return
      const sentAt = yield* monotonicMillis
      const left = expiryMillis - (sentAt - o.lastRenewedAt)
      if (left <= 0) return yield* lose(o, "expired")
      // Retries stop at the expiry: past it the lease may be someone else's.
      const startedAt = yield* Clock.currentTimeMillis
      const result = yield* repository.renew(o.lease, meter?.(o, sentAt)).pipe(
        Effect.tapError((e) =>
          e._tag === "LeaseStoreError" && e.retryable
            ? logWith(Effect.logDebug, `renewing a lease failed, retrying: ${e.message}`, { shardId: o.shardId })
            : Effect.void
        ),
        Effect.retry({ while: (e) => e._tag === "LeaseStoreError" && e.retryable, schedule: storeRetry }),
        Effect.map((lease) => ({ lease })),
        Effect.catchTag("LeaseConflict", () => Effect.succeed({ lease: undefined })),
        // At most a renewal interval: one stuck renewal must not hold up the next round, in
        // which every other lease of this worker is renewed.
        Effect.timeoutOption(Duration.millis(Math.min(left, Duration.toMillis(settings.renewInterval)))),
        Effect.catchTag(
          "LeaseStoreError",
          (e) => Effect.as(Effect.logWarning(`renewing ${o.shardId} failed: ${e.message}`), undefined)
        )
      )
      const answeredAt = yield* Clock.currentTimeMillis
      metrics.renew.renewLeaseSuccess.record(result === undefined || result._tag === "None" ? 0 : 1)
      metrics.renew.renewLeaseTime.record(answeredAt - startedAt)
      if (result === undefined || result._tag === "None") {
        // Cut off at the expiry: fenced now, not at the next round (another worker may take it by then).
        if (fenced(o, yield* monotonicMillis)) yield* lose(o, "expired")
        return
      }
      if (result.value.lease !== undefined) {
        o.lease = result.value.lease
        o.lastRenewedAt = sentAt
        return yield* emit({ _tag: "LeaseRenewed", workerId, shardId: o.shardId })
      }
      if ((yield* reconcile(o)) && again) yield* renewOnce(o, false)
    }).pipe(
      // A failed renewal is retried next round, until the lease expires and fences itself.
      Effect.catch((e) => Effect.logWarning(`renewing ${o.shardId} failed: ${e.message}`)),
      leaseSpan("kinesis.lease.renew", o.shardId, o.lease.leaseCounter)
    )

  // `LostLeases` counts the leases lost since the last round, also those a take round found taken.
  const renewAll = Effect.suspend(() =>
    Effect.forEach([...owned.values()], renew, { concurrency: "unbounded", discard: true }).pipe(
      Effect.andThen(Effect.sync(() => {
        metrics.renew.lostLeases.record(lostInRound)
        lostInRound = 0
        metrics.renew.currentLeases.record(owned.size)
      })),
      timed(metrics.renew.success, metrics.renew.time)
    )
  )

  const leaseSpan = (name: string, shardId: string, counter: number) =>
    Effect.withSpan(name, {
      attributes: {
        "kinesis.stream": stream,
        "kinesis.shard_id": shardId,
        "kinesis.worker_id": workerId,
        "kinesis.lease.owner": workerId,
        "kinesis.lease.counter_before": counter
      }
    })

  // --- loops ---------------------------------------------------------------------------------

  // A store or Kinesis error that retrying cannot fix ends the consumer; others wait for the next round.
  const guard = (what: string) => (self: Effect.Effect<void, LeaseStoreError | KinesisError.KinesisError>) =>
    Effect.catch(self, (error) =>
      error.retryable
        ? Effect.logWarning(`${what} failed, retrying: ${error.message}`)
        : Effect.andThen(Queue.fail(acquired, error), Effect.interrupt))

  // Runs after the loops stop (finalizers run in reverse; a take in flight finishes first, so
  // what it took is in `owned`), possibly before the shard streams' own exit handlers. Releasing
  // a lease first would skip its final checkpoint, and the next owner would replay what was
  // processed. So the streams are stopped and given the grace period
  // (their handlers may still run) and a renewal interval to checkpoint and hand their lease on
  // themselves (at shard end too); what is still held then (a stream stuck behind its consumer)
  // is released, its staged position written first. The renewal loop has stopped by now: the
  // leases are renewed here meanwhile, or a drain longer than the expiry would let another worker
  // take a shard whose handler still runs here.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      shuttingDown = true
      // Another worker leads from its next read of the lock, not after the lock's duration.
      if (election !== undefined) yield* election.release
      const held = [...owned.values()]
      yield* Effect.forEach(held, (o) => Deferred.succeed(o.done, undefined), { discard: true })
      const wait = Duration.sum(settings.shutdownGracePeriod, settings.renewInterval)
      yield* Effect.forEach(
        held,
        (o) =>
          Effect.gen(function*() {
            if (o.streams > 0) yield* Effect.timeoutOption(Deferred.await(o.settled), wait)
            yield* release(o)
          }),
        { concurrency: "unbounded", discard: true }
      ).pipe(Effect.raceFirst(Effect.forever(Effect.delay(renewAll, settings.renewInterval))))
      // Hand-offs toward this worker are called off: the lease goes back to the worker still
      // processing it, rather than to one that is gone (its shard would wait out an expiry).
      const handOff = repository.handOff
      if (handOff !== undefined) {
        yield* Effect.forEach(
          [...incoming.keys()],
          (key) =>
            Effect.flatMap(repository.get(key), (lease) =>
              lease?.leaseOwner === workerId && lease.checkpointOwner !== undefined
                ? Effect.andThen(
                  handOff(lease, lease.checkpointOwner),
                  logWith(Effect.logInfo, "lease hand-off toward this worker called off at shutdown", {
                    shardId: key,
                    owner: lease.checkpointOwner
                  })
                )
                : Effect.void).pipe(Effect.ignore),
          { concurrency: "unbounded", discard: true }
        )
      }
      // Last: a lease may still name this worker without being held, from a write whose answer
      // was lost (a take that gave up after its store's time budget). No take or renewal of ours
      // is in flight any more, so none can name us again after this.
      // Through the store's owner index when it has one (KCL 3.x tables): no scan of the table.
      const leftover = yield* Effect.orElseSucceed(
        repository.listOwnedBy?.(workerId) ?? repository.list,
        () =>
          [] as ReadonlyArray<Lease>
      )
      // A hand-off toward us the loop above did not know of (its answer was lost) is called off too;
      // refused, the lease is read again: its owner may have let go meanwhile, to us.
      const letGo = (lease: Lease, again: boolean): Effect.Effect<void> =>
        lease.leaseOwner === workerId && lease.checkpointOwner !== undefined && handOff !== undefined
          ? handOff(lease, lease.checkpointOwner).pipe(
            Effect.catchTag("LeaseConflict", () =>
              again
                ? Effect.flatMap(repository.get(lease.leaseKey), (current) =>
                  current === undefined ? Effect.void : letGo(current, false))
                : Effect.void),
            Effect.ignore
          )
          : actualOwner(lease) === workerId
          ? releaseStored(lease)
          : Effect.void
      yield* Effect.forEach(leftover, (lease) =>
        letGo(lease, true), { concurrency: "unbounded", discard: true })
      yield* Queue.end(acquired)
    })
  )

  // The first shard sync must be done before taking: child leases wait for their parents.
  yield* syncShards.pipe(
    Effect.retry({ while: (e) => e.retryable, schedule: storeRetry, times: 5 })
  )

  // After a pass that left leases to another worker, the next comes within one to two scan
  // intervals instead of a shard sync interval: a fleet starting on an empty table is not kept
  // waiting for leases whose creator stopped or died.
  const untilNextSync = Effect.suspend(() =>
    Effect.sleep(resyncSoon ? Duration.millis(scanMillis * (1 + Math.random())) : settings.shardSyncInterval)
  )
  yield* Effect.raceFirst(untilNextSync, Queue.take(syncNow)).pipe(
    // In leader mode the leader alone lists the shards (a shard ending here creates its children's leases).
    Effect.andThen(
      Effect.flatMap(
        leading,
        (leader) => election === undefined || leader ? guard("shard sync")(syncShards) : Effect.void
      )
    ),
    Effect.forever,
    Effect.forkScoped
  )
  // While the store is down, rounds back off toward the take interval and the outage is logged
  // when it starts, at most once per take interval while it lasts, and when it ends. Renewal and
  // self-fencing run on their own loop and keep their timing.
  let failedRounds = 0
  let warnedAt = Number.NEGATIVE_INFINITY
  const roundFailed = (error: LeaseStoreError | KinesisError.KinesisError) =>
    Effect.gen(function*() {
      if (!error.retryable) {
        yield* Queue.fail(acquired, error)
        return yield* Effect.interrupt
      }
      failedRounds++
      const now = yield* monotonicMillis
      if (failedRounds === 1 || now - warnedAt >= takeMillis) {
        warnedAt = now
        yield* Effect.logWarning(`take round failed (${failedRounds} in a row), retrying: ${error.message}`)
      }
      yield* Effect.sleep(Duration.millis(Math.min(scanMillis * 2 ** (failedRounds - 1), takeMillis)))
    })
  const roundSucceeded = Effect.gen(function*() {
    if (failedRounds > 0) {
      yield* Effect.logInfo(`take round succeeded again after ${failedRounds} failed rounds`)
      failedRounds = 0
      warnedAt = Number.NEGATIVE_INFINITY
    }
    yield* Effect.sleep(settings.scanInterval)
  })
  // Between full rounds (`RoundCadence`), only the leases being handed over to us are read, to take
  // each as soon as its previous owner let go, as the full round would.
  // Its takes count in `TakenLeases`/`UntakenLeases` as a round's do (recorded when it tried any).
  const pollIncoming = Effect.suspend(() => {
    if (incoming.size === 0 || holds.paused()) return Effect.void
    return Effect.andThen(
      resetTakeCounts,
      Effect.forEach([...incoming], ([key, handOff]) =>
        Effect.gen(function*() {
          if (owned.has(key)) return incoming.delete(key)
          const lease = yield* repository.get(key)
          const now = yield* monotonicMillis
          if (lease === undefined || lease.leaseOwner !== workerId) return incoming.delete(key)
          const s = seen.get(key)
          if (s === undefined || s.counter !== lease.leaseCounter) {
            seen.set(key, { counter: lease.leaseCounter, since: now })
          }
          if (holds.isStopped(key)) {
            return
          }
          const idle = now - (seen.get(key)?.since ?? now)
          if (lease.checkpointOwner === undefined || idle >= expiryMillis || now - handOff.since >= handOffMillis) {
            yield* take(lease, false, handOff.from)
          }
        }), { concurrency: 8, discard: true })
    ).pipe(
      Effect.ensuring(Effect.suspend(() => takenInRound + untakenInRound > 0 ? recordTakeCounts : Effect.void))
    )
  })
  // Not leading, in leader mode: the keys of the leases naming this worker (the owner index), and
  // a consistent read and a take only of those it does not hold yet; one still being handed over
  // by its previous owner is watched as a hand-off toward us is (`pollIncoming`).
  const lookupRound = Effect.gen(function*() {
    if (listOwnedKeys === undefined || holds.paused()) return
    const keys = yield* listOwnedKeys(workerId)
    const now = yield* monotonicMillis
    const fresh = keys.filter((key) =>
      !owned.has(key) && !incoming.has(key) && !parked.has(key) && !holds.isStopped(key)
    )
    if (fresh.length === 0) return
    yield* resetTakeCounts
    yield* Effect.forEach(fresh, (key) =>
      Effect.gen(function*() {
        const lease = yield* repository.get(key)
        if (
          lease === undefined || lease.leaseOwner !== workerId || owned.has(key) ||
          ExtendedSequenceNumber.isShardEnd(lease.checkpoint)
        ) return
        seen.set(key, { counter: lease.leaseCounter, since: now })
        const from = lease.checkpointOwner
        if (from !== undefined && from !== workerId) {
          incoming.set(key, { since: now, from })
          return
        }
        yield* take(lease, false)
      }), { concurrency: 8, discard: true }).pipe(Effect.ensuring(recordTakeCounts))
  })

  const leaderModeRound = (now: number) =>
    Effect.gen(function*() {
      if (election!.isLeader(now)) {
        if (!leaderCadence.due(now)) return yield* pollIncoming
        orphansInRound = 0
        leaderBusy = false
        roundAsLeader = true
        yield* Effect.ensuring(
          takeRound,
          Effect.sync(() => {
            roundAsLeader = false
          })
        )
        const after = yield* monotonicMillis
        const followUp = newLeader ? Math.min(followUpAt, after + expiryMillis) : followUpAt
        newLeader = false
        leaderCadence.done(after, 1, leaderBusy, followUp, yield* Random.next)
        return
      }
      if (now < nextLookupAt) return yield* pollIncoming
      yield* lookupRound
      nextLookupAt = (yield* monotonicMillis) + expiryMillis * (0.9 + 0.2 * (yield* Random.next))
    })

  const round = Effect.gen(function*() {
    const now = yield* monotonicMillis
    // Leader mode: the leader (after its first expiry, in which it takes toward its share as every
    // worker does: started together, the workers then hold leases and the leader knows them all as
    // owners; it would give itself every lease otherwise), and a worker that holds a lease or is
    // being handed one. One holding nothing takes toward its share itself, and so becomes an owner.
    if (
      election !== undefined &&
      (election.isLeader(now) ? now >= warmUntil : owned.size > 0 || incoming.size > 0)
    ) {
      return yield* leaderModeRound(now)
    }
    if (!cadence.due(now)) return yield* pollIncoming
    orphansInRound = 0
    yield* takeRound
    const busy = takenInRound + untakenInRound + orphansInRound > 0
    cadence.done(yield* monotonicMillis, seen.size, busy, followUpAt, yield* Random.next)
  })
  yield* round.pipe(
    Effect.matchEffect({ onFailure: roundFailed, onSuccess: () => roundSucceeded }),
    Effect.forever,
    Effect.forkScoped
  )
  yield* renewAll.pipe(
    Effect.delay(settings.renewInterval),
    Effect.forever,
    Effect.forkScoped
  )
  if (election !== undefined) yield* Effect.forkScoped(election.run)

  return {
    workerId,
    acquired,
    checkpoint,
    shardEnded,
    park,
    stopShard,
    unpark: (shardId) => {
      parked.delete(shardId)
    },
    held: () => [...owned.values()]
  } satisfies LeaseCoordinator
})
