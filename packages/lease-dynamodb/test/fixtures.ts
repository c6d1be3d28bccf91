/**
 * Fixtures for running the consumer on the DynamoDB lease store: embedded kinesis-mock and dynalite, writing and
 * reading records, workers run in the background that record what they see, and raw access to the lease table.
 */
import { type AttributeValue, CreateTableCommand, PutItemCommand, ScanCommand } from "@aws-sdk/client-dynamodb"
import type {
  Consumer,
  ConsumerRecord,
  DiagnosticEvent,
  Lease,
  LeaseRepository,
  ShardAssignment
} from "@effect-kinesis/consumer"
import { Client, type InvalidSetting, Serde } from "@effect-kinesis/core"
import { DynamoDbClient, DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { ConsumerWorker, DynamoEmulator, KinesisEmulator, StreamFixtures } from "@effect-kinesis/testing"
import { type Duration, Effect, Layer, type Scope } from "effect"
import { randomUUID } from "node:crypto"

const DynamoClientLive = Layer.unwrap(
  Effect.map(Effect.service(DynamoEmulator.DynamoEmulator), (dynamo) => DynamoDbClient.layer(dynamo.clientConfig))
)

/** Kinesis (clients + emulator) and DynamoDB (client + emulator), one of each per test file. */
export const Env = Layer.mergeAll(
  KinesisEmulator.layerClient.pipe(Layer.provideMerge(KinesisEmulator.layer())),
  DynamoClientLive.pipe(Layer.provideMerge(DynamoEmulator.layer()))
)

/** A lease table (and application) name no other scenario uses. */
export const uniqueTable = (label: string) => `${label}-${randomUUID().slice(0, 8)}`

/** Writes records (all accepted before it returns), in order per partition key. */
export const put = StreamFixtures.putInOrder

/**
 * Records with unique ids (`r0`, `r1`, …) over 97 partition keys, written 20 at a time every `pause` until interrupted;
 * `written.count` is how many were written.
 */
export const produce = (stream: string, written: { count: number }, pause: Duration.Input = "40 millis") =>
  Effect.gen(function*() {
    while (true) {
      const batch = Array.from({ length: 20 }, (_, i) => {
        const id = written.count + i
        return { partitionKey: `key-${id % 97}`, data: `r${id}` }
      })
      yield* put(stream, batch)
      written.count += batch.length
      yield* Effect.sleep(pause)
    }
  })

const decoder = new TextDecoder()

type GetRecordsOutput = Effect.Success<ReturnType<Client.Client["Service"]["getRecords"]>>

/** A record as Kinesis stores it, read straight from the shard (not through the consumer). */
export interface StoredRecord {
  readonly shardId: string
  readonly sequenceNumber: string
  readonly data: string
}

/** Every record of a shard so far, read from TRIM_HORIZON until a read comes back empty. */
export const readShard = (stream: string, shardId: string) =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    const out: Array<StoredRecord> = []
    let iterator: string | undefined = yield* client.getShardIterator(stream, { shardId, type: "TRIM_HORIZON" })
    while (iterator !== undefined) {
      const page: GetRecordsOutput = yield* client.getRecords({ ShardIterator: iterator })
      const records = page.Records ?? []
      for (const r of records) out.push({ shardId, sequenceNumber: r.SequenceNumber!, data: decoder.decode(r.Data!) })
      iterator = records.length === 0 ? undefined : page.NextShardIterator
    }
    return out
  })

export const eventually = ConsumerWorker.eventually

export const fastLeases = ConsumerWorker.fastLeases

type Store = Layer.Layer<
  LeaseRepository.LeaseRepository,
  DynamoDbLeaseRepository.LeaseTableNotFound | LeaseRepository.LeaseStoreError | InvalidSetting.InvalidSetting,
  DynamoDbClient.DynamoDbClient
>

export type Worker = ConsumerWorker.ConsumerWorker<string>

/**
 * Runs `Consumer.consumeWith` in the background on its own DynamoDB lease store (the table named after the
 * application, unless `store` says otherwise), recording records and diagnostic events.
 */
export const startWorker = (options: {
  readonly stream: string
  readonly applicationName: string
  readonly workerId: string
  readonly store?: Store | undefined
  readonly handler?: ((record: ConsumerRecord.ConsumerRecord<string>) => Effect.Effect<void>) | undefined
  readonly checkpointBatchSize?: number | undefined
  readonly checkpointInterval?: Duration.Input | undefined
  readonly lease?: Consumer.LeaseSettings | undefined
  readonly shardAssignment?: ShardAssignment.ShardAssignment | undefined
  readonly onDiagnostic?: ((event: DiagnosticEvent.DiagnosticEvent) => Effect.Effect<void>) | undefined
}): Effect.Effect<Worker, never, Client.Client | DynamoDbClient.DynamoDbClient | Scope.Scope> =>
  ConsumerWorker.start({
    stream: options.stream,
    applicationName: options.applicationName,
    workerId: options.workerId,
    deserializer: Serde.string,
    fetch: { pollInterval: "100 millis" },
    lease: options.lease ?? fastLeases,
    checkpointBatchSize: options.checkpointBatchSize ?? 1000,
    checkpointInterval: options.checkpointInterval ?? "200 millis",
    handler: options.handler,
    shardAssignment: options.shardAssignment,
    onDiagnostic: options.onDiagnostic,
    leases: options.store ?? DynamoDbLeaseRepository.layer({ applicationName: options.applicationName })
  })

/** A store of our own on the table, for reading what the workers left. */
export const observer = (applicationName: string) => DynamoDbLeaseRepository.make({ applicationName })

/** The leases of a table, by lease key. */
export const leasesByKey = (leases: ReadonlyArray<Lease.Lease>) => new Map(leases.map((l) => [l.leaseKey, l]))

export type Item = Record<string, AttributeValue>

/** Every item of a table, as DynamoDB stores it, by `leaseKey`. */
export const rawItems = (table: string) =>
  Effect.gen(function*() {
    const { sdk } = yield* DynamoDbClient.DynamoDbClient
    const items = new Map<string, Item>()
    let startKey: Item | undefined = undefined
    do {
      const page = yield* Effect.promise((abortSignal) =>
        sdk.send(new ScanCommand({ TableName: table, ConsistentRead: true, ExclusiveStartKey: startKey }), {
          abortSignal
        })
      )
      for (const item of page.Items ?? []) items.set(item.leaseKey!.S!, item)
      startKey = page.LastEvaluatedKey
    } while (startKey !== undefined)
    return items
  })

/** Creates the lease table as KCL 2.x does (provisioned), without waiting for it to become ACTIVE. */
export const createKclTable = (table: string) =>
  Effect.flatMap(Effect.service(DynamoDbClient.DynamoDbClient), ({ sdk }) =>
    Effect.promise((abortSignal) =>
      sdk.send(
        new CreateTableCommand({
          TableName: table,
          KeySchema: [{ AttributeName: "leaseKey", KeyType: "HASH" }],
          AttributeDefinitions: [{ AttributeName: "leaseKey", AttributeType: "S" }],
          ProvisionedThroughput: { ReadCapacityUnits: 10, WriteCapacityUnits: 10 }
        }),
        { abortSignal }
      )
    ))

/** Writes an item as another program (the KCL) would. */
export const putRaw = (table: string, item: Item) =>
  Effect.flatMap(
    Effect.service(DynamoDbClient.DynamoDbClient),
    ({ sdk }) =>
      Effect.promise((abortSignal) => sdk.send(new PutItemCommand({ TableName: table, Item: item }), { abortSignal }))
  )

/** Each attribute's name and DynamoDB type (`S`, `N`, `SS`, …), sorted by name. */
export const attributeTypes = (item: Item | undefined): Record<string, string> =>
  Object.fromEntries(
    Object.entries(item ?? {})
      .map(([name, value]) => [name, Object.entries(value).find(([, v]) => v !== undefined)![0]] as const)
      .sort(([a], [b]) => a.localeCompare(b))
  )

/** The values a worker delivered, keyed by partition key, in delivery order. */
export const perKey = (records: ReadonlyArray<ConsumerRecord.ConsumerRecord<string>>) => {
  const keys = new Map<string, Array<string>>()
  for (const record of records) keys.set(record.partitionKey, [...(keys.get(record.partitionKey) ?? []), record.data])
  return keys
}

/**
 * How often each record id `r0`…`r<written - 1>` was handled, over all workers: the duplicates and the lost. `idOf`
 * reads a record's id from its data (the data itself by default).
 */
export const tally = (
  workers: ReadonlyArray<Worker>,
  written: number,
  idOf: (data: string) => string = (data) => data
) => {
  const counts = new Map<string, number>()
  for (const worker of workers) {
    for (const r of worker.seen) counts.set(idOf(r.data), (counts.get(idOf(r.data)) ?? 0) + 1)
  }
  let duplicates = 0
  let lost = 0
  for (let id = 0; id < written; id++) {
    const n = counts.get(`r${id}`) ?? 0
    if (n === 0) lost++
    else duplicates += n - 1
  }
  return { duplicates, lost }
}
