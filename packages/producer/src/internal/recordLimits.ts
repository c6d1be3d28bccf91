import { AdminClient, type Client, type KinesisError } from "@effect-kinesis/core"
import { Effect, Schedule } from "effect"
import type * as ProducerSettings from "../ProducerSettings.ts"

/**
 * `settings` for a stream that accepts records up to `streamMaxBytes`: the largest record the
 * producer accepts is the smaller of its setting and the stream's maximum, and an aggregate never
 * exceeds it either. Records are checked against it before buffering, so one over it fails alone.
 */
export const forStreamMax = (
  settings: ProducerSettings.Resolved,
  streamMaxBytes: number
): ProducerSettings.Resolved => {
  const maxRecordBytes = Math.min(settings.maxRecordBytes, streamMaxBytes)
  const maxAggregateBytes = Math.min(settings.maxAggregateBytes, maxRecordBytes)
  return maxRecordBytes === settings.maxRecordBytes && maxAggregateBytes === settings.maxAggregateBytes
    ? settings
    : { ...settings, maxRecordBytes, maxAggregateBytes }
}

/**
 * Reads the stream's largest record (one `DescribeStreamSummary`; an absent `MaxRecordSizeInKiB`
 * means 1 MiB) and applies it to `settings`.
 */
export const forStream = (
  settings: ProducerSettings.Resolved,
  client: Client.Client["Service"],
  stream: Client.StreamId
): Effect.Effect<ProducerSettings.Resolved, KinesisError.KinesisError> =>
  client.describeStreamSummary(stream).pipe(
    Effect.map(AdminClient.maxRecordBytes),
    // Throttling and 5xx are transient, as for the shard listing at start.
    Effect.retry({
      while: (error) => error.retryable,
      schedule: Schedule.exponential(100).pipe(Schedule.jittered),
      times: 6
    }),
    // Without the permission to describe the stream (or on an endpoint without the operation), the
    // producer still starts, on the default maximum; a missing stream fails it as before.
    Effect.catchIf(
      (error) => error._tag === "AccessDenied" || error._tag === "InvalidArgument",
      (error) =>
        Effect.as(
          Effect.logWarning(
            `Kinesis producer: cannot read the stream's maximum record size (${error._tag}: ${error.message}); assuming 1 MiB`
          ),
          AdminClient.defaultMaxRecordSizeKiB * 1024
        )
    ),
    Effect.map((streamMax) => forStreamMax(settings, streamMax))
  )
