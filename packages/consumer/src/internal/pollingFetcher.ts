/**
 * The polling fetcher: `GetRecords` in a loop, at most `maxCallsPerSecond` per shard, at once
 * while the shard is behind and after `pollInterval` when it is caught up.
 *
 * @internal
 */
import type { GetRecordsOutput, ShardIteratorType } from "@aws-sdk/client-kinesis"
import { type Client, ExtendedSequenceNumber, type KinesisError, MetricsCollector } from "@effect-kinesis/core"
import { Clock, Duration, Effect, Option, type Schedule, Stream } from "effect"
import type { FetchedBatch, ShardFetcher } from "./shardFetcher.ts"

/** @internal */
export interface PollingSettings {
  readonly batchSize: number
  readonly pollInterval: Duration.Duration
  readonly maxCallsPerSecond: number
  readonly bufferedBatches: number
  /** Backoff for throttling and transient errors; retried while it recurs. */
  readonly retrySchedule: Schedule.Schedule<unknown, KinesisError.KinesisError>
}

// kinesis-mock answers an expired or garbage iterator with HTTP 500; a fresh iterator fixes both.
const needsNewIterator = (error: KinesisError.KinesisError) =>
  error._tag === "ExpiredIterator" || error._tag === "ServiceUnavailable"

const isRetryable = (error: KinesisError.KinesisError) => error.retryable || error._tag === "ExpiredIterator"

/** @internal */
export const make = (
  client: Client.Client["Service"],
  stream: Client.StreamId,
  settings: PollingSettings,
  expiredIterator: MetricsCollector.Series = MetricsCollector.disabled
): ShardFetcher => ({
  fetch: (shardId, from, metrics) =>
    Stream.unwrap(Effect.sync(() => {
      const minSpacingMillis = 1000 / settings.maxCallsPerSecond
      const pollMillis = Duration.toMillis(settings.pollInterval)
      let iterator: string | undefined
      // The last Kinesis record delivered: an expired iterator resumes right after it.
      let lastSequenceNumber: string | undefined
      // When a LATEST start took its first iterator: one that expires before any record was read
      // resumes from this time, not from a new LATEST that would skip what was written meanwhile.
      let latestSince: Date | undefined
      let nextCallAt = 0

      const initialIterator = (): { type: ShardIteratorType; sequenceNumber?: string; timestamp?: Date } => {
        const position = from.position.sequenceNumber
        switch (position) {
          case ExtendedSequenceNumber.TRIM_HORIZON:
            return { type: "TRIM_HORIZON" }
          case ExtendedSequenceNumber.LATEST:
            return latestSince === undefined ? { type: "LATEST" } : { type: "AT_TIMESTAMP", timestamp: latestSince }
          case ExtendedSequenceNumber.AT_TIMESTAMP:
            return from.timestamp === undefined
              ? { type: "TRIM_HORIZON" }
              : { type: "AT_TIMESTAMP", timestamp: from.timestamp }
          default:
            return { type: "AT_SEQUENCE_NUMBER", sequenceNumber: position }
        }
      }

      const acquireIterator = Effect.suspend(() => {
        const spec = lastSequenceNumber === undefined
          ? initialIterator()
          : { type: "AFTER_SEQUENCE_NUMBER" as const, sequenceNumber: lastSequenceNumber }
        // Taken before the call: a record written while it runs is at or after this time.
        const since = spec.type === "LATEST" ? new Date() : undefined
        return client.getShardIterator(stream, {
          shardId,
          type: spec.type,
          sequenceNumber: spec.sequenceNumber,
          timestamp: spec.timestamp
        }).pipe(Effect.tap(() =>
          Effect.sync(() => {
            if (since !== undefined) latestSince = since
          })
        ))
      })

      const call: Effect.Effect<GetRecordsOutput, KinesisError.KinesisError> = Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        if (nextCallAt > now) yield* Effect.sleep(Duration.millis(nextCallAt - now))
        if (iterator === undefined) iterator = yield* acquireIterator
        const sentAt = yield* Clock.currentTimeMillis
        nextCallAt = sentAt + minSpacingMillis
        const request = client.getRecords({ ShardIterator: iterator, Limit: settings.batchSize })
        if (metrics === undefined || metrics.getRecordsTime === MetricsCollector.disabled) return yield* request
        return yield* Effect.onExit(request, (exit) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) =>
            Effect.sync(() => {
              metrics.getRecordsSuccess.record(exit._tag === "Success" ? 1 : 0)
              metrics.getRecordsTime.record(now - sentAt)
            })))
      }).pipe(
        Effect.tapError((error) =>
          Effect.suspend(() => {
            if (needsNewIterator(error)) {
              iterator = undefined
            }
            if (error._tag === "ExpiredIterator") {
              expiredIterator.record(1)
            }
            // Retries are routine (throttling, an expired iterator): visible at debug level only.
            return isRetryable(error)
              ? Effect.annotateLogs(
                Effect.logDebug(`GetRecords failed, retrying: ${error.message}`),
                { shardId, error: error._tag }
              )
              : Effect.void
          })
        ),
        Effect.retry({ while: isRetryable, schedule: settings.retrySchedule })
      )

      const poll = (delayMillis: number) =>
        Effect.gen(function*() {
          if (delayMillis > 0) {
            yield* Effect.sleep(Duration.millis(delayMillis))
          }
          const out = yield* call
          const records = out.Records ?? []
          if (records.length > 0) {
            lastSequenceNumber = records[records.length - 1]!.SequenceNumber
          }
          iterator = out.NextShardIterator ?? undefined
          const ended = out.NextShardIterator === undefined || out.NextShardIterator === null
          const batch: FetchedBatch = {
            records,
            millisBehindLatest: out.MillisBehindLatest,
            shardEnd: ended ? { childShards: out.ChildShards ?? [] } : undefined
          }
          const behind = (out.MillisBehindLatest ?? 0) > 0 || records.length >= settings.batchSize
          return [[batch], ended ? Option.none() : Option.some(behind ? 0 : pollMillis)] as const
        })

      return Stream.paginate(0, poll).pipe(Stream.buffer({ capacity: settings.bufferedBatches }))
    }))
})
