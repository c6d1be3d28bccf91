/**
 * The leader's assignment decision (leader-based assignment, see docs/design/leader-assignment.md):
 * from one read of the lease table, which leases the leader gives to which live worker. Pure: the
 * caller reads the table, judges expiry on its own clock, tracks when each lease last moved, and
 * performs the writes (a take on the worker's behalf, or a hand-off through `checkpointOwner`),
 * each conditional on the counter it read, so a stale decision only costs a refused write.
 *
 * Two kinds of move, as the KCL 3.x `LeaseAssignmentManager` makes them: orphans (unowned, or whose
 * counter stood still for the expiry) go to the least loaded live worker at once; leases held by a
 * live worker move only to even the load out, by hand-off, at most `maxMoves` per round, never one
 * that moved less than `minMoveMillis` ago or whose hand-off is under way.
 *
 * @internal
 */
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import type { Lease } from "../Lease.ts"
import * as ShardLineage from "./shardLineage.ts"
import * as ThroughputBalance from "./throughputBalance.ts"

/** @internal */
export type Balance =
  | { readonly _tag: "count" }
  | { readonly _tag: "throughput"; readonly tolerance: number }

/** @internal */
export interface Input {
  /** Every lease of the table, as the leader read it; orphans are handed out in this order. */
  readonly leases: ReadonlyArray<Lease>
  /**
   * The workers that may receive leases: those whose heartbeat the leader saw change within its
   * expiry, the leader included. Owners of unexpired leases outside it keep what they hold and get
   * nothing more (a worker stopping, or one whose heartbeat is late).
   */
  readonly workers: ReadonlySet<string>
  /** Whether the lease's counter has stood still for the expiry, on the leader's clock. */
  readonly expired: (lease: Lease) => boolean
  /** Shards that exist (see `ShardLineage.parentsDone`): a child waits for such parents. */
  readonly existingShards: ReadonlySet<string>
  /** When the lease last changed owner, on the leader's clock; `undefined` when not known to have. */
  readonly lastMovedAt: (leaseKey: string) => number | undefined
  readonly now: number
  readonly minMoveMillis: number
  readonly balance: Balance
  /** At most this many orphans are given out per round. */
  readonly maxTakes: number
  /** At most this many hand-offs per round. */
  readonly maxMoves: number
}

/** @internal */
export interface Move {
  readonly lease: Lease
  readonly to: string
}

/** @internal */
export interface Assignment {
  /** Orphans, taken for `to` (conditional on the counter read). */
  readonly takes: ReadonlyArray<Move>
  /** Held leases, handed over to `to` by their owner (`leaseOwner` = `to`, `checkpointOwner` = the owner). */
  readonly handOffs: ReadonlyArray<Move>
}

/**
 * Leases that may be processed now: not consumed to their end, every parent done.
 *
 * @internal
 */
export const readyLeases = (leases: ReadonlyArray<Lease>, existingShards: ReadonlySet<string>): Array<Lease> => {
  const byKey = new Map(leases.map((lease) => [lease.leaseKey, lease]))
  return leases.filter((lease) =>
    !ExtendedSequenceNumber.isShardEnd(lease.checkpoint) && ShardLineage.parentsDone(lease, byKey, existingShards)
  )
}

/**
 * The takes and hand-offs of one round. Orphans first: each goes to the worker with the least
 * load counting the orphans given out before it (ties by worker id), a lease counting as 1 by
 * count and as its `throughputKBps` by throughput (the mean of the measured ones when it has
 * none; 1 when none is measured, so that throughput then evens the counts out within the
 * tolerance). Then the balancing, over the loads as they will be after the takes:
 *
 * - by count, a lease moves from the most loaded worker to the least loaded one while they differ
 *   by two or more, which ends with every worker within one of the others once enough leases may
 *   move; nothing moves while they are within one;
 * - by throughput, `ThroughputBalance.decide` runs for the least loaded worker, its moves are
 *   applied, and again, so the leader makes the moves the workers would each have asked for, with
 *   the same tolerance and the same rule that a move never reverses the roles of the two workers.
 *
 * A lease moves at most once per round; a lease given out by this round does not move in it.
 *
 * @internal
 */
export const decide = (input: Input): Assignment => {
  const { balance, now, workers } = input
  if (workers.size === 0) return { takes: [], handOffs: [] }
  const ready = readyLeases(input.leases, input.existingShards)
  const measured = ready.flatMap((l) => l.throughputKBps === undefined ? [] : [l.throughputKBps])
  const mean = measured.length === 0 ? 1 : measured.reduce((a, b) => a + b, 0) / measured.length
  const weight = (lease: Lease) => balance._tag === "count" ? 1 : lease.throughputKBps ?? (mean > 0 ? mean : 1)

  // Who each lease counts for: its `leaseOwner` (during a hand-off, the next owner) while unexpired.
  const holder = new Map<string, string>()
  const loads = new Map<string, number>([...workers].sort().map((w) => [w, 0]))
  const orphans: Array<Lease> = []
  for (const lease of ready) {
    const owner = lease.leaseOwner
    if (owner === undefined || input.expired(lease)) {
      orphans.push(lease)
      continue
    }
    holder.set(lease.leaseKey, owner)
    const load = loads.get(owner)
    if (load !== undefined) loads.set(owner, load + weight(lease))
  }

  const least = () => {
    let best: string | undefined
    for (const [worker, load] of loads) {
      if (best === undefined || load < loads.get(best)!) best = worker
    }
    return best!
  }

  const takes: Array<Move> = []
  const given = new Set<string>()
  for (const lease of orphans) {
    if (takes.length >= input.maxTakes) break
    const to = least()
    takes.push({ lease, to })
    given.add(lease.leaseKey)
    holder.set(lease.leaseKey, to)
    loads.set(to, loads.get(to)! + weight(lease))
  }

  const movable = (lease: Lease) => {
    if (given.has(lease.leaseKey) || lease.checkpointOwner !== undefined) return false
    const owner = holder.get(lease.leaseKey)
    if (owner === undefined || !loads.has(owner)) return false
    const movedAt = input.lastMovedAt(lease.leaseKey)
    return movedAt === undefined || now - movedAt >= input.minMoveMillis
  }
  const handOffs: Array<Move> = []
  const move = (lease: Lease, to: string) => {
    const from = holder.get(lease.leaseKey)!
    handOffs.push({ lease, to })
    given.add(lease.leaseKey)
    holder.set(lease.leaseKey, to)
    loads.set(from, loads.get(from)! - weight(lease))
    loads.set(to, loads.get(to)! + weight(lease))
  }

  if (balance._tag === "count") {
    const byWorker = new Map<string, Array<Lease>>()
    for (const lease of ready) {
      if (!movable(lease)) continue
      const owner = holder.get(lease.leaseKey)!
      const list = byWorker.get(owner)
      if (list === undefined) byWorker.set(owner, [lease])
      else list.push(lease)
    }
    // The least recently moved first (never moved counts as longest ago), then by key.
    const order = (a: Lease, b: Lease) =>
      (input.lastMovedAt(a.leaseKey) ?? Number.NEGATIVE_INFINITY) -
        (input.lastMovedAt(b.leaseKey) ?? Number.NEGATIVE_INFINITY) || (a.leaseKey < b.leaseKey ? -1 : 1)
    for (const list of byWorker.values()) list.sort(order).reverse()
    while (handOffs.length < input.maxMoves) {
      const to = least()
      // The most loaded worker that still has a lease it may give, two or more above `to`.
      let from: string | undefined
      for (const [worker, load] of loads) {
        if (load < loads.get(to)! + 2 || (byWorker.get(worker)?.length ?? 0) === 0) continue
        if (from === undefined || load > loads.get(from)!) from = worker
      }
      if (from === undefined) break
      move(byWorker.get(from)!.pop()!, to)
    }
  } else {
    const byKey = new Map(ready.map((lease) => [lease.leaseKey, lease]))
    const loadsOf = () =>
      ready.flatMap((lease): Array<ThroughputBalance.LeaseLoad> => {
        const owner = holder.get(lease.leaseKey)
        return owner === undefined || !loads.has(owner) ? [] : [{
          leaseKey: lease.leaseKey,
          owner,
          throughputKBps: weight(lease),
          movable: movable(lease)
        }]
      })
    let progress = true
    while (progress && handOffs.length < input.maxMoves) {
      progress = false
      // `decide` moves leases only for the least loaded worker (its own tie-break): ask each.
      for (const self of loads.keys()) {
        const keys = ThroughputBalance.decide({
          self,
          workers: loads.keys(),
          leases: loadsOf(),
          tolerance: balance.tolerance,
          maxMoves: input.maxMoves - handOffs.length
        })
        if (keys.length === 0) continue
        for (const key of keys) move(byKey.get(key)!, self)
        progress = true
        break
      }
    }
  }
  return { takes, handOffs }
}
