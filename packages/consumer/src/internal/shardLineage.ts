/**
 * Shard parentage: which leases to create for the shards of a stream, where each starts, and
 * when a child shard may be processed (every parent consumed to its end).
 *
 * @internal
 */
import type { ChildShard, Shard, ShardFilter } from "@aws-sdk/client-kinesis"
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import type { Lease } from "../Lease.ts"
import { hasStarted } from "./finishedLeases.ts"

const newLease = (
  leaseKey: string,
  checkpoint: ExtendedSequenceNumber.ExtendedSequenceNumber,
  parentShardIds: ReadonlyArray<string>,
  range: { readonly StartingHashKey?: string | undefined; readonly EndingHashKey?: string | undefined } | undefined
): Lease => ({
  leaseKey,
  leaseOwner: undefined,
  leaseCounter: 0,
  checkpoint,
  pendingCheckpoint: undefined,
  ownerSwitchesSinceCheckpoint: 0,
  parentShardIds,
  childShardIds: [],
  hashKeyRange: range?.StartingHashKey !== undefined && range.EndingHashKey !== undefined
    ? { startingHashKey: range.StartingHashKey, endingHashKey: range.EndingHashKey }
    : undefined
})

/**
 * The lease of a child shard reported by `GetRecords` at its parent's end. Children always start
 * at `TRIM_HORIZON`: everything written to them comes after their parents' records.
 *
 * @internal
 */
export const childLease = (child: ChildShard): Lease =>
  newLease(child.ShardId!, ExtendedSequenceNumber.trimHorizon, child.ParentShards ?? [], child.HashKeyRange)

const parentsOf = (shard: Shard): Array<string> =>
  [shard.ParentShardId, shard.AdjacentParentShardId].filter((id): id is string => id !== undefined)

/** @internal */
export interface Lineage {
  /** Shards that count as existing: a parent outside this set and without a lease is gone. */
  readonly existing: ReadonlySet<string>
  /** Leases for existing shards that have none yet. */
  readonly leasesToCreate: ReadonlyArray<Lease>
}

/**
 * Closed shards that have no lease while a descendant's lease has started: read to their end
 * before that descendant began, their lease since deleted as finished. Neither the lineage nor the
 * lease cleanup may count them as still to be read.
 *
 * @internal
 */
export const consumedShards = (
  shards: ReadonlyArray<Shard>,
  leases: ReadonlyMap<string, Lease>
): ReadonlySet<string> => {
  const children = new Map<string, Array<string>>()
  for (const shard of shards) {
    for (const parent of parentsOf(shard)) {
      const list = children.get(parent)
      if (list === undefined) children.set(parent, [shard.ShardId!])
      else list.push(shard.ShardId!)
    }
  }
  const started = (shardId: string) => {
    const lease = leases.get(shardId)
    return lease !== undefined && hasStarted(lease)
  }
  // Whether a descendant has started, children before parents over the shard graph (a DAG),
  // without recursion: a stream resharded for years has long chains.
  const startedBelow = new Map<string, boolean>()
  for (const shard of shards) {
    const stack = [shard.ShardId!]
    while (stack.length > 0) {
      const id = stack[stack.length - 1]!
      if (startedBelow.has(id)) {
        stack.pop()
        continue
      }
      const kids = children.get(id) ?? []
      const pending = kids.filter((kid) => !startedBelow.has(kid))
      if (pending.length > 0) {
        stack.push(...pending)
        continue
      }
      startedBelow.set(id, kids.some((kid) => started(kid) || startedBelow.get(kid) === true))
      stack.pop()
    }
  }
  const consumed = new Set<string>()
  for (const shard of shards) {
    const id = shard.ShardId!
    if (!leases.has(id) && shard.SequenceNumberRange?.EndingSequenceNumber !== undefined && startedBelow.get(id)) {
      consumed.add(id)
    }
  }
  return consumed
}

/**
 * Which shards `fromShards` must be given for a starting position: with `AT_TIMESTAMP`, those
 * Kinesis lists `FROM_TIMESTAMP` (open at the timestamp or opened since, so every shard that can
 * hold a record written after it, and none that closed before it); otherwise every shard.
 *
 * @internal
 */
export const shardFilter = (
  initialPosition: ExtendedSequenceNumber.ExtendedSequenceNumber,
  timestamp: Date | undefined
): ShardFilter | undefined =>
  initialPosition.sequenceNumber === ExtendedSequenceNumber.AT_TIMESTAMP && timestamp !== undefined
    ? { Type: "FROM_TIMESTAMP", Timestamp: timestamp }
    : undefined

/**
 * Whether a listing made with {@link shardFilter} misses a leased shard: one that closed before the
 * timestamp (a lease from a run with an earlier one). Shards below it that closed before the
 * timestamp too are missing as well, though its lineage continues through them: see
 * {@link withLeasedLineage}.
 *
 * @internal
 */
export const missesLeased = (listed: ReadonlyArray<Shard>, leases: ReadonlyMap<string, Lease>): boolean => {
  if (leases.size === 0) return false
  const ids = new Set(listed.map((shard) => shard.ShardId!))
  for (const key of leases.keys()) if (!ids.has(key)) return true
  return false
}

/**
 * `listed` plus the shards of `all` (an unfiltered listing) that it misses and that a lease's
 * lineage reaches: the leased ones, and closed ones without a lease below them. Leases continue
 * their lineage whatever the starting position; it only places the shards no lease reaches.
 *
 * @internal
 */
export const withLeasedLineage = (
  listed: ReadonlyArray<Shard>,
  all: ReadonlyArray<Shard>,
  leases: ReadonlyMap<string, Lease>
): ReadonlyArray<Shard> => {
  const ids = new Set(listed.map((shard) => shard.ShardId!))
  const children = new Map<string, Array<Shard>>()
  for (const shard of all) {
    for (const parent of parentsOf(shard)) {
      const list = children.get(parent)
      if (list === undefined) children.set(parent, [shard])
      else list.push(shard)
    }
  }
  const added: Array<Shard> = []
  const queue: Array<Shard> = all.filter((shard) => leases.has(shard.ShardId!))
  while (queue.length > 0) {
    const shard = queue.shift()!
    const id = shard.ShardId!
    if (ids.has(id)) continue
    ids.add(id)
    added.push(shard)
    for (const child of children.get(id) ?? []) {
      const closedWithoutLease = !leases.has(child.ShardId!) &&
        child.SequenceNumberRange?.EndingSequenceNumber !== undefined
      if (closedWithoutLease) queue.push(child)
    }
  }
  return added.length === 0 ? listed : [...added, ...listed]
}

/**
 * With `LATEST`, closed shards that have no lease yet are left out: reading a parent from its
 * latest record would end at once, and its children must not then be read from their beginning
 * as if the parent had been consumed. Their open descendants become roots.
 *
 * Except below a lease: a closed shard without one whose parent has a lease, or is itself leased
 * in this pass, continues that lineage and is leased at `TRIM_HORIZON` (as `childLease` would at
 * the parent's end). A worker killed between the parent's `SHARD_END` and creating the children's
 * leases, or a parent read slower than its children reshard, leaves such a shard; left out, its
 * open children would start at `LATEST` and lose its records and theirs.
 *
 * With `TRIM_HORIZON` and `AT_TIMESTAMP` closed shards are leased too, parents before children,
 * so that nothing after the starting position is skipped. With `AT_TIMESTAMP`, `shards` are the
 * ones listed with {@link shardFilter} (and {@link withLeasedLineage}): a shard without a listed
 * parent was open at the timestamp and starts there (a closed one may hold records after it); the
 * others began after it and start at `TRIM_HORIZON`, like every child.
 *
 * A closed shard without a lease is also left out when a descendant's lease has started: the
 * shard was consumed and its lease deleted as finished (`Lease.isFinished`). Creating it again
 * would read the shard a second time. A descendant that has a lease but has not started does not
 * count: it waits for its parents, so a parent whose lease creation failed is still created.
 *
 * @internal
 */
export const fromShards = (
  shards: ReadonlyArray<Shard>,
  initialPosition: ExtendedSequenceNumber.ExtendedSequenceNumber,
  leases: ReadonlyMap<string, Lease>
): Lineage => {
  const withClosed = initialPosition.sequenceNumber !== ExtendedSequenceNumber.LATEST
  const consumed = consumedShards(shards, leases)
  const byId = new Map(shards.map((shard) => [shard.ShardId!, shard]))
  const isClosedWithoutLease = (id: string) =>
    !leases.has(id) && byId.get(id)?.SequenceNumberRange?.EndingSequenceNumber !== undefined
  // Whether a closed shard without a lease descends from a lease through such shards only, parents
  // before children over the shard graph, without recursion (lineages can be long).
  const belowLease = new Map<string, boolean>()
  const isBelowLease = (start: string): boolean => {
    const stack = [start]
    while (stack.length > 0) {
      const id = stack[stack.length - 1]!
      if (belowLease.has(id)) {
        stack.pop()
        continue
      }
      const parents = parentsOf(byId.get(id)!)
      const pending = parents.filter((parent) => isClosedWithoutLease(parent) && !belowLease.has(parent))
      if (pending.length > 0) {
        stack.push(...pending)
        continue
      }
      belowLease.set(
        id,
        !consumed.has(id) &&
          parents.some((parent) => leases.has(parent) || (isClosedWithoutLease(parent) && belowLease.get(parent)))
      )
      stack.pop()
    }
    return belowLease.get(start)!
  }
  const considered = shards.filter((shard) => {
    const id = shard.ShardId!
    if (leases.has(id) || shard.SequenceNumberRange?.EndingSequenceNumber === undefined) return true
    if (consumed.has(id)) return false
    return withClosed || isBelowLease(id)
  })
  const existing = new Set(considered.map((shard) => shard.ShardId!))
  const leasesToCreate = considered
    .filter((shard) => !leases.has(shard.ShardId!))
    .map((shard) => {
      const parents = parentsOf(shard)
      const root = parents.every((parent) => !existing.has(parent) && !leases.has(parent))
      return newLease(
        shard.ShardId!,
        root ? initialPosition : ExtendedSequenceNumber.trimHorizon,
        parents,
        shard.HashKeyRange
      )
    })
  return { existing, leasesToCreate }
}

/**
 * `leases` (to be created) in waves: each lease in a wave after those of its parents among them,
 * so that creating a wave at a time never makes a child's lease before its parent's (a reader
 * would start the child, and the lineage then count the parent as read). Within a wave, the order
 * of `leases`.
 *
 * @internal
 */
export const creationWaves = (leases: ReadonlyArray<Lease>): Array<Array<Lease>> => {
  const byKey = new Map(leases.map((lease) => [lease.leaseKey, lease]))
  const depth = new Map<string, number>()
  const depthOf = (lease: Lease): number => {
    let d = depth.get(lease.leaseKey)
    if (d !== undefined) return d
    d = 0
    for (const parentId of lease.parentShardIds) {
      const parent = byKey.get(parentId)
      if (parent !== undefined) d = Math.max(d, depthOf(parent) + 1)
    }
    depth.set(lease.leaseKey, d)
    return d
  }
  const waves: Array<Array<Lease>> = []
  for (const lease of leases) (waves[depthOf(lease)] ??= []).push(lease)
  // Depths are consecutive (a lease at depth d has a parent at d - 1): no wave is empty.
  return waves
}

/**
 * A lease may be processed once each parent is checkpointed at `SHARD_END`, or no longer exists
 * (trimmed past retention, with no lease). A parent that exists without a lease is waited for:
 * its lease is about to be created. A lease that has started had its parents done already (their
 * leases may since have been deleted as finished).
 *
 * @internal
 */
export const parentsDone = (
  lease: Lease,
  leases: ReadonlyMap<string, Lease>,
  existingShards: ReadonlySet<string>
): boolean =>
  hasStarted(lease) || lease.parentShardIds.every((parent) => {
    const parentLease = leases.get(parent)
    if (parentLease !== undefined) return ExtendedSequenceNumber.isShardEnd(parentLease.checkpoint)
    return !existingShards.has(parent)
  })
