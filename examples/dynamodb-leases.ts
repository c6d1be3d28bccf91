/**
 * The same consumer with its leases in DynamoDB instead of memory: only the `LeaseRepository`
 * layer changes. The lease table is KCL-compatible (named after the application, one item per
 * shard), so it can be inspected, or shared with KCL workers during a migration.
 *
 *   node --conditions=@effect-kinesis/source examples/dynamodb-leases.ts [records=1000]
 *
 * Uses embedded kinesis-mock and dynalite (or `KINESIS_ENDPOINT` / `DYNAMODB_ENDPOINT` when set),
 * prints the lease table after consuming, and exits non-zero unless every shard's lease was
 * checkpointed past its start.
 */
import { Consumer, LeaseRepository } from "@effect-kinesis/consumer"
import { AdminClient, ExtendedSequenceNumber, Serde } from "@effect-kinesis/core"
import { DynamoDBClient, DynamoDBLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { Producer } from "@effect-kinesis/producer"
import { DynamoEmulator, type Emulator } from "@effect-kinesis/testing"
import { type Config, Deferred, Effect, Fiber, Layer } from "effect"
import { KinesisLive, run } from "./live.ts"

const records = Number(process.argv[2] ?? 1000)
const stream = `dynamodb-leases-${Date.now()}`
const applicationName = `dynamodb-leases-example-${Date.now()}`

const program = Effect.gen(function*() {
  yield* (yield* AdminClient.AdminClient).createStream(stream, { shardCount: 2 })
  yield* Effect.scoped(Effect.gen(function*() {
    const producer = yield* Producer.make({ stream, serializer: Serde.string })
    yield* producer.produceChunk(Array.from({ length: records }, (_, i) => ({ partitionKey: `k${i}`, data: `${i}` })))
  }))

  let consumed = 0
  const done = yield* Deferred.make<void>()
  const fiber = yield* Consumer.consumeWith(
    () => Effect.suspend(() => ++consumed === records ? Deferred.succeed(done, undefined) : Effect.void),
    { stream, applicationName, deserializer: Serde.string, fetch: { pollInterval: "200 millis" } }
  ).pipe(Effect.forkChild)
  yield* Deferred.await(done).pipe(Effect.timeout("60 seconds"))
  yield* Fiber.interrupt(fiber) // checkpoints and releases the leases (no owner left in the table)

  const leases = yield* (yield* LeaseRepository.LeaseRepository).list
  for (const lease of leases) {
    console.log(
      `${lease.leaseKey}  counter=${lease.leaseCounter}  owner=${lease.leaseOwner ?? "-"}  `
        + `checkpoint=${lease.checkpoint.sequenceNumber}`
    )
  }
  if (leases.length !== 2 || leases.some((lease) => ExtendedSequenceNumber.isSentinel(lease.checkpoint))) {
    return yield* Effect.fail(new Error("expected two leases checkpointed past TRIM_HORIZON"))
  }
})

// ---- the only part that differs from an in-memory consumer -------------------------------------------
const Leases = DynamoDBLeaseRepository.layer({ applicationName })
// With the in-memory store it would be: const Leases = LeaseRepository.layerMemory
// ---------------------------------------------------------------------------------------------------

const DynamoLive: Layer.Layer<DynamoDBClient.DynamoDBClient, Config.ConfigError | Emulator.EmulatorStartError> =
  process.env.DYNAMODB_ENDPOINT !== undefined
    ? DynamoDBClient.layerConfig
    : Layer.unwrap(
      Effect.map(Effect.service(DynamoEmulator.DynamoEmulator), (dynamo) => DynamoDBClient.layer(dynamo.clientConfig))
    ).pipe(Layer.provide(DynamoEmulator.layer()))

const Live = Consumer.layer.pipe(
  Layer.provideMerge(Leases.pipe(Layer.provide(DynamoLive))),
  Layer.provideMerge(KinesisLive)
)

run(program.pipe(Effect.provide(Live)))
