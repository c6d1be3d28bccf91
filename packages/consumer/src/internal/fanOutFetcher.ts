/**
 * The enhanced fan-out fetcher: one `SubscribeToShard` subscription at a time per shard, renewed
 * from its `ContinuationSequenceNumber` when it ends (Kinesis ends each after 5 minutes), when it
 * stalls, and after transient errors.
 *
 * Shard end is what Kinesis says on the final event (`ChildShards`, no continuation). Emulators
 * never say it (kinesis-mock keeps sending empty events), so a caught-up subscription of a shard
 * that `ListShards` shows closed is checked with one `GetRecords` from the last record delivered.
 *
 * @internal
 */
import type { ChildShard, Shard, StartingPosition, SubscribeToShardEvent } from "@aws-sdk/client-kinesis"
import { type Client, ExtendedSequenceNumber, type KinesisError, SequenceNumber } from "@effect-kinesis/core"
import { Clock, Duration, Effect, Schedule, Semaphore, Stream } from "effect"
import type { Settings } from "../EnhancedFanOut.ts"
import type { FetchedBatch, FetchFrom, ShardFetcher } from "./shardFetcher.ts"

/** @internal */
export interface FanOutSettings {
  /** A subscription with no event for this long is cancelled and renewed. */
  readonly stallTimeout: Duration.Duration
  /** `SubscribeToShard` calls per second per shard (Kinesis allows 1 per consumer per shard). */
  readonly maxSubscribesPerSecond: number
  /** Wait before subscribing again after `ResourceInUse` (a subscription renewed within 5 s). */
  readonly resourceInUseDelay: Duration.Duration
  /** How old the shard list may be when checking whether a caught-up shard is closed. */
  readonly shardEndCheckInterval: Duration.Duration
  readonly bufferedBatches: number
  /** Backoff for transient errors; the schedule resets once an event arrives. */
  readonly retrySchedule: Schedule.Schedule<unknown, KinesisError.KinesisError>
}

/** @internal */
export const resolveSettings = (settings: Settings = {}): FanOutSettings => {
  const maxSubscribesPerSecond = settings.maxSubscribesPerSecond ?? 1
  if (!(maxSubscribesPerSecond > 0)) throw new RangeError("enhancedFanOut.maxSubscribesPerSecond must be positive")
  return {
    stallTimeout: Duration.fromInputUnsafe(settings.stallTimeout ?? "35 seconds"),
    maxSubscribesPerSecond,
    resourceInUseDelay: Duration.fromInputUnsafe(settings.resourceInUseDelay ?? "1 second"),
    shardEndCheckInterval: Duration.fromInputUnsafe(settings.shardEndCheckInterval ?? "10 seconds"),
    bufferedBatches: settings.bufferedBatches ?? 2,
    retrySchedule: settings.retrySchedule ?? Schedule.exponential("200 millis").pipe(
      Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(10)))),
      Schedule.jittered
    )
  }
}

// Retrying cannot help: the stream or the consumer is gone, access is denied, the request is bad.
// A broken event stream after events have flowed is a network failure, whatever the SDK calls it.
const isFatal = (error: KinesisError.KinesisError, midStream: boolean) =>
  !error.retryable && !(midStream && error._tag === "UnknownKinesisError")

const childShardsOf = (shardId: string, shards: ReadonlyArray<Shard>): ReadonlyArray<ChildShard> =>
  shards
    .filter((shard) => shard.ParentShardId === shardId || shard.AdjacentParentShardId === shardId)
    .map((shard) => ({
      ShardId: shard.ShardId!,
      ParentShards: [shard.ParentShardId, shard.AdjacentParentShardId].filter((id): id is string => id !== undefined),
      HashKeyRange: shard.HashKeyRange!
    }))

/**
 * @param consumerARN the application's registered stream consumer (see `streamConsumer.ts`).
 * @internal
 */
export const make = (
  client: Client.Client["Service"],
  stream: Client.StreamId,
  consumerARN: string,
  settings: FanOutSettings
): ShardFetcher => {
  // One shard list for all shards of this worker, at most `shardEndCheckInterval` old: idle shards
  // of a big stream ask often, and ListShards is limited per stream.
  const listing = Semaphore.makeUnsafe(1)
  let listed: { readonly at: number; readonly shards: ReadonlyArray<Shard> } | undefined
  const listShards = (maxAgeMillis: number) =>
    listing.withPermits(1)(Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      if (listed !== undefined && now - listed.at < maxAgeMillis) return listed.shards
      const shards = yield* Stream.runCollect(client.listShards(stream))
      listed = { at: yield* Clock.currentTimeMillis, shards }
      return shards
    }))

  const fetch = (shardId: string, from: FetchFrom): Stream.Stream<FetchedBatch, KinesisError.KinesisError> =>
    Stream.suspend(() => {
      const minSpacingMillis = 1000 / settings.maxSubscribesPerSecond
      const checkEveryMillis = Duration.toMillis(settings.shardEndCheckInterval)
      // The last Kinesis record delivered, and the last continuation: where a renewal resumes.
      let lastDelivered: string | undefined
      let continuation: string | undefined
      let nextSubscribeAt = 0
      let eventsInSubscription = 0

      const initialPosition = (): StartingPosition => {
        const position = from.position.sequenceNumber
        switch (position) {
          case ExtendedSequenceNumber.TRIM_HORIZON:
            return { Type: "TRIM_HORIZON" }
          case ExtendedSequenceNumber.LATEST:
            return { Type: "LATEST" }
          case ExtendedSequenceNumber.AT_TIMESTAMP:
            return from.timestamp === undefined
              ? { Type: "TRIM_HORIZON" }
              : { Type: "AT_TIMESTAMP", Timestamp: from.timestamp }
          default:
            // AT the checkpoint: an aggregate may be partly processed; the caller drops the rest.
            return { Type: "AT_SEQUENCE_NUMBER", SequenceNumber: position }
        }
      }

      // The continuation is at or past the last record delivered ("after it" when equal); the
      // larger of the two guards against a continuation that lags.
      const resumePoint = (): string | undefined =>
        continuation === undefined
          ? lastDelivered
          : lastDelivered === undefined || SequenceNumber.compare(continuation, lastDelivered) >= 0
          ? continuation
          : lastDelivered

      const startingPosition = (): StartingPosition => {
        const after = resumePoint()
        return after === undefined ? initialPosition() : { Type: "AFTER_SEQUENCE_NUMBER", SequenceNumber: after }
      }

      // Whether a caught-up shard has been read to its end, and its children if so. Only asked
      // when the subscription has nothing more to give, so a real end is found within one
      // `shardEndCheckInterval`.
      const exhausted: Effect.Effect<ReadonlyArray<ChildShard> | undefined, KinesisError.KinesisError> = Effect.gen(
        function*() {
          const shards = yield* listShards(checkEveryMillis)
          const shard = shards.find((s) => s.ShardId === shardId)
          const ending = shard?.SequenceNumberRange?.EndingSequenceNumber
          if (shard === undefined || ending === undefined) return undefined
          // kinesis-mock reports Long.MAX as a closed shard's end, below every real sequence number
          // of the shard: only an end past the shard's start is a real record's.
          const starting = shard.SequenceNumberRange?.StartingSequenceNumber
          const realEnding = starting !== undefined && SequenceNumber.compare(ending, starting) >= 0
          if (realEnding && lastDelivered !== undefined && SequenceNumber.compare(lastDelivered, ending) >= 0) {
            return childShardsOf(shardId, shards)
          }
          const initial = initialPosition()
          const iterator = yield* client.getShardIterator(
            stream,
            lastDelivered === undefined
              ? { shardId, type: initial.Type!, sequenceNumber: initial.SequenceNumber, timestamp: initial.Timestamp }
              : { shardId, type: "AFTER_SEQUENCE_NUMBER", sequenceNumber: lastDelivered }
          )
          const out = yield* client.getRecords({ ShardIterator: iterator, Limit: 1 })
          // Records left: the subscription delivers them; a next iterator: the shard goes on.
          if ((out.Records ?? []).length > 0 || (out.NextShardIterator ?? undefined) !== undefined) return undefined
          return out.ChildShards !== undefined && out.ChildShards.length > 0
            ? out.ChildShards
            : childShardsOf(shardId, shards)
        }
      ).pipe(
        Effect.catchIf((error) => error.retryable, () => Effect.succeed(undefined))
      )

      const toBatch = (event: SubscribeToShardEvent): Effect.Effect<FetchedBatch, KinesisError.KinesisError> =>
        Effect.gen(function*() {
          eventsInSubscription++
          const records = event.Records ?? []
          if (records.length > 0) lastDelivered = records[records.length - 1]!.SequenceNumber
          const next = event.ContinuationSequenceNumber ?? undefined
          if (next !== undefined) continuation = next
          const batch = (shardEnd: FetchedBatch["shardEnd"]): FetchedBatch => ({
            records,
            millisBehindLatest: event.MillisBehindLatest,
            shardEnd
          })
          // What Kinesis sends on a closed shard's final event.
          if ((event.ChildShards !== undefined && event.ChildShards.length > 0) || next === undefined) {
            const childShards = event.ChildShards !== undefined && event.ChildShards.length > 0
              ? event.ChildShards
              : childShardsOf(shardId, yield* listShards(0))
            return batch({ childShards })
          }
          if (records.length === 0 && event.MillisBehindLatest === 0) {
            const childShards = yield* exhausted
            if (childShards !== undefined) return batch({ childShards })
          }
          return batch(undefined)
        })

      // One subscription: ends normally at Kinesis's 5-minute cut-off or when it stalls; fails
      // with the errors `retrySchedule` backs off from (and the fatal ones).
      const subscription: Stream.Stream<FetchedBatch, KinesisError.KinesisError> = Stream.unwrap(
        Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          if (nextSubscribeAt > now) yield* Effect.sleep(Duration.millis(nextSubscribeAt - now))
          nextSubscribeAt = Math.max(now, nextSubscribeAt) + minSpacingMillis
          eventsInSubscription = 0
          return client.subscribeToShard({ consumerARN, shardId, startingPosition: startingPosition() }).pipe(
            Stream.timeoutOrElse({
              duration: settings.stallTimeout,
              orElse: () =>
                Stream.fromEffectDrain(
                  Effect.logWarning(
                    `subscription to ${shardId} stalled (no event for ${
                      Duration.format(settings.stallTimeout)
                    }); renewing it`
                  )
                )
            }),
            Stream.mapEffect(toBatch),
            Stream.catchTag("ResourceInUse", () =>
              // Renewed too soon after the previous subscription (or it is still being torn down).
              Stream.fromEffectDrain(Effect.flatMap(Clock.currentTimeMillis, (at) =>
                Effect.sync(() => {
                  nextSubscribeAt = Math.max(nextSubscribeAt, at + Duration.toMillis(settings.resourceInUseDelay))
                }))))
          )
        })
      )

      const retrySchedule = settings.retrySchedule.pipe(
        Schedule.modifyDelay(({ duration, input }) =>
          isFatal(input, eventsInSubscription > 0) ? Effect.fail(input) : Effect.succeed(duration)
        ),
        Schedule.tap(({ input }) =>
          // A retry: routine (network, throttling), so at debug level; fatal errors end the stream.
          Effect.annotateLogs(Effect.logDebug(`subscription failed, resubscribing: ${input.message}`), {
            shardId,
            error: input._tag
          })
        )
      )

      return Stream.forever(subscription).pipe(
        Stream.retry(retrySchedule),
        Stream.takeUntil((batch) => batch.shardEnd !== undefined),
        Stream.buffer({ capacity: settings.bufferedBatches })
      )
    })

  return { fetch }
}
