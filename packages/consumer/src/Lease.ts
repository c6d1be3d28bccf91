/**
 * A lease: the right of one worker to process one shard, and the shard's checkpoint. The shape
 * is the KCL lease table's (see `LeaseRepository`), so leases written by this library and by a
 * KCL 2.x worker are interchangeable.
 *
 * @since 0.1.0
 */
import type { ExtendedSequenceNumber } from "@effect-kinesis/core"
import * as internal from "./internal/finishedLeases.ts"

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
  /**
   * The shard id, e.g. `shardId-000000000042` (KCL: `leaseKey`); in a multi-stream table
   * (`MultiStream`), the stream identifier and the shard id, `account:streamName:creationEpoch:shardId`.
   */
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
  /**
   * Set while a graceful hand-off is under way (KCL 3.x `checkpointOwner`): the worker still
   * processing the shard, which checkpoints what it processed and then clears this, while
   * `leaseOwner` already names the worker the lease goes to. `undefined` (or absent) otherwise.
   */
  readonly checkpointOwner?: string | undefined
  /**
   * The data bytes per second its owner reads from the shard, in KB/s (1024 bytes), smoothed (KCL
   * 3.x `throughputKBps`). Written on renewal by owners balancing by throughput
   * (`ShardAssignment.byThroughput`) and by KCL 3.x workers; `undefined` (or absent) when none has.
   */
  readonly throughputKBps?: number | undefined
  /**
   * In a multi-stream application's table (see `MultiStream`): the stream the lease belongs to,
   * as the KCL serializes it (`account:streamName:creationEpoch`). The KCL's attribute keeps the
   * name `streamName` though it holds the whole identifier. Absent in a single-stream table.
   */
  readonly streamName?: string | undefined
  /** In a multi-stream application's table: the shard id alone (the lease key prefixes it with the stream). */
  readonly shardId?: string | undefined
}

/**
 * The worker processing the lease's shard now: the `checkpointOwner` during a hand-off, else the
 * `leaseOwner` (KCL 3.x `actualOwner`).
 *
 * @example
 * ```ts
 * import { Lease } from "@effect-kinesis/consumer"
 *
 * declare const lease: Lease.Lease
 * const processing = Lease.actualOwner({ ...lease, leaseOwner: "b", checkpointOwner: "a" }) // "a"
 * ```
 *
 * @since 0.2.0
 * @category getters
 */
export const actualOwner = (lease: Lease): string | undefined => lease.checkpointOwner ?? lease.leaseOwner

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
export const hasStarted: (lease: Lease) => boolean = internal.hasStarted

/**
 * Whether a lease may be deleted now. It is when all of these hold:
 *
 * - its shard was read to its end (`SHARD_END`) and its children are recorded;
 * - none of its parents has a lease: leases are deleted parents first, as the KCL does, since a
 *   parent's check needs its children's leases;
 * - every child has a lease (a child without one would be created as a root, from the initial
 *   position), or was consumed and its lease deleted first (a lease naming it as parent has
 *   started: tables an older cleanup left that way are cleaned too);
 * - at least one child {@link hasStarted} (or was consumed).
 *
 * The KCL waits for every child to start; here one is enough, so that a child that gets no record
 * for a long time does not keep its parent's lease, and through the parents-first order every
 * lease below it, for as long. The shard is never read again: a closed shard without a lease is
 * not leased again once a descendant has started, and a started descendant stays for good. A
 * child that has not started keeps its lease and is read from its beginning.
 *
 * The consumer applies this at every shard sync (see `LeaseSettings.cleanupFinished`). Pass the
 * leases as a `Map` by lease key when checking many: an array is indexed on every call.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Lease, LeaseRepository } from "@effect-kinesis/consumer"
 *
 * const finished = Effect.gen(function*() {
 *   const leases = yield* (yield* LeaseRepository.LeaseRepository).list
 *   const byKey = new Map(leases.map((lease) => [lease.leaseKey, lease]))
 *   return leases.filter((lease) => Lease.isFinished(lease, byKey))
 * })
 * ```
 *
 * @since 0.1.0
 * @category predicates
 */
export const isFinished = (lease: Lease, all: ReadonlyArray<Lease> | ReadonlyMap<string, Lease>): boolean => {
  const byKey = isMap(all) ? all : new Map(all.map((l) => [l.leaseKey, l]))
  return internal.isFinished(lease, byKey, internal.consumedByLeases(byKey.values()))
}

const isMap = (all: ReadonlyArray<Lease> | ReadonlyMap<string, Lease>): all is ReadonlyMap<string, Lease> =>
  !Array.isArray(all)
