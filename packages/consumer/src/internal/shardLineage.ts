/**
 * Shard parentage: which leases to create for the shards of a stream, where each starts, and
 * when a child shard may be processed (every parent consumed to its end).
 *
 * @internal
 */
import type { ChildShard, Shard } from "@aws-sdk/client-kinesis"
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import type { Lease } from "../Lease.ts"

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
 * With `LATEST` (or `AT_TIMESTAMP`), closed shards that have no lease yet are left out: reading a
 * parent from its latest record would end at once, and its children must not then be read from
 * their beginning as if the parent had been consumed. Their open descendants become roots.
 *
 * @internal
 */
export const fromShards = (
  shards: ReadonlyArray<Shard>,
  initialPosition: ExtendedSequenceNumber.ExtendedSequenceNumber,
  leaseKeys: ReadonlySet<string>
): Lineage => {
  const fromStart = initialPosition.sequenceNumber === ExtendedSequenceNumber.TRIM_HORIZON
  const considered = shards.filter((shard) =>
    fromStart || leaseKeys.has(shard.ShardId!) || shard.SequenceNumberRange?.EndingSequenceNumber === undefined
  )
  const existing = new Set(considered.map((shard) => shard.ShardId!))
  const leasesToCreate = considered
    .filter((shard) => !leaseKeys.has(shard.ShardId!))
    .map((shard) => {
      const parents = parentsOf(shard)
      const root = parents.every((parent) => !existing.has(parent) && !leaseKeys.has(parent))
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
 * A lease may be processed once each parent is checkpointed at `SHARD_END`, or no longer exists
 * (trimmed past retention, with no lease). A parent that exists without a lease is waited for:
 * its lease is about to be created.
 *
 * @internal
 */
export const parentsDone = (
  lease: Lease,
  leases: ReadonlyMap<string, Lease>,
  existingShards: ReadonlySet<string>
): boolean =>
  lease.parentShardIds.every((parent) => {
    const parentLease = leases.get(parent)
    if (parentLease !== undefined) return ExtendedSequenceNumber.isShardEnd(parentLease.checkpoint)
    return !existingShards.has(parent)
  })
