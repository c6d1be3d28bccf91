/**
 * Consumer workers in enhanced fan-out mode, recording what they see (the fan-out twin of
 * `startWorker` in `fixtures.ts`).
 */
import {
  Consumer,
  type ConsumerRecord,
  type DiagnosticEvent,
  type EnhancedFanOut,
  LeaseRepository
} from "@effect-kinesis/consumer"
import { type Client, Serde } from "@effect-kinesis/core"
import { type Duration, Effect, Fiber, Schedule, type Scope } from "effect"
import { fastLeases, type Worker } from "./fixtures.ts"

/** Fast enough for tests on kinesis-mock (one event a second per subscription). */
export const fanOutSettings: EnhancedFanOut.Settings = {
  stallTimeout: "5 seconds",
  resourceInUseDelay: "500 millis",
  shardEndCheckInterval: "1 second",
  retrySchedule: Schedule.spaced("200 millis"),
  registrationPollInterval: "100 millis"
}

/** Runs `Consumer.consumeWith` with enhanced fan-out in the background. */
export const startFanOutWorker = (options: {
  readonly stream: string
  readonly workerId: string
  readonly repository: LeaseRepository.LeaseRepository["Service"]
  readonly applicationName?: string | undefined
  readonly enhancedFanOut?: EnhancedFanOut.Settings | undefined
  readonly handler?: ((record: ConsumerRecord.ConsumerRecord<string>) => Effect.Effect<void>) | undefined
  readonly checkpointBatchSize?: number | undefined
  readonly checkpointInterval?: Duration.Input | undefined
  readonly lease?: Consumer.LeaseSettings | undefined
  readonly initialPosition?: Consumer.InitialPosition | undefined
}): Effect.Effect<Worker, never, Client.Client | Scope.Scope> =>
  Effect.gen(function*() {
    const seen: Array<ConsumerRecord.ConsumerRecord<string>> = []
    const events: Array<DiagnosticEvent.DiagnosticEvent> = []
    const held = new Set<string>()
    const handler = options.handler
    const fiber = yield* Consumer.consumeWith(
      (record: ConsumerRecord.ConsumerRecord<string>) =>
        handler === undefined
          ? Effect.sync(() => seen.push(record))
          : Effect.tap(handler(record), () => Effect.sync(() => seen.push(record))),
      {
        stream: options.stream,
        applicationName: options.applicationName ?? "test",
        workerId: options.workerId,
        deserializer: Serde.string,
        initialPosition: options.initialPosition,
        enhancedFanOut: { ...fanOutSettings, ...options.enhancedFanOut },
        lease: options.lease ?? fastLeases,
        checkpointBatchSize: options.checkpointBatchSize ?? 1000,
        checkpointInterval: options.checkpointInterval ?? "200 millis",
        onDiagnostic: (event) =>
          Effect.sync(() => {
            events.push(event)
            if (event._tag === "LeaseAcquired") held.add(event.shardId)
            if (event._tag === "LeaseLost" || event._tag === "LeaseReleased" || event._tag === "ShardEnded") {
              held.delete(event.shardId)
            }
          })
      }
    ).pipe(
      Effect.provide(Consumer.layer),
      Effect.provideService(LeaseRepository.LeaseRepository, options.repository),
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
