/**
 * Ordered parallelism within a shard: records with the same partition key one after another in
 * shard order, records of different keys concurrently, and only the contiguous prefix of finished
 * records staged, so that a checkpoint never passes a record still running or not started.
 *
 * A plain state machine (a ring of the records admitted, the last unfinished record per key, a
 * queue of records ready to start) driven by a feeder fiber, `parallelism` worker fibers and the
 * downstream's pulls; no fiber per record.
 *
 * @internal
 */
import type { KinesisError } from "@effect-kinesis/core"
import { Cause, Effect, Exit, Latch, Queue, Result, Stream } from "effect"
import type { Checkpointable, Checkpointer } from "../Checkpointer.ts"
import type { ShardStream } from "../Consumer.ts"
import type { RecordDecodeFailed } from "../ConsumerError.ts"
import type { ConsumerRecord } from "../ConsumerRecord.ts"
import type { Handled, Options as ErrorHandlingOptions } from "../ErrorHandling.ts"
import { letFinishFor, stageMany } from "./checkpointer.ts"
import { whilePaused } from "./control.ts"
import * as RecordHandling from "./recordHandling.ts"

interface Entry<In, Out> {
  /** Position in delivery order (shard order). */
  readonly index: number
  readonly item: In
  readonly key: string
  /** The next record of the same key: it starts once this one is done. */
  next: Entry<In, Out> | undefined
  done: boolean
  outcome: Out | undefined
}

// Set by the consumer for the shard streams it makes: whether the lease is still held and the
// shard not being stopped. Records do not start otherwise.
const canStartBy = new WeakMap<Checkpointer, () => boolean>()
// Open while no admitted record is unstaged, or once the processing has ended: what a shard's
// end waits for before it decides whether every delivered record was staged.
const drainedBy = new WeakMap<Checkpointer, Latch.Latch>()

/**
 * Tells processing on `checkpointer` whether a record may start (lease held, shard not stopping).
 *
 * @internal
 */
export const register = (checkpointer: Checkpointer, canStart: () => boolean): void => {
  canStartBy.set(checkpointer, canStart)
}

/**
 * Waits, when parallel processing runs on `checkpointer`, until every record it admitted is
 * staged or it has stopped. The shard's records have ended when this is called, so nothing more
 * is admitted: the records still running would otherwise be left out of a shard's end.
 *
 * @internal
 */
export const settled = (checkpointer: Checkpointer): Effect.Effect<void> =>
  Effect.suspend(() => drainedBy.get(checkpointer)?.await ?? Effect.void)

/** Default of `window`: enough to keep `parallelism` busy past a hot key or a slow record. */
export const defaultWindow = (parallelism: number): number => Math.max(1000, parallelism * 10)

/** @internal */
export interface RunOptions<In, Out, E, R> {
  readonly checkpointer: Checkpointer
  readonly source: Stream.Stream<In, E>
  readonly parallelism: number
  readonly window: number
  readonly keyOf: (item: In) => string
  readonly positionOf: (item: In) => Checkpointable
  /** Processes one item; `STOP`: the shard stops before it (nothing from it on is staged). */
  readonly process: (item: In) => Effect.Effect<Out | typeof RecordHandling.STOP, E, R>
}

/**
 * Runs `process` over `source`, at most `parallelism` at a time and one at a time per key,
 * staging the contiguous prefix of finished items and emitting their outcomes in source order.
 *
 * Ends when the source has ended and every item is staged; when an item answers `STOP` (once
 * the items before it are done); or when the lease is lost or the shard stopped (no item starts
 * then, those running finish). A failure of `process` fails the stream (the others running are
 * interrupted); a failure of the source fails it once the items before it are done. Interrupting
 * the stream is a graceful stop: nothing starts, the running items finish within the consumer's
 * `shutdownGracePeriod`.
 *
 * @internal
 */
export const run = <In, Out, E, R>(options: RunOptions<In, Out, E, R>): Stream.Stream<Out, E, R> =>
  Stream.unwrap(Effect.gen(function*() {
    const { checkpointer, parallelism, window } = options
    if (!Number.isInteger(parallelism) || parallelism < 1) {
      return yield* Effect.die(new RangeError(`parallelism must be a positive integer, got ${parallelism}`))
    }
    if (!Number.isInteger(window) || window < parallelism) {
      return yield* Effect.die(new RangeError(`window must be an integer ≥ parallelism, got ${window}`))
    }
    const canStart = canStartBy.get(checkpointer) ?? (() => true)
    const out = yield* Queue.unbounded<Out, E | Cause.Done>()

    // Admitted items below `tail`, staged below `head`; the unstaged ones live in the ring.
    const ring = new Array<Entry<In, Out> | undefined>(window)
    let head = 0
    let tail = 0
    // Admitted and not yet taken by the downstream: the window's bound.
    let pending = 0
    const lastOfKey = new Map<string, Entry<In, Out>>()
    const ready: Array<Entry<In, Out>> = []
    let readyHead = 0
    // The index of the first item that answered STOP: nothing from it on is started or staged.
    let limit = Number.POSITIVE_INFINITY
    // No item starts any more: all done, stopped, or the lease is lost.
    let ended = false
    let sourceEnded = false
    let sourceFailure: Cause.Cause<E> | undefined
    const wake = Latch.makeUnsafe(false)
    const space = Latch.makeUnsafe(true)
    const drained = Latch.makeUnsafe(true)

    const end = () => {
      ended = true
      wake.openUnsafe()
    }
    const checkComplete = () => {
      if (head === limit || (sourceEnded && head === tail)) end()
    }

    const admit = (item: In) => {
      const key = options.keyOf(item)
      const entry: Entry<In, Out> = { index: tail, item, key, next: undefined, done: false, outcome: undefined }
      ring[tail % window] = entry
      tail++
      pending++
      drained.closeUnsafe()
      const previous = lastOfKey.get(key)
      lastOfKey.set(key, entry)
      if (previous !== undefined) previous.next = entry
      else {
        ready.push(entry)
        wake.openUnsafe()
      }
    }

    const nextReady = (): Entry<In, Out> | undefined => {
      if (readyHead === ready.length) return undefined
      const entry = ready[readyHead++]!
      if (readyHead > 1024 && readyHead * 2 > ready.length) {
        ready.splice(0, readyHead)
        readyHead = 0
      }
      return entry
    }

    // The finished prefix not yet staged and emitted. One fiber at a time stages and emits, so
    // that outcomes are emitted in order and each only once staged.
    let unstaged: Array<Out> = []
    let unstagedUpTo: Checkpointable | undefined
    let staging = false
    const flush: Effect.Effect<void> = Effect.suspend(() => {
      const position = unstagedUpTo
      if (position === undefined) {
        staging = false
        // Drained only once staged: a shard's end waiting for it then finds every record staged.
        if (head === tail) drained.openUnsafe()
        checkComplete()
        return Effect.void
      }
      const outcomes = unstaged
      unstaged = []
      unstagedUpTo = undefined
      return Effect.andThen(
        stageMany(checkpointer, position, outcomes.length),
        Effect.suspend(() => {
          Queue.offerAllUnsafe(out, outcomes)
          return flush
        })
      )
    })

    const complete = (entry: Entry<In, Out>, outcome: Out): Effect.Effect<void> => {
      entry.done = true
      entry.outcome = outcome
      if (entry.next !== undefined) {
        ready.push(entry.next)
        wake.openUnsafe()
      } else if (lastOfKey.get(entry.key) === entry) lastOfKey.delete(entry.key)
      if (entry.index !== head) return Effect.void
      let last = entry
      while (head < tail) {
        const next = ring[head % window]!
        if (!next.done) break
        ring[head % window] = undefined
        unstaged.push(next.outcome!)
        last = next
        head++
      }
      unstagedUpTo = options.positionOf(last.item)
      if (staging) return Effect.void
      staging = true
      // Whole: finished records left unstaged by an interruption would be processed again.
      return Effect.uninterruptible(flush)
    }

    const worker: Effect.Effect<void, E, R> = Effect.gen(function*() {
      while (true) {
        if (ended) return
        const entry = nextReady()
        if (entry === undefined) {
          wake.closeUnsafe()
          yield* wake.await
          continue
        }
        if (entry.index >= limit) continue
        // A pause holds back the records not started yet; a stop or a lost lease ends the wait.
        yield* whilePaused(checkpointer, () => ended || !canStart())
        // The wait may have outlasted a stop, or a record before this one answering STOP.
        if (ended) return
        if (entry.index >= limit) continue
        if (!canStart()) return end()
        const outcome = yield* options.process(entry.item)
        if (outcome === RecordHandling.STOP) {
          if (entry.index < limit) limit = entry.index
          checkComplete()
          continue
        }
        yield* complete(entry, outcome)
      }
    })

    // Admits a chunk of the source, waiting for room in the window (the source's backpressure).
    const feed = (chunk: ReadonlyArray<In>): Effect.Effect<void> => {
      let i = 0
      const loop: Effect.Effect<void> = Effect.suspend(() => {
        while (i < chunk.length) {
          if (ended || limit !== Number.POSITIVE_INFINITY) return Effect.never
          if (pending >= window) {
            space.closeUnsafe()
            return Effect.andThen(space.await, loop)
          }
          admit(chunk[i++]!)
        }
        return Effect.void
      })
      return loop
    }

    drainedBy.set(checkpointer, drained)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        if (drainedBy.get(checkpointer) === drained) drainedBy.delete(checkpointer)
        drained.openUnsafe()
      })
    )

    yield* Stream.runForEachArray(options.source, feed).pipe(
      Effect.onExit((exit) =>
        Effect.sync(() => {
          sourceEnded = true
          if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) sourceFailure = exit.cause
          checkComplete()
        })
      ),
      Effect.forkScoped
    )

    // Forked after the feeder, so that closing the scope stops the workers (with their grace
    // period) before the source: the shard's final checkpoint then covers what they finished.
    const workers = Effect.all(Array.from({ length: parallelism }, () => worker), {
      concurrency: "unbounded",
      discard: true
    })
    yield* letFinishFor(checkpointer)(workers, end).pipe(
      Effect.onExit((exit) =>
        Effect.sync(() => {
          ended = true
          drained.openUnsafe()
          if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) Queue.failCauseUnsafe(out, exit.cause)
          else if (sourceFailure !== undefined && limit === Number.POSITIVE_INFINITY) {
            Queue.failCauseUnsafe(out, sourceFailure)
          } else Queue.endUnsafe(out)
        })
      ),
      Effect.forkScoped
    )

    return Stream.fromQueue(out).pipe(Stream.mapArray((outcomes) => {
      pending -= outcomes.length
      if (pending < window) space.openUnsafe()
      return outcomes
    }))
  }))

/** @internal */
export interface ProcessOptions<A, E, R> {
  readonly parallelism: number
  readonly window?: number | undefined
  readonly errorHandling?: ErrorHandlingOptions<A, E, R> | undefined
}

const keyOfResult = <A>(result: Result.Result<ConsumerRecord<A>, RecordDecodeFailed>) =>
  Result.isSuccess(result) ? result.success.partitionKey : result.failure.record.partitionKey

const positionOfResult = <A>(result: Result.Result<ConsumerRecord<A>, RecordDecodeFailed>) =>
  Result.isSuccess(result) ? result.success : result.failure.record

/**
 * A shard's records through `handler` with ordered parallelism, with or without an error
 * handling mode.
 *
 * @internal
 */
export const processShard = <A, E, R, R2>(
  shard: ShardStream<A>,
  handler: (record: ConsumerRecord<A>) => Effect.Effect<unknown, E, R>,
  options: ProcessOptions<A, E, R2>
): Stream.Stream<Handled<A, E>, E | KinesisError.KinesisError | RecordDecodeFailed, R | R2> => {
  const parallelism = options.parallelism
  const window = options.window ?? defaultWindow(parallelism)
  const errorHandling = options.errorHandling
  if (errorHandling === undefined) {
    return run<ConsumerRecord<A>, Handled<A, E>, E | KinesisError.KinesisError | RecordDecodeFailed, R>({
      checkpointer: shard.checkpointer,
      source: shard.records,
      parallelism,
      window,
      keyOf: (record) => record.partitionKey,
      positionOf: (record) => record,
      process: (record) => Effect.as(handler(record), { _tag: "Processed", record } as Handled<A, E>)
    })
  }
  return run({
    checkpointer: shard.checkpointer,
    source: shard.results,
    parallelism,
    window,
    keyOf: keyOfResult,
    positionOf: positionOfResult,
    process: RecordHandling.make(shard.shardId, handler, errorHandling)
  })
}
