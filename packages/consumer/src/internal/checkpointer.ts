/**
 * The checkpointer of one shard, over a write function the lease coordinator provides.
 *
 * @internal
 */
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import { Deferred, Effect, Exit, type Schedule, Semaphore, Stream } from "effect"
import type { Checkpointable, Checkpointer } from "../Checkpointer.ts"
import type { ShardLeaseLost } from "../ConsumerError.ts"
import type { LeaseStoreError } from "../LeaseRepository.ts"

/** @internal */
export interface InternalCheckpointer {
  readonly checkpointer: Checkpointer
  /** Stages `SHARD_END`: the shard's records have all been delivered (and processed, upstream). */
  readonly stageShardEnd: (childShardIds: ReadonlyArray<string>) => Effect.Effect<void>
  /** Whether `SHARD_END` has been written. */
  readonly shardEndWritten: () => boolean
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
}): InternalCheckpointer => {
  let written = options.initial
  let staged: Staged | undefined
  const lock = Semaphore.makeUnsafe(1)

  const stagePosition = (position: ExtendedSequenceNumber.ExtendedSequenceNumber) =>
    Effect.sync(() => {
      const current = staged?.position ?? written
      if (ExtendedSequenceNumber.compare(position, current) > 0) staged = { position, childShardIds: undefined }
    })

  const stage = (record: Checkpointable) =>
    stagePosition(ExtendedSequenceNumber.make(record.sequenceNumber, record.subSequenceNumber))

  const checkpoint: Effect.Effect<void, ShardLeaseLost | LeaseStoreError> = lock.withPermit(
    Effect.suspend(() => {
      const next = staged
      if (next === undefined) return Effect.void
      if (ExtendedSequenceNumber.compare(next.position, written) <= 0) {
        staged = undefined
        return Effect.void
      }
      return options.write(next.position, next.childShardIds).pipe(
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
      Effect.onExit(effect, (exit) => Exit.isSuccess(exit) ? stage(record) : Effect.void),
    checkpointBatched: (batching) => (self) =>
      Stream.unwrap(Effect.gen(function*() {
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

  return {
    checkpointer,
    stageShardEnd: (childShardIds) =>
      Effect.sync(() => {
        staged = { position: ExtendedSequenceNumber.shardEnd, childShardIds }
      }),
    shardEndWritten: () => ExtendedSequenceNumber.isShardEnd(written)
  }
}
