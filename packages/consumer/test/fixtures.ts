/**
 * Shared test fixtures: an embedded Kinesis, writing records, and consumer workers run in the
 * background that record what they see.
 */
import type { PutRecordsRequestEntry } from "@aws-sdk/client-kinesis"
import {
  Consumer,
  type ConsumerRecord,
  type DiagnosticEvent,
  type ErrorHandling,
  LeaseRepository,
  type ShardAssignment
} from "@effect-kinesis/consumer"
import { AdminClient, Client, Serde } from "@effect-kinesis/core"
import { KinesisEmulator } from "@effect-kinesis/testing"
import { Duration, Effect, Fiber, Layer, Schedule, type Scope } from "effect"

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

export interface Worker {
  readonly workerId: string
  readonly seen: Array<ConsumerRecord.ConsumerRecord<string>>
  readonly events: Array<DiagnosticEvent.DiagnosticEvent>
  readonly fiber: Fiber.Fiber<void, unknown>
  /** Shards this worker currently holds, from its own events. */
  readonly held: () => ReadonlySet<string>
  readonly stop: Effect.Effect<void>
}

/** Runs `Consumer.consumeWith` in the background, recording records and diagnostic events. */
export const startWorker = (options: {
  readonly stream: string
  readonly workerId: string
  readonly repository: LeaseRepository.LeaseRepository["Service"]
  readonly handler?: ((record: ConsumerRecord.ConsumerRecord<string>) => Effect.Effect<void, Error>) | undefined
  readonly errorHandling?: ErrorHandling.Options<string, Error, never> | undefined
  readonly checkpointBatchSize?: number | undefined
  readonly checkpointInterval?: Duration.Input | undefined
  readonly lease?: Consumer.LeaseSettings | undefined
  readonly initialPosition?: Consumer.InitialPosition | undefined
  readonly fetch?: Consumer.FetchSettings | undefined
  readonly shardAssignment?: ShardAssignment.ShardAssignment | undefined
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
        applicationName: "test",
        workerId: options.workerId,
        deserializer: Serde.string,
        initialPosition: options.initialPosition,
        fetch: { pollInterval: "100 millis", ...options.fetch },
        lease: options.lease ?? fastLeases,
        checkpointBatchSize: options.checkpointBatchSize ?? 1000,
        checkpointInterval: options.checkpointInterval ?? "200 millis",
        errorHandling: options.errorHandling,
        shardAssignment: options.shardAssignment,
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

export const millis = (input: Duration.Input) => Duration.toMillis(Duration.fromInputUnsafe(input))
