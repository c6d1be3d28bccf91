/**
 * Balancing leases by measured throughput (`ShardAssignment.byThroughput`): each owner measures
 * the bytes per second it reads from each lease and writes them on renewal as the KCL 3.x
 * `throughputKBps` attribute; in a take round, the least loaded worker asks the busier ones to
 * hand leases over to it. There is no leader: each worker only ever pulls leases toward itself.
 *
 * Three rules keep leases from flapping. Nothing moves while every worker is within `tolerance`
 * of the mean. A move must leave the thief below its victim, or above it by at most the gap
 * before the move less `tolerance` × the mean: the move back would then need the opposite, so
 * measurements that wander by less than that margin do not send a lease back and forth. And a
 * lease whose owner changed less than `minMoveInterval` ago stays where it is.
 *
 * @internal
 */
import type { Lease } from "../Lease.ts"

/** The KCL's kilobyte (`LeaseStatsRecorder.BYTES_PER_KB`). */
const BYTES_PER_KB = 1024

/** The KCL's smoothing of a lease's throughput from one renewal to the next (`DEFAULT_ALPHA`). */
const ALPHA = 0.5

/** @internal */
export interface LeaseLoad {
  readonly leaseKey: string
  /** The worker the lease counts for: its `leaseOwner` (during a hand-off, the next owner). */
  readonly owner: string
  /** Its measured throughput; `undefined` when no owner has written one yet. */
  readonly throughputKBps: number | undefined
  /** Whether this worker may ask for it now (no hand-off under way, not moved recently…). */
  readonly movable: boolean
}

/** @internal */
export interface Decision {
  readonly self: string
  /** The live workers, `self` included. */
  readonly workers: Iterable<string>
  /** The leases held by those workers (others are orphans, taken apart from this). */
  readonly leases: ReadonlyArray<LeaseLoad>
  /** A fraction of the mean load; see `ShardAssignment.byThroughput`. */
  readonly tolerance: number
  readonly maxMoves: number
}

/**
 * The leases `self` should ask to be handed over, in order. Leases without a measurement count
 * at the mean of those with one (the KCL's leader does the same). Only the least loaded worker
 * (ties broken by worker id, so that all workers reading the same table agree on it) moves
 * anything, and only while some worker is more than `tolerance` from the mean: then it takes,
 * one at a time and while it stays the least loaded, the lease whose move leaves it at most
 * `gap - tolerance × mean` above the lease's owner (`gap` being how far below it was), preferring
 * moves that leave it below, then those that most reduce the variance of the loads. Every move lowers the sum of squared loads, so the
 * moves of a fleet whose loads stand still come to an end.
 *
 * @internal
 */
export const decide = (input: Decision): ReadonlyArray<string> => {
  const { leases, maxMoves, self, tolerance } = input
  const measured = leases.flatMap((l) => l.throughputKBps === undefined ? [] : [l.throughputKBps])
  const unmeasured = measured.length === 0 ? 0 : measured.reduce((a, b) => a + b, 0) / measured.length
  const loadOf = (lease: LeaseLoad) => lease.throughputKBps ?? unmeasured
  const loads = new Map<string, number>([[self, 0]])
  for (const worker of input.workers) loads.set(worker, 0)
  for (const lease of leases) {
    const load = loads.get(lease.owner)
    if (load !== undefined) loads.set(lease.owner, load + loadOf(lease))
  }
  let total = 0
  for (const load of loads.values()) total += load
  const mean = total / loads.size
  if (!(mean > 0)) return []
  const margin = tolerance * mean
  const candidates = leases.filter((l) => l.movable && l.owner !== self && loads.has(l.owner) && loadOf(l) > 0)
  const taken: Array<string> = []
  while (taken.length < maxMoves) {
    let least: string | undefined
    let most = Number.NEGATIVE_INFINITY
    for (const [worker, load] of loads) {
      const leastLoad = least === undefined ? Number.POSITIVE_INFINITY : loads.get(least)!
      if (load < leastLoad || (load === leastLoad && worker < least!)) least = worker
      if (load > most) most = load
    }
    const mine = loads.get(self)!
    if (least !== self) break
    if (most <= mean + margin && mine >= mean - margin) break
    let best: { readonly lease: LeaseLoad; readonly below: boolean; readonly gain: number } | undefined
    for (const lease of candidates) {
      if (taken.includes(lease.leaseKey)) continue
      const t = loadOf(lease)
      const gap = loads.get(lease.owner)! - mine
      // After the move this worker is `2t - gap` above the owner: at most `gap - margin`.
      if (2 * t - gap > gap - margin) continue
      // Moves that leave this worker below the owner first (else a second hot lease would be
      // preferred to the cold ones that even the loads out); then half the drop in the sum of
      // squared loads, t(gap - t).
      const below = 2 * t <= gap
      const gain = t * (gap - t)
      if (
        best === undefined || (below && !best.below) ||
        (below === best.below && (gain > best.gain || (gain === best.gain && lease.leaseKey < best.lease.leaseKey)))
      ) best = { lease, below, gain }
    }
    if (best === undefined) break
    const t = loadOf(best.lease)
    loads.set(best.lease.owner, loads.get(best.lease.owner)! - t)
    loads.set(self, mine + t)
    taken.push(best.lease.leaseKey)
  }
  return taken
}

/**
 * When each lease last changed owner, on this worker's clock, from the leases it lists: a lease
 * moved less than `minMoveMillis` ago is not moved again. A change counts when the lease goes
 * from one worker to another (a hand-off, a steal, a take-over after expiry), not when a free
 * lease is taken. Leases are movable when first seen: a worker that just started does not know
 * (their owners then call the hand-off off: they know when they took them).
 *
 * @internal
 */
export const moves = (minMoveMillis: number) => {
  const owners = new Map<string, { owner: string | undefined; movedAt: number }>()
  return {
    observe: (leases: ReadonlyArray<Lease>, now: number): void => {
      const listed = new Set<string>()
      for (const lease of leases) {
        listed.add(lease.leaseKey)
        const seen = owners.get(lease.leaseKey)
        if (seen === undefined) {
          owners.set(lease.leaseKey, { owner: lease.leaseOwner, movedAt: Number.NEGATIVE_INFINITY })
        } else if (seen.owner !== lease.leaseOwner) {
          if (seen.owner !== undefined && lease.leaseOwner !== undefined) seen.movedAt = now
          seen.owner = lease.leaseOwner
        }
      }
      for (const key of owners.keys()) if (!listed.has(key)) owners.delete(key)
    },
    movable: (leaseKey: string, now: number): boolean =>
      now - (owners.get(leaseKey)?.movedAt ?? Number.NEGATIVE_INFINITY) >= minMoveMillis,
    /** This worker asked for it: moved, whether or not its owner lets it go. */
    moved: (leaseKey: string, now: number): void => {
      const seen = owners.get(leaseKey)
      if (seen !== undefined) seen.movedAt = now
    }
  }
}

/**
 * The bytes per second read from a lease, as the KCL measures them: the data bytes of the
 * records handed on since the previous renewal over the time since, smoothed from renewal to
 * renewal (factor 0.5), in KB/s of 1024 bytes, six decimals. The first renewal after a take
 * starts from what the previous owner wrote, as the KCL does.
 *
 * @internal
 */
export interface Metered {
  readonly lease: Lease
  /** Bytes handed on since the last call; reset by `meter`. */
  fetchedBytes: number
}

/** @internal */
export const meter = () => {
  const state = new WeakMap<Metered, { at: number; kbps: number | undefined }>()
  return (owned: Metered, now: number): number | undefined => {
    const bytes = owned.fetchedBytes
    owned.fetchedBytes = 0
    const s = state.get(owned)
    if (s === undefined) {
      state.set(owned, { at: now, kbps: owned.lease.throughputKBps })
      return owned.lease.throughputKBps
    }
    const seconds = (now - s.at) / 1000
    if (seconds <= 0) return s.kbps
    const kbps = bytes / BYTES_PER_KB / seconds
    s.kbps = Math.round((s.kbps === undefined ? kbps : ALPHA * kbps + (1 - ALPHA) * s.kbps) * 1e6) / 1e6
    s.at = now
    return s.kbps
  }
}

/**
 * The leases the live workers hold, as `decide` takes them: a lease naming this worker counts
 * when it holds it or it is being handed to it (`mine`), one naming another live worker always.
 * Those of others are movable when no hand-off is under way and `may` allows.
 *
 * @internal
 */
export const held = (
  self: string,
  leases: ReadonlyArray<Lease>,
  live: ReadonlyMap<string, unknown>,
  mine: (lease: Lease) => boolean,
  may: (lease: Lease) => boolean
): Array<LeaseLoad> =>
  leases.flatMap((lease) => {
    const owner = lease.leaseOwner
    if (owner === undefined || (owner === self ? !mine(lease) : !live.has(owner))) return []
    return [{
      leaseKey: lease.leaseKey,
      owner,
      throughputKBps: lease.throughputKBps,
      movable: owner !== self && lease.checkpointOwner === undefined && may(lease)
    }]
  })
