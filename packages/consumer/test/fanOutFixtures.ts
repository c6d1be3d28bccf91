/**
 * Consumer workers in enhanced fan-out mode, recording what they see (the fan-out twin of
 * `startWorker` in `fixtures.ts`).
 */
import type { Consumer, ConsumerRecord, EnhancedFanOut, LeaseRepository } from "@effect-kinesis/consumer"
import type { Client } from "@effect-kinesis/core"
import { type Duration, type Effect, Schedule, type Scope } from "effect"
import { startWorker, type Worker } from "./fixtures.ts"

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
  startWorker({ ...options, enhancedFanOut: { ...fanOutSettings, ...options.enhancedFanOut } })
