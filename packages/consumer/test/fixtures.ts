/**
 * Shared test fixtures: an embedded Kinesis, writing records, and consumer workers run in the
 * background that record what they see.
 */
import type { PutRecordsRequestEntry } from "@aws-sdk/client-kinesis"
import type { Consumer, ConsumerRecord, EnhancedFanOut, ErrorHandling, ShardAssignment } from "@effect-kinesis/consumer"
import { LeaseRepository } from "@effect-kinesis/consumer"
import { AdminClient, Client, Serde } from "@effect-kinesis/core"
import { ConsumerWorker, KinesisEmulator } from "@effect-kinesis/testing"
import { Duration, Effect, Layer, Schedule, type Scope } from "effect"

export const KinesisLive = Layer.unwrap(
  Effect.map(
    Effect.service(KinesisEmulator.KinesisEmulator),
    (emulator) => Layer.provideMerge(AdminClient.layer, Client.layer(emulator.clientConfig))
  )
).pipe(Layer.provideMerge(KinesisEmulator.layer()))

const encoder = new TextEncoder()

/** Writes records (all accepted before it returns), in order per partition key. */
export const put = (
  stream: string,
  records: ReadonlyArray<
    { readonly partitionKey: string; readonly data: string | Uint8Array; readonly explicitHashKey?: string }
  >
) =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    for (let i = 0; i < records.length; i += 250) {
      let pending: Array<PutRecordsRequestEntry> = records.slice(i, i + 250).map((r) => ({
        PartitionKey: r.partitionKey,
        Data: typeof r.data === "string" ? encoder.encode(r.data) : r.data,
        ...(r.explicitHashKey !== undefined ? { ExplicitHashKey: r.explicitHashKey } : {})
      }))
      while (pending.length > 0) {
        const out = yield* client.putRecords(stream, pending)
        const results = out.Records ?? []
        // Failed records are retried after the whole batch; keep keys in order by retrying a failed
        // record with everything after it.
        const firstFailed = results.findIndex((r) => r.ErrorCode !== undefined)
        pending = firstFailed < 0 ? [] : pending.slice(firstFailed)
      }
    }
  })

/** Waits until `check` holds (polling), failing after `timeout`. */
export const eventually = <E, R>(
  check: Effect.Effect<boolean, E, R>,
  timeout: Duration.Input = "30 seconds",
  what = "condition"
) =>
  check.pipe(
    Effect.filterOrFail((ok) => ok, () => new Error(`not yet: ${what}`)),
    Effect.retry({ schedule: Schedule.spaced("100 millis") }),
    Effect.timeoutOrElse({
      duration: timeout,
      orElse: () => Effect.fail(new Error(`timed out waiting for ${what}`))
    }),
    Effect.asVoid
  )

export const fastLeases = {
  expiry: "2 seconds",
  renewInterval: "500 millis",
  takeInterval: "1 second",
  scanInterval: "200 millis",
  shardSyncInterval: "1 second"
} as const

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
