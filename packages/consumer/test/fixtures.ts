/**
 * Shared test fixtures: an embedded Kinesis, writing records, and consumer workers run in the
 * background that record what they see.
 */
import type {
  Consumer,
  ConsumerRecord,
  DiagnosticEvent,
  EnhancedFanOut,
  ErrorHandling,
  ShardAssignment
} from "@effect-kinesis/consumer"
import { LeaseRepository } from "@effect-kinesis/consumer"
import { AdminClient, Client, Serde } from "@effect-kinesis/core"
import { ConsumerWorker, KinesisEmulator, StreamFixtures } from "@effect-kinesis/testing"
import { Duration, Effect, Layer, type Scope } from "effect"

export const KinesisLive = Layer.unwrap(
  Effect.map(
    Effect.service(KinesisEmulator.KinesisEmulator),
    (emulator) => Layer.provideMerge(AdminClient.layer, Client.layer(emulator.clientConfig))
  )
).pipe(Layer.provideMerge(KinesisEmulator.layer()))

/** Writes records (all accepted before it returns), in order per partition key. */
export const put = StreamFixtures.putInOrder

export const eventually = ConsumerWorker.eventually

export const fastLeases = ConsumerWorker.fastLeases

/** `Consumer.shardedStream` options for one worker `w` on `stream`, with the fast test timings. */
export const shardedStreamOptions = (stream: string): Consumer.ShardedStreamOptions<string> => ({
  stream,
  applicationName: "test",
  workerId: "w",
  deserializer: Serde.string,
  fetch: { pollInterval: "100 millis" },
  lease: fastLeases
})

export type Worker = ConsumerWorker.ConsumerWorker<string>

/** Runs `Consumer.consumeWith` in the background on `repository`, recording records and diagnostic events. */
export const startWorker = (options: {
  readonly stream: string
  readonly workerId: string
  readonly repository: LeaseRepository.LeaseRepository["Service"]
  readonly applicationName?: string | undefined
  readonly handler?: ((record: ConsumerRecord.ConsumerRecord<string>) => Effect.Effect<void, Error>) | undefined
  readonly errorHandling?: ErrorHandling.Options<string, Error, never> | undefined
  readonly checkpointBatchSize?: number | undefined
  readonly checkpointInterval?: Duration.Input | undefined
  readonly lease?: Consumer.LeaseSettings | undefined
  readonly initialPosition?: Consumer.InitialPosition | undefined
  readonly fetch?: Consumer.FetchSettings | undefined
  readonly enhancedFanOut?: EnhancedFanOut.Settings | undefined
  readonly shardAssignment?: ShardAssignment.ShardAssignment | undefined
  readonly shutdownGracePeriod?: Duration.Input | undefined
  readonly onDiagnostic?: ((event: DiagnosticEvent.DiagnosticEvent) => Effect.Effect<void>) | undefined
  readonly metrics?: Consumer.MetricsSettings | undefined
}): Effect.Effect<Worker, never, Client.Client | Scope.Scope> => {
  const { repository, ...rest } = options
  return ConsumerWorker.start({
    ...rest,
    applicationName: options.applicationName ?? "test",
    deserializer: Serde.string,
    lease: options.lease ?? fastLeases,
    checkpointBatchSize: options.checkpointBatchSize ?? 1000,
    checkpointInterval: options.checkpointInterval ?? "200 millis",
    fetch: { pollInterval: "100 millis", ...options.fetch },
    leases: Layer.succeed(LeaseRepository.LeaseRepository, repository)
  })
}

export const millis = (input: Duration.Input) => Duration.toMillis(Duration.fromInputUnsafe(input))
