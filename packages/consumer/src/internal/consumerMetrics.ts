/**
 * The consumer's CloudWatch-style metrics, under the KCL's names, units, operations, levels and
 * dimensions (KCL 2.x/3.x `ProcessTask`, `KinesisDataFetcher`, `DynamoDBLeaseRenewer`,
 * `DynamoDBLeaseTaker`). Series are taken once per shard (or once per worker for the lease
 * operations) and recorded synchronously; without a `MetricsCollector`, or at level `none`, every
 * series is `MetricsCollector.disabled`.
 *
 * @internal
 */
import { MetricsCollector } from "@effect-kinesis/core"
import { Clock, Effect } from "effect"

/** @internal */
export type Dimension = "Operation" | "ShardId" | "WorkerIdentifier"

/** @internal */
export interface MetricsOptions {
  readonly collector: MetricsCollector.MetricsCollector["Service"] | undefined
  readonly level: MetricsCollector.MetricsLevel
  readonly namespace: string
  /** The dimensions besides `Operation` (always on, as in the KCL). */
  readonly dimensions: ReadonlySet<Dimension>
  readonly workerId: string
}

/** Operation `ProcessTask`, dimension `ShardId`: what one shard's fetching and processing record. */
export interface ShardMetrics {
  readonly recordsProcessed: MetricsCollector.Series
  readonly dataBytesProcessed: MetricsCollector.Series
  readonly millisBehindLatest: MetricsCollector.Series
  /** Operation `ApplicationTracker`, no shard: the worker-wide view of the lag. */
  readonly appMillisBehindLatest: MetricsCollector.Series
  readonly success: MetricsCollector.Series
  readonly time: MetricsCollector.Series
  readonly processRecordsTime: MetricsCollector.Series
  readonly getRecordsSuccess: MetricsCollector.Series
  readonly getRecordsTime: MetricsCollector.Series
  readonly updateLeaseSuccess: MetricsCollector.Series
  readonly updateLeaseTime: MetricsCollector.Series
  /** Whether any of the above records (to skip computing what nothing reads). */
  readonly enabled: boolean
}

/** Operation `RenewAllLeases`, dimension `WorkerIdentifier`. */
export interface RenewMetrics {
  readonly currentLeases: MetricsCollector.Series
  readonly lostLeases: MetricsCollector.Series
  readonly success: MetricsCollector.Series
  readonly time: MetricsCollector.Series
  readonly renewLeaseSuccess: MetricsCollector.Series
  readonly renewLeaseTime: MetricsCollector.Series
}

/** Operation `TakeLeases`, dimension `WorkerIdentifier`. */
export interface TakeMetrics {
  readonly success: MetricsCollector.Series
  readonly time: MetricsCollector.Series
  readonly listLeasesSuccess: MetricsCollector.Series
  readonly listLeasesTime: MetricsCollector.Series
  readonly takeLeaseSuccess: MetricsCollector.Series
  readonly takeLeaseTime: MetricsCollector.Series
  readonly takenLeases: MetricsCollector.Series
  readonly untakenLeases: MetricsCollector.Series
  readonly expiredLeases: MetricsCollector.Series
  readonly leaseSpillover: MetricsCollector.Series
  readonly leasesToTake: MetricsCollector.Series
  readonly neededLeases: MetricsCollector.Series
  readonly numWorkers: MetricsCollector.Series
  readonly totalLeases: MetricsCollector.Series
  readonly veryOldLeases: MetricsCollector.Series
}

/** @internal */
export interface ConsumerMetrics {
  readonly shard: (shardId: string) => ShardMetrics
  /** Operation `ProcessTask`, no shard (as the KCL's `PrefetchRecordsPublisher` records it). */
  readonly expiredIterator: MetricsCollector.Series
  readonly renew: RenewMetrics
  readonly take: TakeMetrics
}

type Level = "summary" | "detailed"

/** @internal */
export const make = (options: MetricsOptions): ConsumerMetrics => {
  const { collector, dimensions, level, namespace, workerId } = options
  const on = collector !== undefined && level !== "none"
  const series = (
    operation: string,
    name: string,
    unit: MetricsCollector.MetricUnit,
    required: Level,
    extra: ReadonlyArray<MetricsCollector.Dimension>
  ): MetricsCollector.Series => {
    if (!on || !MetricsCollector.isEnabled(level, required)) return MetricsCollector.disabled
    const dims: Array<MetricsCollector.Dimension> = [{ name: "Operation", value: operation }]
    for (const d of extra) if (dimensions.has(d.name as Dimension)) dims.push(d)
    return collector!.series({ namespace, name, unit, dimensions: dims })
  }
  const worker = [{ name: "WorkerIdentifier", value: workerId }]
  const renewOp = (name: string, unit: MetricsCollector.MetricUnit, required: Level) =>
    series("RenewAllLeases", name, unit, required, worker)
  const takeOp = (name: string, unit: MetricsCollector.MetricUnit, required: Level) =>
    series("TakeLeases", name, unit, required, worker)
  return {
    shard: (shardId) => {
      const shard = [{ name: "ShardId", value: shardId }]
      const op = (name: string, unit: MetricsCollector.MetricUnit, required: Level) =>
        series("ProcessTask", name, unit, required, shard)
      return {
        recordsProcessed: op("RecordsProcessed", "Count", "summary"),
        dataBytesProcessed: op("DataBytesProcessed", "Bytes", "summary"),
        millisBehindLatest: op("MillisBehindLatest", "Milliseconds", "summary"),
        appMillisBehindLatest: series("ApplicationTracker", "MillisBehindLatest", "Milliseconds", "summary", []),
        success: op("Success", "Count", "summary"),
        time: op("Time", "Milliseconds", "summary"),
        processRecordsTime: op("RecordProcessor.processRecords.Time", "Milliseconds", "summary"),
        getRecordsSuccess: op("KinesisDataFetcher.getRecords.Success", "Count", "detailed"),
        getRecordsTime: op("KinesisDataFetcher.getRecords.Time", "Milliseconds", "detailed"),
        updateLeaseSuccess: op("UpdateLease.Success", "Count", "detailed"),
        updateLeaseTime: op("UpdateLease.Time", "Milliseconds", "detailed"),
        enabled: on
      }
    },
    expiredIterator: series("ProcessTask", "ExpiredIterator", "Count", "summary", []),
    renew: {
      currentLeases: renewOp("CurrentLeases", "Count", "summary"),
      lostLeases: renewOp("LostLeases", "Count", "summary"),
      success: renewOp("Success", "Count", "summary"),
      time: renewOp("Time", "Milliseconds", "summary"),
      renewLeaseSuccess: renewOp("RenewLease.Success", "Count", "detailed"),
      renewLeaseTime: renewOp("RenewLease.Time", "Milliseconds", "detailed")
    },
    take: {
      success: takeOp("Success", "Count", "summary"),
      time: takeOp("Time", "Milliseconds", "summary"),
      listLeasesSuccess: takeOp("ListLeases.Success", "Count", "detailed"),
      listLeasesTime: takeOp("ListLeases.Time", "Milliseconds", "detailed"),
      takeLeaseSuccess: takeOp("TakeLease.Success", "Count", "detailed"),
      takeLeaseTime: takeOp("TakeLease.Time", "Milliseconds", "detailed"),
      takenLeases: takeOp("TakenLeases", "Count", "summary"),
      untakenLeases: takeOp("UntakenLeases", "Count", "summary"),
      expiredLeases: takeOp("ExpiredLeases", "Count", "summary"),
      leaseSpillover: takeOp("LeaseSpillover", "Count", "summary"),
      leasesToTake: takeOp("LeasesToTake", "Count", "detailed"),
      neededLeases: takeOp("NeededLeases", "Count", "detailed"),
      numWorkers: takeOp("NumWorkers", "Count", "summary"),
      totalLeases: takeOp("TotalLeases", "Count", "detailed"),
      veryOldLeases: takeOp("VeryOldLeases", "Count", "summary")
    }
  }
}

/** A consumer recording nothing (the coordinator's and fetchers' default). @internal */
export const none: ConsumerMetrics = make({
  collector: undefined,
  level: "none",
  namespace: "",
  dimensions: new Set(),
  workerId: ""
})

/**
 * Records the KCL's `Success` (1 or 0) and `Time` (milliseconds) of an operation.
 *
 * @internal
 */
export const timed =
  (success: MetricsCollector.Series, time: MetricsCollector.Series) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    success === MetricsCollector.disabled && time === MetricsCollector.disabled
      ? self
      : Effect.flatMap(
        Clock.currentTimeMillis,
        (startedAt) =>
          Effect.onExit(self, (exit) =>
            Effect.flatMap(Clock.currentTimeMillis, (now) =>
              Effect.sync(() => {
                success.record(exit._tag === "Success" ? 1 : 0)
                time.record(now - startedAt)
              })))
      )
