/**
 * Which leases are finished and may be deleted, and deleting them parents first.
 *
 * @internal
 */
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import { Effect } from "effect"
import type { Lease } from "../Lease.ts"
import type { LeaseRepository, LeaseStoreError } from "../LeaseRepository.ts"

/** @internal */
export const hasStarted = (lease: Lease): boolean =>
  !ExtendedSequenceNumber.isSentinel(lease.checkpoint) || ExtendedSequenceNumber.isShardEnd(lease.checkpoint)

/**
 * Whether a shard without a lease was consumed, judged from the leases alone: a lease naming it
 * as parent has started, which it only does once its parents were read to their end. Computed
 * once per set of leases, and only when a child's lease is missing.
 *
 * @internal
 */
export const consumedByLeases = (leases: Iterable<Lease>): (shardId: string) => boolean => {
  let named: Set<string> | undefined
  return (shardId) => {
    if (named === undefined) {
      named = new Set()
      for (const lease of leases) {
        if (hasStarted(lease)) { for (const parent of lease.parentShardIds) named.add(parent) }
      }
    }
    return named.has(shardId)
  }
}

/**
 * The deletion rule; see `Lease.isFinished`. `consumed` tells whether a child shard that has no
 * lease was consumed (its lease deleted as finished before this one, as an older cleanup did).
 *
 * A lease whose children have not all started is deleted as soon as one of them has (the KCL
 * waits for all): a child that gets no record for a long time would otherwise keep its parent's
 * lease, and through the parents-first order every lease below that parent, for as long. This is
 * safe because the parent can never be leased again: a closed shard without a lease is left out
 * of the lineage once a descendant has started (`ShardLineage.consumedShards`), a started lease
 * is only ever deleted once one of its own children has started, so a started descendant stays
 * for good. The unstarted child keeps its lease (required here: a child without one would be
 * created with the initial position, as a root) and, its parent gone, is read from its beginning.
 *
 * @internal
 */
export const isFinished = (
  lease: Lease,
  leases: ReadonlyMap<string, Lease>,
  consumed: (shardId: string) => boolean
): boolean => {
  if (!ExtendedSequenceNumber.isShardEnd(lease.checkpoint) || lease.childShardIds.length === 0) return false
  // Parents first, as the KCL: a parent's rule needs its children's leases, so a child deleted
  // before it would keep the parent forever.
  if (lease.parentShardIds.some((parent) => leases.has(parent))) return false
  let underWay = false
  for (const childKey of lease.childShardIds) {
    const child = leases.get(childKey)
    if (child === undefined) {
      if (!consumed(childKey)) return false
      underWay = true
    } else if (hasStarted(child)) {
      underWay = true
    }
  }
  return underWay
}

/**
 * Deletes the finished leases among `leases`, parents before children: a lease whose parent is
 * deleted in this pass is considered again after it. Each delete is conditional on the counter
 * the lease was listed with; one that changed meanwhile stays, and so do its descendants, until
 * the next pass. `onDeleted` runs after each delete, so that a store error later in the pass does
 * not hide the deletes made before it.
 *
 * @internal
 */
export const deleteFinished = (
  repository: LeaseRepository["Service"],
  leases: ReadonlyArray<Lease>,
  consumedShard: (shardId: string) => boolean = () => false,
  onDeleted: (shardId: string) => Effect.Effect<void> = () => Effect.void
): Effect.Effect<ReadonlyArray<string>, LeaseStoreError> =>
  Effect.gen(function*() {
    const byKey = new Map(leases.map((lease) => [lease.leaseKey, lease]))
    const byLeases = consumedByLeases(leases)
    const consumed = (shardId: string) => consumedShard(shardId) || byLeases(shardId)
    const deleted: Array<string> = []
    let candidates = leases.filter((lease) => ExtendedSequenceNumber.isShardEnd(lease.checkpoint))
    let progress = true
    while (progress) {
      progress = false
      const waiting: Array<Lease> = []
      for (const lease of candidates) {
        if (!isFinished(lease, byKey, consumed)) {
          waiting.push(lease)
          continue
        }
        const outcome = yield* Effect.result(repository.delete(lease))
        if (outcome._tag === "Success") {
          deleted.push(lease.leaseKey)
          byKey.delete(lease.leaseKey)
          progress = true
          yield* onDeleted(lease.leaseKey)
        } else if (outcome.failure._tag === "LeaseStoreError") {
          return yield* Effect.fail(outcome.failure)
        }
      }
      candidates = waiting
    }
    return deleted
  })
