/**
 * Which shards a worker tries to own. The default, {@link balanced}, spreads leases evenly over
 * the workers that share an application name; {@link manual} lets each worker say which shards it
 * may own (e.g. by a hash of the shard id), with the lease table still guaranteeing that a shard
 * is processed by one worker at a time.
 *
 * @since 0.1.0
 */

/**
 * Every worker aims at `ceil(leases / workers)` leases. It takes unowned and expired leases
 * first; when it is still short, it steals from the workers holding more than that, up to its
 * whole share in one round (at most `maxStealsPerRound`), so a new worker is at full speed after
 * one take round rather than one lease per round as in the KCL. Workers count only while they
 * hold an unexpired lease, so a worker that just died still counts; a lease that no worker below
 * its share took within a take interval is therefore taken by one at its share (one per round),
 * and one idle for three expiries regardless of the share, as in the KCL.
 *
 * @since 0.1.0
 * @category models
 */
export interface Balanced {
  readonly _tag: "Balanced"
  readonly maxStealsPerRound: number
}

/**
 * The worker owns only the shards `select` returns (among those it is offered: the shards that
 * are ready to be processed). It takes them when unowned or expired and never steals; leases it
 * holds that `select` no longer returns are released.
 *
 * @since 0.1.0
 * @category models
 */
export interface Manual {
  readonly _tag: "Manual"
  readonly select: (shardIds: ReadonlyArray<string>) => Iterable<string>
}

/**
 * A shard assignment strategy.
 *
 * @example
 * ```ts
 * import { ShardAssignment } from "@effect-kinesis/consumer"
 *
 * const strategy: ShardAssignment.ShardAssignment = ShardAssignment.balanced()
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type ShardAssignment = Balanced | Manual

/**
 * The balanced strategy (the default).
 *
 * @example
 * ```ts
 * import { ShardAssignment } from "@effect-kinesis/consumer"
 *
 * const gentle = ShardAssignment.balanced({ maxStealsPerRound: 1 })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const balanced = (options: {
  /** The most leases stolen in one take round. Default 64. */
  readonly maxStealsPerRound?: number | undefined
} = {}): ShardAssignment => ({ _tag: "Balanced", maxStealsPerRound: options.maxStealsPerRound ?? 64 })

/**
 * A user-defined assignment: the shards this worker may own.
 *
 * @example
 * ```ts
 * import { ShardAssignment } from "@effect-kinesis/consumer"
 *
 * // Worker 0 of 2 owns the even shards.
 * const evens = ShardAssignment.manual((shardIds) =>
 *   shardIds.filter((id) => Number(id.slice("shardId-".length)) % 2 === 0)
 * )
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const manual = (select: (shardIds: ReadonlyArray<string>) => Iterable<string>): ShardAssignment => ({
  _tag: "Manual",
  select
})
