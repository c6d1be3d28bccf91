/**
 * The state behind a `ConsumerControl` handle, and the gates through which the consumer hands
 * records on while a handle may pause it.
 *
 * @internal
 */
import { Effect, Latch, type Scope, Stream } from "effect"
import type { Checkpointer } from "../Checkpointer.ts"
import type { Holds, LeaseCoordinator } from "./leaseCoordinator.ts"

/** @internal */
export interface ControlState {
  paused: boolean
  /** Shards this worker must not take (until `startShard`). */
  readonly stopped: Set<string>
  /** Open while not paused. */
  readonly resumed: Latch.Latch
  /** The coordinator of the consumer attached now, if any. */
  coordinator: LeaseCoordinator | undefined
  /** Whether a consumer has attached (claims the handle before its coordinator exists). */
  claimed: boolean
  readonly holds: Holds
}

const states = new WeakMap<object, ControlState>()

/** @internal */
export const makeState = (handle: object): ControlState => {
  const state: ControlState = {
    paused: false,
    stopped: new Set(),
    resumed: Latch.makeUnsafe(true),
    coordinator: undefined,
    claimed: false,
    holds: {
      paused: () => state.paused,
      isStopped: (shardId) => state.stopped.has(shardId)
    }
  }
  states.set(handle, state)
  return state
}

/**
 * Claims the handle for one consumer for the current scope. Two consumers on one handle would
 * each obey its pause and stops, but its status and `stopShard` could only speak for one.
 *
 * @internal
 */
export const attach = (handle: object): Effect.Effect<ControlState, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      const state = states.get(handle)
      if (state === undefined) {
        return Effect.die(new Error("the control option takes a handle made by ConsumerControl.make"))
      }
      if (state.claimed) {
        return Effect.die(
          new Error("this ConsumerControl is already attached to a running consumer: make one handle per consumer")
        )
      }
      state.claimed = true
      return Effect.succeed(state)
    }),
    (state) =>
      Effect.sync(() => {
        state.claimed = false
        state.coordinator = undefined
      })
  )

/**
 * Holds back a shard's batches while the worker is paused (the fetcher then stops at its buffer).
 * A stop of the shard interrupts the wait with the stream.
 *
 * @internal
 */
export const gateBatches =
  (state: ControlState | undefined) => <A, E, R>(self: Stream.Stream<A, E, R>): Stream.Stream<A, E, R> =>
    state === undefined ? self : Stream.tap(self, () => state.paused ? state.resumed.await : Effect.void)

// For loops that hand records of an emitted batch to a handler one by one: `closed` says to wait,
// `wait` waits a little (the loop checks its own stop conditions between waits, so a stop or a
// shutdown while paused does not wait out the grace period).
interface RecordGate {
  readonly closed: () => boolean
  readonly wait: Effect.Effect<void>
}

const recordGate = (state: ControlState | undefined): RecordGate | undefined =>
  state === undefined ? undefined : {
    closed: () => state.paused,
    wait: Effect.raceFirst(state.resumed.await, Effect.sleep("100 millis"))
  }

// The gate of the consumer that made a shard's checkpointer, for processing paths that only see
// the shard (`processShard`, `Parallel`, `BatchProcessing`).
const byCheckpointer = new WeakMap<Checkpointer, RecordGate>()

/** @internal */
export const register = (checkpointer: Checkpointer, state: ControlState | undefined): void => {
  const gate = recordGate(state)
  if (gate !== undefined) byCheckpointer.set(checkpointer, gate)
}

/**
 * Waits while the worker of `checkpointer` is paused, until it resumes or `stopped()` holds
 * (looked at between short waits: a stop inside a grace period must not wait for a resume).
 *
 * @internal
 */
export const whilePaused = (checkpointer: Checkpointer, stopped: () => boolean): Effect.Effect<void> => {
  const gate = byCheckpointer.get(checkpointer)
  // Per record: nothing built unless paused.
  if (gate === undefined || !gate.closed()) return Effect.void
  const loop: Effect.Effect<void> = Effect.suspend(() =>
    gate.closed() && !stopped() ? Effect.andThen(gate.wait, loop) : Effect.void
  )
  return loop
}

/** Whether the worker of `checkpointer` is paused, as a function to call per record. @internal */
export const pausedFor = (checkpointer: Checkpointer): () => boolean =>
  byCheckpointer.get(checkpointer)?.closed ?? (() => false)
