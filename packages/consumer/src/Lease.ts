/**
 * A lease: the right of one worker to process one shard, and the shard's checkpoint. The shape
 * is the KCL lease table's (see `LeaseRepository`), so leases written by this library and by a
 * KCL 2.x worker are interchangeable.
 *
 * @since 0.1.0
 */
import { ExtendedSequenceNumber } from "@effect-kinesis/core"

/**
 * One lease.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * import type { Lease } from "@effect-kinesis/consumer"
 *
 * const fresh: Lease.Lease = {
 *   leaseKey: "shardId-000000000000",
 *   leaseOwner: undefined,
 *   leaseCounter: 0,
 *   checkpoint: ExtendedSequenceNumber.trimHorizon,
 *   pendingCheckpoint: undefined,
 *   ownerSwitchesSinceCheckpoint: 0,
 *   parentShardIds: [],
 *   childShardIds: [],
 *   hashKeyRange: undefined
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Lease {
  /** The shard id, e.g. `shardId-000000000042` (KCL: `leaseKey`). */
  readonly leaseKey: string
  /** The worker holding the lease; `undefined` when unowned (the KCL removes the attribute). */
  readonly leaseOwner: string | undefined
  /** Optimistic lock: every take, renew, checkpoint and release increments it. */
  readonly leaseCounter: number
  /** Processed up to and including this position (or a sentinel: where to start). */
  readonly checkpoint: ExtendedSequenceNumber.ExtendedSequenceNumber
  /** A two-phase checkpoint in progress (KCL `pendingCheckpoint`); kept, never written by us. */
  readonly pendingCheckpoint: ExtendedSequenceNumber.ExtendedSequenceNumber | undefined
  /** +1 on every change of owner, reset to 0 on checkpoint. */
  readonly ownerSwitchesSinceCheckpoint: number
  /** Parent shards (one after a split, two after a merge, none for an original shard). */
  readonly parentShardIds: ReadonlyArray<string>
  /** Children, written when the shard has been consumed to its end. */
  readonly childShardIds: ReadonlyArray<string>
  /** The shard's hash key range, as decimal strings. */
  readonly hashKeyRange: { readonly startingHashKey: string; readonly endingHashKey: string } | undefined
}

/**
 * Whether processing of the lease's shard has begun: its checkpoint is a record position or
 * `SHARD_END`, not a starting sentinel (`TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP`). A shard only
 * begins once all its parents were read to their end.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * import { Lease } from "@effect-kinesis/consumer"
 *
 * declare const lease: Lease.Lease
 * const resumed = Lease.hasStarted({ ...lease, checkpoint: ExtendedSequenceNumber.make("42") }) // true
 * ```
 *
 * @since 0.1.0
 * @category predicates
 */
export const hasStarted = (lease: Lease): boolean =>
  !ExtendedSequenceNumber.isSentinel(lease.checkpoint) || ExtendedSequenceNumber.isShardEnd(lease.checkpoint)

/**
 * Whether a lease may be deleted: its shard was read to its end (`SHARD_END`) and every child
 * shard's lease exists and {@link hasStarted}, so nothing will need this lease again. This is
 * the KCL's rule for cleaning up completed leases; the consumer applies it at every shard sync
 * (see `LeaseSettings.cleanupFinished`), and does not create a lease again for a closed shard
 * with a started descendant.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Lease, LeaseRepository } from "@effect-kinesis/consumer"
 *
 * const finished = Effect.gen(function*() {
 *   const leases = yield* (yield* LeaseRepository.LeaseRepository).list
 *   return leases.filter((lease) => Lease.isFinished(lease, leases))
 * })
 * ```
 *
 * @since 0.1.0
 * @category predicates
 */
export const isFinished = (lease: Lease, all: ReadonlyArray<Lease>): boolean => {
  if (!ExtendedSequenceNumber.isShardEnd(lease.checkpoint) || lease.childShardIds.length === 0) return false
  return lease.childShardIds.every((childKey) => {
    const child = all.find((l) => l.leaseKey === childKey)
    return child !== undefined && hasStarted(child)
  })
}
