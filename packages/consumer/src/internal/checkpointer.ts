/**
 * The checkpointer of one shard, over a write function the lease coordinator provides.
 *
 * @internal
 */
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import { Deferred, type Duration, Effect, Exit, Fiber, type Schedule, Semaphore, Stream } from "effect"
import type { Checkpointable, Checkpointer } from "../Checkpointer.ts"
import type { ShardLeaseLost } from "../ConsumerError.ts"
import type { LeaseStoreError } from "../LeaseRepository.ts"
import * as ValidateSettings from "./validateSettings.ts"

/** @internal */
export interface InternalCheckpointer {
  readonly checkpointer: Checkpointer
  /** Notes the last record handed to the user's pipeline (in shard order). */
  readonly delivered: (position: ExtendedSequenceNumber.ExtendedSequenceNumber) => void
  /**
   * Notes a record the consumer dropped without delivering it: it counts as processed once every
   * record delivered before it is, so the checkpoint moves past it.
   */
  readonly dropped: (position: ExtendedSequenceNumber.ExtendedSequenceNumber) => void
  /** Whether every delivered record has been staged (or no record was delivered). */
  readonly allProcessed: () => boolean
  /** Stages `SHARD_END`: call only once the shard was read to its end and {@link allProcessed} holds. */
  readonly stageShardEnd: (childShardIds: ReadonlyArray<string>) => Effect.Effect<void>
  /** Whether `SHARD_END` has been written. */
  readonly shardEndWritten: () => boolean
  /**
   * Notes a record skipped without reaching the user's processing: it counts as processed once
   * the record delivered just before it (`after`; none: at once) is.
   */
  readonly skipped: (
    after: ExtendedSequenceNumber.ExtendedSequenceNumber | undefined,
    position: ExtendedSequenceNumber.ExtendedSequenceNumber
  ) => void
  /** The position staged (else written) and how many records were staged: for status reports. */
  readonly progress: () => {
    readonly processed: ExtendedSequenceNumber.ExtendedSequenceNumber
    readonly records: number
  }
}

/**
 * Runs `effect` so that interrupting it (a graceful stop) lets it finish within `gracePeriod`
 * before it is interrupted too; `onStop` is told at once, so that a loop starts no new record.
 * The effect runs in a child fiber: interruption reaches a fiber at once, and only a second fiber
 * can be waited for and interrupted at a deadline.
 *
 * @internal
 */
export const letFinish =
  (gracePeriod: Duration.Duration) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>, onStop?: () => void): Effect.Effect<A, E, R> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(
        Effect.forkChild(restore(effect), { startImmediately: true }),
        (fiber) =>
          restore(Fiber.join(fiber)).pipe(
            Effect.onInterrupt(() => {
              onStop?.()
              return Fiber.await(fiber).pipe(
                Effect.timeoutOption(gracePeriod),
                Effect.andThen(Fiber.interrupt(fiber))
              )
            })
          )
      )
    )

// The grace period of each shard's checkpointer, for `ErrorHandling.processShard`, which only
// sees the public `Checkpointer`.
const graceful = new WeakMap<Checkpointer, ReturnType<typeof letFinish>>()

/**
 * {@link letFinish} with the grace period of the consumer that made `checkpointer` (none for a
 * checkpointer made elsewhere).
 *
 * @internal
 */
export const letFinishFor = (checkpointer: Checkpointer): ReturnType<typeof letFinish> =>
  graceful.get(checkpointer) ?? ((effect) => effect)

// The synchronous stage of each shard's checkpointer, counting the records it covers: for
// `consumeWith`'s per-record loop (an effect per record costs more there than the staging
// itself), and for a finished prefix or a batch staged at once (the status counts records).
const stagers = new WeakMap<Checkpointer, (record: Checkpointable, count: number) => void>()

/**
 * Stages `record` on `checkpointer` at once, outside an effect: as `checkpointer.stage`, which it
 * runs for a checkpointer made elsewhere.
 *
 * @internal
 */
export const stageSyncFor = (checkpointer: Checkpointer): (record: Checkpointable) => void => {
  const stager = stagers.get(checkpointer)
  return stager === undefined
    ? (record) => Effect.runSync(checkpointer.stage(record))
    : (record) => stager(record, 1)
}

/**
 * Stages `record` as the last of `count` records processed at once (a finished prefix, a batch).
 *
 * @internal
 */
export const stageMany = (checkpointer: Checkpointer, record: Checkpointable, count: number): Effect.Effect<void> => {
  const stager = stagers.get(checkpointer)
  return stager === undefined ? checkpointer.stage(record) : Effect.sync(() => stager(record, count))
}

interface Staged {
  readonly position: ExtendedSequenceNumber.ExtendedSequenceNumber
  readonly childShardIds: ReadonlyArray<string> | undefined
}

/** @internal */
export const make = (options: {
  readonly shardId: string
  readonly initial: ExtendedSequenceNumber.ExtendedSequenceNumber
  readonly write: (
    position: ExtendedSequenceNumber.ExtendedSequenceNumber,
    childShardIds: ReadonlyArray<string> | undefined
  ) => Effect.Effect<void, ShardLeaseLost | LeaseStoreError>
  readonly retrySchedule: Schedule.Schedule<unknown, unknown>
  /** How long a stop lets a `stageOnSuccess` effect that is running finish. */
  readonly gracePeriod: Duration.Duration
  /**
   * Whether the consumer is stopping this shard (shutdown). A processing effect that has not
   * started by then is not started: the fiber that would run it is interrupted instead.
   */
  readonly stopping: () => boolean
}): InternalCheckpointer => {
  let written = options.initial
  let staged: Staged | undefined
  let lastDelivered: ExtendedSequenceNumber.ExtendedSequenceNumber | undefined
  // Dropped records waiting for the record delivered just before them to be staged, in order.
  const droppedAfter: Array<{
    readonly after: ExtendedSequenceNumber.ExtendedSequenceNumber
    readonly position: ExtendedSequenceNumber.ExtendedSequenceNumber
  }> = []
  const lock = Semaphore.makeUnsafe(1)
  const letRunningFinish = letFinish(options.gracePeriod)
  // A chunk the records stream emitted before the stop is still handed on element by element; a
  // stop must not start their processing (only a stream pull, not a chunk, ends at a stop).
  const finishing: ReturnType<typeof letFinish> = (effect, onStop) =>
    Effect.suspend(() => options.stopping() ? Effect.interrupt : letRunningFinish(effect, onStop))

  // The last record staged while no dropped record waited: its position is made only when read,
  // which keeps staging one record an assignment (no objects per record).
  let stagedLast: Checkpointable | undefined
  const settle = () => {
    const record = stagedLast
    if (record === undefined) return
    stagedLast = undefined
    advance(ExtendedSequenceNumber.make(record.sequenceNumber, record.subSequenceNumber))
  }

  const current = () => {
    settle()
    return staged?.position ?? written
  }
  const allProcessed = () =>
    lastDelivered === undefined || ExtendedSequenceNumber.compare(current(), lastDelivered) >= 0

  const advance = (position: ExtendedSequenceNumber.ExtendedSequenceNumber) => {
    let target = position
    // Against the target: a skipped record can follow a skipped record.
    while (droppedAfter.length > 0 && ExtendedSequenceNumber.compare(droppedAfter[0]!.after, target) <= 0) {
      const next = droppedAfter.shift()!
      if (ExtendedSequenceNumber.compare(next.position, target) > 0) target = next.position
    }
    if (ExtendedSequenceNumber.compare(target, staged?.position ?? written) > 0) {
      staged = { position: target, childShardIds: undefined }
    }
  }

  let stagedRecords = 0
  const stageSync = (record: Checkpointable, count: number) => {
    stagedRecords += count
    // A record staged after a later one (a user's own order) does not move the position back.
    if (droppedAfter.length === 0) {
      if (stagedLast === undefined || ExtendedSequenceNumber.compare(record, stagedLast) > 0) stagedLast = record
    } else {
      settle()
      advance(ExtendedSequenceNumber.make(record.sequenceNumber, record.subSequenceNumber))
    }
  }
  const stage = (record: Checkpointable) => Effect.sync(() => stageSync(record, 1))

  const checkpoint: Effect.Effect<void, ShardLeaseLost | LeaseStoreError> = lock.withPermit(
    Effect.suspend(() => {
      settle()
      const next = staged
      if (next === undefined) return Effect.void
      if (ExtendedSequenceNumber.compare(next.position, written) <= 0) {
        staged = undefined
        return Effect.void
      }
      return options.write(next.position, next.childShardIds).pipe(
        Effect.tapError((e) =>
          e._tag === "LeaseStoreError" && e.retryable
            ? Effect.annotateLogs(Effect.logDebug(`writing a checkpoint failed, retrying: ${e.message}`), {
              shardId: options.shardId
            })
            : Effect.void
        ),
        Effect.retry({ while: (e) => e._tag === "LeaseStoreError" && e.retryable, schedule: options.retrySchedule }),
        Effect.tap(() =>
          Effect.sync(() => {
            written = next.position
            if (staged === next) staged = undefined
          })
        )
      )
    })
  )

  const checkpointer: Checkpointer = {
    shardId: options.shardId,
    stage,
    checkpoint,
    checkpointNow: (record) => Effect.andThen(stage(record), checkpoint),
    stageOnSuccess: (effect, record) =>
      finishing(Effect.onExit(effect, (exit) => Exit.isSuccess(exit) ? stage(record) : Effect.void)),
    checkpointBatched: (batching) => (self) =>
      Stream.unwrap(Effect.gen(function*() {
        const invalid = ValidateSettings.checkpointBatching(
          { setting: "records", value: batching.records },
          { setting: "interval", value: batching.interval }
        )
        if (invalid !== undefined) return yield* invalid
        // The interval checkpoints run beside the stream; a lost lease (or a store failure that
        // outlasted the retries) found there ends (or fails) the stream too.
        const stopped = yield* Deferred.make<void, LeaseStoreError>()
        yield* checkpoint.pipe(
          Effect.delay(batching.interval),
          Effect.forever,
          Effect.catchTag("ShardLeaseLost", () => Deferred.succeed(stopped, undefined)),
          Effect.catchTag("LeaseStoreError", (error) => Deferred.fail(stopped, error)),
          Effect.forkScoped
        )
        let sinceCheckpoint = 0
        // Counting per chunk, not per element, keeps this off the per-record path.
        return self.pipe(
          Stream.mapArrayEffect((chunk) => {
            sinceCheckpoint += chunk.length
            if (sinceCheckpoint < batching.records) return Effect.succeed(chunk)
            sinceCheckpoint = 0
            return Effect.as(checkpoint, chunk)
          }),
          Stream.catchTag("ShardLeaseLost", () => Stream.fromEffectDrain(Deferred.succeed(stopped, undefined))),
          Stream.interruptWhen(Deferred.await(stopped))
        )
      })),
    lastCheckpoint: Effect.sync(() => written)
  }

  graceful.set(checkpointer, finishing)
  stagers.set(checkpointer, stageSync)
  return {
    checkpointer,
    delivered: (position) => {
      lastDelivered = position
    },
    dropped: (position) => {
      if (allProcessed()) advance(position)
      else droppedAfter.push({ after: lastDelivered!, position })
    },
    allProcessed,
    stageShardEnd: (childShardIds) =>
      Effect.sync(() => {
        stagedLast = undefined
        staged = { position: ExtendedSequenceNumber.shardEnd, childShardIds }
      }),
    shardEndWritten: () => ExtendedSequenceNumber.isShardEnd(written),
    progress: () => ({ processed: current(), records: stagedRecords }),
    skipped: (after, position) => {
      if (after === undefined || ExtendedSequenceNumber.compare(current(), after) >= 0) advance(position)
      else droppedAfter.push({ after, position })
    }
  }
}
