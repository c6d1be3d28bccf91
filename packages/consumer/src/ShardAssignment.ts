/**
 * Which shards a worker tries to own. The default, {@link balanced}, spreads leases evenly over
 * the workers that share an application name; {@link byThroughput} spreads the bytes read
 * instead, so that no worker holds all the busy shards; {@link manual} lets each worker say which
 * shards it may own (e.g. by a hash of the shard id), with the lease table still guaranteeing that
 * a shard is processed by one worker at a time.
 *
 * @since 0.1.0
 */
import type { Duration } from "effect"

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
  /** Set by {@link byThroughput}: leases move by measured throughput rather than by count. */
  readonly throughput?: ThroughputBalance | undefined
}

/**
 * The settings of {@link byThroughput}.
 *
 * @example
 * ```ts
 * import type { ShardAssignment } from "@effect-kinesis/consumer"
 *
 * const settings: ShardAssignment.ThroughputBalance = { tolerance: 0.1, minMoveInterval: "5 minutes" }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface ThroughputBalance {
  /**
   * How far, as a fraction of the mean, a worker's throughput may be from the mean before leases
   * move; also the least, as a fraction of the mean, by which a move must narrow the gap between
   * the two workers it moves a lease between.
   */
  readonly tolerance: number
  /** The least time between two moves of one lease. */
  readonly minMoveInterval: Duration.Input
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
 * Balancing by load: each worker measures the data bytes per second it reads from each of its
 * leases and writes them to the lease on renewal (the `throughputKBps` attribute of KCL 3.x, in
 * KB/s, measured and smoothed as the KCL does), and leases move so that the workers' throughputs
 * are close to their mean, not so that they hold as many leases. Every worker of the application
 * should use it: a worker balancing by count would steal leases back toward its count.
 *
 * In a take round (every `lease.takeInterval`), when some worker is more than `tolerance` from
 * the mean, the least loaded worker asks the busier ones to hand over the leases that bring the
 * loads closest together, up to `maxStealsPerRound`, while it stays the least loaded. The moves
 * go through the graceful hand-off, as steals toward a count do: the owner finishes what it is
 * processing, checkpoints and lets go, and nothing is processed twice. Leases without a
 * measurement (no owner wrote one yet) count at the mean of the others; unowned and expired
 * leases are taken toward an even count first, then balanced by throughput.
 *
 * Damping: a move may leave the worker that asks above the lease's owner by no more than the gap
 * between them less `tolerance` × the mean, so the move back is never one and loads that are
 * close (or noisy) do not trade leases; and a lease that changed owner less than
 * `minMoveInterval` ago is not moved (its owner calls off a hand-off asked for sooner, by a worker
 * that just started and cannot know). Workers that join within `minMoveInterval` of each other
 * may therefore wait up to that long for their share of the busiest leases.
 *
 * The measured throughput is written for KCL 3.x workers sharing the table too; a hand-off their
 * leader starts is called off within `minMoveInterval` of the lease's last move, like any other.
 *
 * @example
 * ```ts
 * import { Consumer, ShardAssignment } from "@effect-kinesis/consumer"
 *
 * const options: Partial<Consumer.ConsumeWithOptions<string, never, never>> = {
 *   // within 10 % of the mean; a lease moves at most once in 5 minutes
 *   shardAssignment: ShardAssignment.byThroughput({ tolerance: 0.1, minMoveInterval: "5 minutes" })
 * }
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const byThroughput = (options: {
  /** See {@link ThroughputBalance}. Default 0.1 (the KCL's `reBalanceThresholdPercentage` of 10). */
  readonly tolerance?: number | undefined
  /** See {@link ThroughputBalance}. Default 5 minutes. */
  readonly minMoveInterval?: Duration.Input | undefined
  /** The most leases asked for in one take round. Default 64. */
  readonly maxStealsPerRound?: number | undefined
} = {}): ShardAssignment => ({
  _tag: "Balanced",
  maxStealsPerRound: options.maxStealsPerRound ?? 64,
  throughput: { tolerance: options.tolerance ?? 0.1, minMoveInterval: options.minMoveInterval ?? "5 minutes" }
})

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
