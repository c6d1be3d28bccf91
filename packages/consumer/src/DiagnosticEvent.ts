/**
 * What happens inside a consumer, as a closed set of events. The consumer passes every event to
 * the `onDiagnostic` callback of its options and records it in Effect metrics (see
 * {@link metrics}), so logs, dashboards and tests all read the same facts.
 *
 * @since 0.1.0
 */
import type { ExtendedSequenceNumber } from "@effect-kinesis/core"
import { Effect, Metric } from "effect"

/**
 * A `GetRecords` call (or one enhanced fan-out event) returned.
 *
 * @since 0.1.0
 * @category models
 */
export interface PollComplete {
  readonly _tag: "PollComplete"
  readonly workerId: string
  readonly shardId: string
  /** Kinesis records in the response (an aggregate counts once). */
  readonly records: number
  readonly millisBehindLatest: number | undefined
}

/**
 * This worker took the lease of a shard and will start processing it at `checkpoint`.
 *
 * @since 0.1.0
 * @category models
 */
export interface LeaseAcquired {
  readonly _tag: "LeaseAcquired"
  readonly workerId: string
  readonly shardId: string
  readonly checkpoint: ExtendedSequenceNumber.ExtendedSequenceNumber
  /** The previous owner when the lease was stolen or taken after expiry. */
  readonly previousOwner: string | undefined
}

/**
 * A lease was renewed.
 *
 * @since 0.1.0
 * @category models
 */
export interface LeaseRenewed {
  readonly _tag: "LeaseRenewed"
  readonly workerId: string
  readonly shardId: string
}

/**
 * This worker lost a lease: another worker took it (`"taken"`), or it was not renewed within the
 * expiry time (`"expired"`, self-fencing).
 *
 * @since 0.1.0
 * @category models
 */
export interface LeaseLost {
  readonly _tag: "LeaseLost"
  readonly workerId: string
  readonly shardId: string
  readonly reason: "taken" | "expired"
}

/**
 * This worker gave a lease up (shutdown, shard stream ended, or no longer assigned to it).
 *
 * @since 0.1.0
 * @category models
 */
export interface LeaseReleased {
  readonly _tag: "LeaseReleased"
  readonly workerId: string
  readonly shardId: string
}

/**
 * A checkpoint was written.
 *
 * @since 0.1.0
 * @category models
 */
export interface Checkpoint {
  readonly _tag: "Checkpoint"
  readonly workerId: string
  readonly shardId: string
  readonly checkpoint: ExtendedSequenceNumber.ExtendedSequenceNumber
}

/**
 * A shard was consumed to its end and checkpointed `SHARD_END`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ShardEnded {
  readonly _tag: "ShardEnded"
  readonly workerId: string
  readonly shardId: string
  readonly childShardIds: ReadonlyArray<string>
}

/**
 * An aggregated (KPL) record was dropped, all its user records with it, because one of them
 * hashes outside the shard's hash key range — as the KCL does. A KPL-compatible producer re-sends
 * the user records of an aggregate that reached another shard than it predicted (after a split),
 * so delivering it would duplicate them. Dropped records count as processed for checkpoints.
 *
 * @since 0.1.0
 * @category models
 */
export interface AggregateDropped {
  readonly _tag: "AggregateDropped"
  readonly workerId: string
  readonly shardId: string
  readonly sequenceNumber: string
  readonly userRecords: number
}

/**
 * A record looked like a KPL aggregate (magic and MD5 matched) but its contents are not a valid
 * aggregate: it was delivered as one plain record with its whole data, as the KCL does.
 *
 * @since 0.1.0
 * @category models
 */
export interface AggregateMalformed {
  readonly _tag: "AggregateMalformed"
  readonly workerId: string
  readonly shardId: string
  readonly sequenceNumber: string
  /** Why the aggregate could not be read. */
  readonly reason: string
}

/**
 * `ShardStream.records` met a record the deserializer rejects, and skipped it (it counts as
 * processed for checkpoints) or failed, per the `onDecodeFailure` option.
 *
 * @since 0.1.0
 * @category models
 */
export interface RecordUndecodable {
  readonly _tag: "RecordUndecodable"
  readonly workerId: string
  readonly shardId: string
  readonly sequenceNumber: string
  readonly subSequenceNumber: number
  /** The deserializer's message. */
  readonly reason: string
  readonly action: "skipped" | "failed"
}

/**
 * A shard without a lease was found, and a lease created for it.
 *
 * @since 0.1.0
 * @category models
 */
export interface NewShardDetected {
  readonly _tag: "NewShardDetected"
  readonly workerId: string
  readonly shardId: string
  readonly parentShardIds: ReadonlyArray<string>
}

/**
 * The lease of a shard read to its end was deleted, its parents' leases gone and a child
 * started (`Lease.isFinished`; setting `lease.cleanupFinished`).
 *
 * @since 0.1.0
 * @category models
 */
export interface LeaseDeleted {
  readonly _tag: "LeaseDeleted"
  readonly workerId: string
  readonly shardId: string
}

/**
 * Another worker appeared in the lease table (it owns an unexpired lease).
 *
 * @since 0.1.0
 * @category models
 */
export interface WorkerJoined {
  readonly _tag: "WorkerJoined"
  readonly workerId: string
  readonly otherWorkerId: string
}

/**
 * Another worker no longer owns any unexpired lease.
 *
 * @since 0.1.0
 * @category models
 */
export interface WorkerLeft {
  readonly _tag: "WorkerLeft"
  readonly workerId: string
  readonly otherWorkerId: string
}

/**
 * Any diagnostic event. `workerId` is always the worker reporting it.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { DiagnosticEvent } from "@effect-kinesis/consumer"
 *
 * const onDiagnostic = (event: DiagnosticEvent.DiagnosticEvent) =>
 *   event._tag === "LeaseLost" ? Effect.logWarning(`lost ${event.shardId}: ${event.reason}`) : Effect.void
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type DiagnosticEvent =
  | PollComplete
  | LeaseAcquired
  | LeaseRenewed
  | LeaseLost
  | LeaseReleased
  | Checkpoint
  | ShardEnded
  | AggregateDropped
  | AggregateMalformed
  | RecordUndecodable
  | NewShardDetected
  | LeaseDeleted
  | WorkerJoined
  | WorkerLeft

const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

/**
 * The Effect metrics the consumer keeps, named after the KCL's metrics where one exists. Every
 * metric has a `worker` attribute; per-shard metrics also a `shard` attribute.
 *
 * @example
 * ```ts
 * import { Metric } from "effect"
 * import { DiagnosticEvent } from "@effect-kinesis/consumer"
 *
 * const lost = Metric.value(DiagnosticEvent.metrics.lostLeases)
 * ```
 *
 * @since 0.1.0
 * @category metrics
 */
export const metrics = {
  /** Kinesis records fetched (aggregates count once). */
  recordsFetched: counter("kinesis_consumer_records_fetched", "Kinesis records returned by GetRecords"),
  getRecordsCalls: counter("kinesis_consumer_get_records_calls", "GetRecords calls that returned"),
  millisBehindLatest: Metric.gauge("kinesis_consumer_millis_behind_latest", {
    description: "MillisBehindLatest of the last GetRecords response of a shard"
  }),
  takenLeases: counter("kinesis_consumer_taken_leases", "Leases taken by this worker"),
  renewedLeases: counter("kinesis_consumer_renewed_leases", "Successful lease renewals"),
  lostLeases: counter("kinesis_consumer_lost_leases", "Leases lost to another worker or to expiry"),
  releasedLeases: counter("kinesis_consumer_released_leases", "Leases released by this worker"),
  checkpoints: counter("kinesis_consumer_checkpoints", "Checkpoints written"),
  shardsEnded: counter("kinesis_consumer_shards_ended", "Shards consumed to their end"),
  droppedAggregates: counter(
    "kinesis_consumer_dropped_aggregates",
    "Aggregated records dropped for holding user records of another shard"
  ),
  malformedAggregates: counter(
    "kinesis_consumer_malformed_aggregates",
    "Records with a KPL aggregate's magic and MD5 but malformed contents, delivered as plain records"
  ),
  undecodableRecords: counter("kinesis_consumer_undecodable_records", "Records the deserializer rejected"),
  shardsDetected: counter("kinesis_consumer_shards_detected", "Leases created for newly found shards"),
  deletedLeases: counter("kinesis_consumer_deleted_leases", "Leases of finished shards deleted"),
  workerChanges: counter("kinesis_consumer_worker_changes", "Other workers joining or leaving")
} as const

/**
 * Records one event in {@link metrics}.
 *
 * @example
 * ```ts
 * import { DiagnosticEvent } from "@effect-kinesis/consumer"
 *
 * const effect = DiagnosticEvent.recordMetrics({ _tag: "LeaseRenewed", workerId: "w1", shardId: "shardId-000000000000" })
 * ```
 *
 * @since 0.1.0
 * @category metrics
 */
export const recordMetrics = (event: DiagnosticEvent): Effect.Effect<void> => {
  const worker = { worker: event.workerId }
  const count = (metric: Metric.Counter<number>, attributes: Record<string, string> = worker) =>
    Metric.update(Metric.withAttributes(metric, attributes), 1)
  switch (event._tag) {
    case "PollComplete": {
      const attributes = { ...worker, shard: event.shardId }
      return Effect.all([
        Metric.update(Metric.withAttributes(metrics.recordsFetched, attributes), event.records),
        count(metrics.getRecordsCalls, attributes),
        event.millisBehindLatest === undefined
          ? Effect.void
          : Metric.update(Metric.withAttributes(metrics.millisBehindLatest, attributes), event.millisBehindLatest)
      ], { discard: true })
    }
    case "LeaseAcquired":
      return count(metrics.takenLeases)
    case "LeaseRenewed":
      return count(metrics.renewedLeases)
    case "LeaseLost":
      return count(metrics.lostLeases, { ...worker, reason: event.reason })
    case "LeaseReleased":
      return count(metrics.releasedLeases)
    case "Checkpoint":
      return count(metrics.checkpoints, { ...worker, shard: event.shardId })
    case "ShardEnded":
      return count(metrics.shardsEnded)
    case "AggregateDropped":
      return count(metrics.droppedAggregates, { ...worker, shard: event.shardId })
    case "AggregateMalformed":
      return count(metrics.malformedAggregates, { ...worker, shard: event.shardId })
    case "RecordUndecodable":
      return count(metrics.undecodableRecords, { ...worker, shard: event.shardId, action: event.action })
    case "NewShardDetected":
      return count(metrics.shardsDetected)
    case "LeaseDeleted":
      return count(metrics.deletedLeases)
    case "WorkerJoined":
      return count(metrics.workerChanges, { ...worker, change: "joined" })
    case "WorkerLeft":
      return count(metrics.workerChanges, { ...worker, change: "left" })
  }
}
