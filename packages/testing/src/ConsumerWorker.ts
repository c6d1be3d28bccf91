/**
 * A consumer worker run in the background of a test, recording what it delivers and what it
 * reports: for scenarios with several workers, hand-offs, restarts and resharding, where a test
 * watches the records and diagnostic events of each worker and stops workers at will.
 *
 * @since 0.1.0
 */
import { Consumer, type ConsumerRecord, type DiagnosticEvent, type LeaseRepository } from "@effect-kinesis/consumer"
import type { Client } from "@effect-kinesis/core"
import { type Duration, Effect, Fiber, Layer, Schedule, type Scope } from "effect"
import { withLiveClock } from "./internal/liveClock.ts"

/**
 * A running worker.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { ConsumerWorker } from "@effect-kinesis/testing"
 *
 * const report = (worker: ConsumerWorker.ConsumerWorker<string>) =>
 *   Effect.log(`${worker.workerId}: ${worker.seen.length} records, holding ${[...worker.held()].join(", ")}`)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ConsumerWorker<A> {
  readonly workerId: string
  /** Every record the handler finished, in the order it finished them. */
  readonly seen: ReadonlyArray<ConsumerRecord.ConsumerRecord<A>>
  /** Every diagnostic event, in order. */
  readonly events: ReadonlyArray<DiagnosticEvent.DiagnosticEvent>
  /** The worker; it fails if the consumer fails. */
  readonly fiber: Fiber.Fiber<void, unknown>
  /** The shards it holds now, as its own events tell. */
  readonly held: () => ReadonlySet<string>
  /** Stops it as a shutdown does: final checkpoints, leases released. */
  readonly stop: Effect.Effect<void>
}

/**
 * What {@link start} needs: `Consumer.consumeWith`'s options, the lease store this worker uses,
 * and an optional handler run before a record counts as seen.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Serde } from "@effect-kinesis/core"
 * import { LeaseRepository } from "@effect-kinesis/consumer"
 * import type { ConsumerWorker } from "@effect-kinesis/testing"
 *
 * const options: ConsumerWorker.Options<string, never, never> = {
 *   stream: "orders",
 *   applicationName: "billing",
 *   workerId: "worker-1",
 *   deserializer: Serde.string,
 *   leases: LeaseRepository.layerMemory
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<A, E, R> extends Consumer.ConsumeWithOptions<A, E, never> {
  /** A worker needs an id of its own to be told apart. */
  readonly workerId: string
  /** Built for this worker and closed when it stops. Share one store between workers with `Layer.succeed`. */
  readonly leases: Layer.Layer<LeaseRepository.LeaseRepository, unknown, R>
  readonly handler?: ((record: ConsumerRecord.ConsumerRecord<A>) => Effect.Effect<void, E>) | undefined
}

/**
 * Starts a worker in the background of the current scope: `Consumer.consumeWith` with a handler
 * that records each record once handled, and an `onDiagnostic` that records each event (after
 * calling the one in the options, if any).
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { Serde } from "@effect-kinesis/core"
 * import { LeaseRepository } from "@effect-kinesis/consumer"
 * import { ConsumerWorker } from "@effect-kinesis/testing"
 *
 * const twoWorkers = Effect.gen(function*() {
 *   const store = Layer.succeed(LeaseRepository.LeaseRepository, yield* LeaseRepository.makeMemory())
 *   const options = { stream: "orders", applicationName: "billing", deserializer: Serde.string, leases: store }
 *   const first = yield* ConsumerWorker.start({ ...options, workerId: "w1" })
 *   const second = yield* ConsumerWorker.start({ ...options, workerId: "w2" })
 *   yield* Effect.sleep("5 seconds")
 *   yield* first.stop
 *   return second.seen.length
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const start = <A, E = never, R = never>(
  options: Options<A, E, R>
): Effect.Effect<ConsumerWorker<A>, never, Client.Client | R | Scope.Scope> =>
  Effect.gen(function*() {
    const seen: Array<ConsumerRecord.ConsumerRecord<A>> = []
    const events: Array<DiagnosticEvent.DiagnosticEvent> = []
    const held = new Set<string>()
    const { handler, leases, onDiagnostic, ...consumeOptions } = options
    const record = (event: DiagnosticEvent.DiagnosticEvent) =>
      Effect.sync(() => {
        events.push(event)
        if (event._tag === "LeaseAcquired") held.add(event.shardId)
        if (event._tag === "LeaseLost" || event._tag === "LeaseReleased" || event._tag === "ShardEnded") {
          held.delete(event.shardId)
        }
      })
    const fiber = yield* Consumer.consumeWith(
      (r: ConsumerRecord.ConsumerRecord<A>) =>
        handler === undefined
          ? Effect.sync(() => seen.push(r))
          : Effect.tap(handler(r), () => Effect.sync(() => seen.push(r))),
      {
        ...consumeOptions,
        onDiagnostic: onDiagnostic === undefined
          ? record
          : (event) => Effect.andThen(onDiagnostic(event), record(event))
      }
    ).pipe(
      Effect.provide(Consumer.layer.pipe(Layer.provide(leases))),
      Effect.forkScoped
    )
    return {
      workerId: options.workerId,
      seen,
      events,
      fiber,
      held: () => held,
      stop: Effect.asVoid(Fiber.interrupt(fiber))
    }
  })

/**
 * Lease timings for tests: expiry in 2 s, releases and new leases noticed within 200 ms, shards
 * listed every second. Far too eager for production.
 *
 * @example
 * ```ts
 * import { ConsumerWorker } from "@effect-kinesis/testing"
 *
 * // Only a release can move a lease during the test.
 * const lease = { ...ConsumerWorker.fastLeases, expiry: "5 minutes" }
 * ```
 *
 * @since 0.1.0
 * @category settings
 */
export const fastLeases = {
  expiry: "2 seconds",
  renewInterval: "500 millis",
  takeInterval: "1 second",
  scanInterval: "200 millis",
  shardSyncInterval: "1 second"
} as const satisfies Consumer.LeaseSettings

/**
 * Waits until `check` holds, polling every 100 ms on the real clock, failing with an error naming
 * `what` after `timeout`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ConsumerWorker } from "@effect-kinesis/testing"
 *
 * const allDelivered = (worker: ConsumerWorker.ConsumerWorker<string>, n: number) =>
 *   ConsumerWorker.eventually(Effect.sync(() => worker.seen.length >= n), "20 seconds", `${n} records`)
 * ```
 *
 * @since 0.1.0
 * @category utils
 */
export const eventually = <E, R>(
  check: Effect.Effect<boolean, E, R>,
  timeout: Duration.Input = "30 seconds",
  what = "condition"
): Effect.Effect<void, E | Error, R> =>
  check.pipe(
    Effect.filterOrFail((ok) => ok, () => new Error(`not yet: ${what}`)),
    Effect.retry({ schedule: Schedule.spaced("100 millis") }),
    Effect.timeoutOrElse({
      duration: timeout,
      orElse: () => Effect.fail(new Error(`timed out waiting for ${what}`))
    }),
    Effect.asVoid,
    withLiveClock
  )
