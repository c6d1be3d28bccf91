/**
 * A handle on a running consumer: stop and start one shard on this worker, pause and resume the
 * whole worker, and see what it holds and how far it got. Make one with {@link make} and pass it
 * as the `control` option of `Consumer.consumeWith`, `BatchProcessing.consumeBatchesWith` or
 * `Consumer.shardedStream`; the consumer attaches to it when it starts and detaches when it
 * ends. Handlers can be swapped at runtime with {@link swappable}, with or without a handle.
 *
 * Everything here acts on **this worker** only. The lease table is shared with the other workers
 * of the application (KCL workers too), which would ignore any flag of ours, and a restart would
 * forget one; so a shard stopped here is released for the others to take. To keep a shard
 * stopped for the whole application, stop it on every worker.
 *
 * @since 0.2.0
 */
import type { ExtendedSequenceNumber } from "@effect-kinesis/core"
import { Deferred, Effect, Semaphore } from "effect"
import * as Internal from "./internal/control.ts"

const TypeId = "~@effect-kinesis/consumer/ConsumerControl"

/**
 * One held shard in a {@link Status}.
 *
 * @example
 * ```ts
 * import type { ConsumerControl } from "@effect-kinesis/consumer"
 *
 * const lagging = (shard: ConsumerControl.ShardStatus) => (shard.millisBehindLatest ?? 0) > 60_000
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface ShardStatus {
  readonly shardId: string
  /**
   * `"processing"`; `"paused"` while the worker is paused; `"stopping"` from a `stopShard` until
   * the lease is released.
   */
  readonly state: "processing" | "paused" | "stopping"
  /** The last checkpoint written to the lease table. */
  readonly checkpoint: ExtendedSequenceNumber.ExtendedSequenceNumber
  /** The last position processed (staged), written at the next checkpoint. */
  readonly processed: ExtendedSequenceNumber.ExtendedSequenceNumber
  /** `MillisBehindLatest` of the latest batch fetched; `undefined` before the first. */
  readonly millisBehindLatest: number | undefined
  /** Records processed (staged) since this worker took the lease. */
  readonly recordsProcessed: number
}

/**
 * What a worker is doing, from {@link ConsumerControl.status}.
 *
 * @example
 * ```ts
 * import type { ConsumerControl } from "@effect-kinesis/consumer"
 *
 * const summary = (status: ConsumerControl.Status) =>
 *   `${status.workerId}: ${status.shards.length} shards${status.paused ? ", paused" : ""}`
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Status {
  /** The worker id of the consumer attached; `undefined` while none is. */
  readonly workerId: string | undefined
  readonly paused: boolean
  /** Shards this worker will not take until `startShard`, held or not. */
  readonly stoppedShards: ReadonlyArray<string>
  /** The shards held now, by shard id. */
  readonly shards: ReadonlyArray<ShardStatus>
}

/**
 * The handle. Calls made before a consumer attaches are remembered (a paused handle starts its
 * consumer paused, a stopped shard is never taken) and apply to the next consumer attached.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Serde } from "@effect-kinesis/core"
 * import { Consumer, ConsumerControl } from "@effect-kinesis/consumer"
 *
 * const program = Effect.gen(function*() {
 *   const control = yield* ConsumerControl.make
 *   yield* Effect.forkChild(
 *     Consumer.consumeWith((record) => Effect.log(record.data), {
 *       stream: "orders",
 *       applicationName: "billing",
 *       deserializer: Serde.string,
 *       control
 *     })
 *   )
 *   yield* Effect.sleep("1 minute")
 *   yield* control.stopShard("shardId-000000000001")
 *   yield* Effect.log(yield* control.status)
 * })
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface ConsumerControl {
  readonly [TypeId]: typeof TypeId
  /**
   * Stops processing `shardId` on this worker: no new record reaches the handler, the handlers
   * running finish (within `shutdownGracePeriod`), what was processed is checkpointed, and the
   * lease is released, so another worker may take it (from that checkpoint). This worker does
   * not take it again until {@link startShard}. Completes once the lease is released, at once if
   * this worker does not hold it.
   */
  readonly stopShard: (shardId: string) => Effect.Effect<void>
  /** Lets this worker take `shardId` again, under the usual rules (free, expired, fair share). */
  readonly startShard: (shardId: string) => Effect.Effect<void>
  /**
   * Pauses the worker: no new record reaches the handler (a handler call already running
   * finishes), what was processed is still checkpointed, the leases held stay held and renewed,
   * no lease is taken. Completes at once.
   */
  readonly pause: Effect.Effect<void>
  /** Resumes a paused worker where it stopped: no record skipped, none twice. */
  readonly resume: Effect.Effect<void>
  readonly status: Effect.Effect<Status>
}

/**
 * Makes a handle, for the `control` option of one consumer at a time (a second consumer
 * attaching while one is attached is a defect).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ConsumerControl } from "@effect-kinesis/consumer"
 *
 * const pausedFromTheStart = Effect.tap(ConsumerControl.make, (control) => control.pause)
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const make: Effect.Effect<ConsumerControl> = Effect.sync(() => {
  const handle = {} as { -readonly [K in keyof ConsumerControl]: ConsumerControl[K] }
  const state = Internal.makeState(handle)
  handle[TypeId] = TypeId
  handle.stopShard = (shardId) =>
    Effect.suspend(() => {
      state.stopped.add(shardId)
      return state.coordinator === undefined ? Effect.void : state.coordinator.stopShard(shardId)
    })
  handle.startShard = (shardId) =>
    Effect.sync(() => {
      state.stopped.delete(shardId)
      state.coordinator?.unpark(shardId)
    })
  handle.pause = Effect.sync(() => {
    state.paused = true
    state.resumed.closeUnsafe()
  })
  handle.resume = Effect.sync(() => {
    state.paused = false
    state.resumed.openUnsafe()
  })
  handle.status = Effect.sync((): Status => {
    const coordinator = state.coordinator
    const held = coordinator?.held() ?? []
    return {
      workerId: coordinator?.workerId,
      paused: state.paused,
      stoppedShards: [...state.stopped].sort(),
      shards: held.map((owned): ShardStatus => {
        const progress = owned.progress()
        return {
          shardId: owned.shardId,
          state: owned.stopRequested ? "stopping" : state.paused ? "paused" : "processing",
          checkpoint: owned.lease.checkpoint,
          processed: progress?.processed ?? owned.lease.checkpoint,
          millisBehindLatest: owned.millisBehindLatest,
          recordsProcessed: progress?.records ?? 0
        }
      }).sort((a, b) => a.shardId < b.shardId ? -1 : a.shardId > b.shardId ? 1 : 0)
    }
  })
  return handle
})

/**
 * A handler that can be replaced while the consumer runs, from {@link swappable}.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { ConsumerControl, ConsumerRecord } from "@effect-kinesis/consumer"
 *
 * const toV2 = (s: ConsumerControl.Swappable<ConsumerRecord.ConsumerRecord<string>, void>) =>
 *   s.swap((record) => Effect.log(`v2 ${record.data}`))
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Swappable<In, Out, E = never, R = never> {
  /** Give this to `consumeWith` or `BatchProcessing.consumeBatchesWith` (or call it in your shard pipeline). */
  readonly handler: (input: In) => Effect.Effect<Out, E, R>
  /**
   * Sends every record whose call starts from now on to `next`, then waits until the calls of
   * the handlers before it that are running have finished: once it completes, they never run
   * again. Each record goes to exactly one handler; staging and checkpoints go on as before.
   */
  readonly swap: (next: (input: In) => Effect.Effect<Out, E, R>) => Effect.Effect<void>
}

interface Generation<In, Out, E, R> {
  readonly handler: (input: In) => Effect.Effect<Out, E, R>
  running: number
  idle: Deferred.Deferred<void> | undefined
}

/**
 * Wraps `handler` — a record handler, or a batch handler — so that it can be swapped at runtime.
 * The swap itself neither skips nor repeats a record: a record (or batch) goes to the handler
 * current when its call starts.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Serde } from "@effect-kinesis/core"
 * import { Consumer, ConsumerControl, type ConsumerRecord } from "@effect-kinesis/consumer"
 *
 * const program = Effect.gen(function*() {
 *   const swappable = yield* ConsumerControl.swappable((record: ConsumerRecord.ConsumerRecord<string>) =>
 *     Effect.log(`v1 ${record.data}`)
 *   )
 *   yield* Effect.forkChild(Consumer.consumeWith(swappable.handler, {
 *     stream: "orders",
 *     applicationName: "billing",
 *     deserializer: Serde.string
 *   }))
 *   yield* Effect.sleep("1 minute")
 *   yield* swappable.swap((record) => Effect.log(`v2 ${record.data}`))
 * })
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const swappable = <In, Out, E = never, R = never>(
  handler: (input: In) => Effect.Effect<Out, E, R>
): Effect.Effect<Swappable<In, Out, E, R>> =>
  Effect.sync(() => {
    let current: Generation<In, Out, E, R> = { handler, running: 0, idle: undefined }
    // The generations with calls running; a swap waits for all but the new one.
    const busy = new Set<Generation<In, Out, E, R>>()
    const swapping = Semaphore.makeUnsafe(1)
    const finished = (generation: Generation<In, Out, E, R>) =>
      Effect.sync(() => {
        generation.running--
        if (generation.running > 0) return
        busy.delete(generation)
        if (generation.idle !== undefined) Deferred.doneUnsafe(generation.idle, Effect.void)
      })
    return {
      handler: (input) =>
        Effect.suspend(() => {
          const generation = current
          generation.running++
          busy.add(generation)
          return Effect.ensuring(generation.handler(input), finished(generation))
        }),
      swap: (next) =>
        swapping.withPermit(Effect.suspend(() => {
          const replaced: Generation<In, Out, E, R> = { handler: next, running: 0, idle: undefined }
          current = replaced
          return Effect.forEach([...busy].filter((generation) => generation !== replaced), (generation) =>
            Effect.suspend(() => {
              if (generation.running === 0) return Effect.void
              generation.idle ??= Deferred.makeUnsafe<void>()
              return Deferred.await(generation.idle)
            }), { discard: true })
        }))
    }
  })
