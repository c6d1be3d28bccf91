/**
 * Making sure the lease table exists, has the KCL's key, and is ACTIVE.
 *
 * @internal
 */
import {
  CreateTableCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  ListTagsOfResourceCommand,
  type TableDescription,
  TagResourceCommand,
  UpdateContinuousBackupsCommand
} from "@aws-sdk/client-dynamodb"
import { LeaseRepository } from "@effect-kinesis/consumer"
import { Clock, Duration, Effect } from "effect"
import type { LeaseTableNotFound, TableOptions } from "../DynamoDbLeaseRepository.ts"
import { A } from "./leaseItem.ts"
import { createIndex, hasUsableIndex, indexAttributes, indexDefinition, indexStatus } from "./ownerIndex.ts"
import { call, errorName, type RetryPolicy, storeError } from "./sdkCall.ts"

/** @internal */
export interface EnsureTable {
  readonly sdk: DynamoDBClient
  readonly tableName: string
  readonly createIfMissing: boolean
  readonly table: TableOptions
  readonly policy: RetryPolicy
  readonly notFound: () => LeaseTableNotFound
  /** Create KCL 3.x's `LeaseOwnerToLeaseKeyIndex` when the table lacks it (with a new table, or added to one). */
  readonly createOwnerIndex: boolean
}

const describe = (
  { policy, sdk, tableName }: EnsureTable
): Effect.Effect<TableDescription | undefined, LeaseRepository.LeaseStoreError> =>
  call(
    policy,
    "DescribeTable",
    (abortSignal) => sdk.send(new DescribeTableCommand({ TableName: tableName }), { abortSignal })
  )
    .pipe(
      Effect.map((out) => out.Table),
      Effect.catchTag("ConditionFailed", () => Effect.succeed(undefined)),
      Effect.catchIf(
        (error) => errorName(error.cause) === "ResourceNotFoundException",
        () => Effect.succeed(undefined)
      )
    )

const invalid = (tableName: string, message: string) =>
  new LeaseRepository.LeaseStoreError({
    operation: "DescribeTable",
    message: `table ${tableName} is not a lease table: ${message}`,
    retryable: false
  })

const checkKey = (tableName: string, table: TableDescription): Effect.Effect<void, LeaseRepository.LeaseStoreError> => {
  const keys = table.KeySchema ?? []
  if (keys.length !== 1 || keys[0]!.AttributeName !== A.leaseKey || keys[0]!.KeyType !== "HASH") {
    return Effect.fail(invalid(tableName, `its key is not HASH ${A.leaseKey}`))
  }
  const type = table.AttributeDefinitions?.find((d) => d.AttributeName === A.leaseKey)?.AttributeType
  return type === undefined || type === "S" ? Effect.void : Effect.fail(invalid(tableName, `${A.leaseKey} is ${type}`))
}

const create = (ensure: EnsureTable): Effect.Effect<void, LeaseRepository.LeaseStoreError> => {
  const { policy, sdk, table, tableName } = ensure
  const billing = table.billing ?? { mode: "PAY_PER_REQUEST" }
  const tags = Object.entries(table.tags ?? {}).map(([Key, Value]) => ({ Key, Value }))
  return call(policy, "CreateTable", (abortSignal) =>
    sdk.send(
      new CreateTableCommand({
        TableName: tableName,
        KeySchema: [{ AttributeName: A.leaseKey, KeyType: "HASH" }],
        AttributeDefinitions: ensure.createOwnerIndex
          ? indexAttributes
          : [{ AttributeName: A.leaseKey, AttributeType: "S" }],
        ...(ensure.createOwnerIndex
          ? {
            GlobalSecondaryIndexes: [indexDefinition(
              billing.mode === "PAY_PER_REQUEST"
                ? undefined
                : { ReadCapacityUnits: billing.readCapacityUnits, WriteCapacityUnits: billing.writeCapacityUnits }
            )]
          }
          : {}),
        ...(billing.mode === "PAY_PER_REQUEST"
          ? { BillingMode: "PAY_PER_REQUEST" }
          : {
            BillingMode: "PROVISIONED",
            ProvisionedThroughput: {
              ReadCapacityUnits: billing.readCapacityUnits,
              WriteCapacityUnits: billing.writeCapacityUnits
            }
          }),
        ...(tags.length === 0 ? {} : { Tags: tags }),
        ...(table.deletionProtection === undefined ? {} : { DeletionProtectionEnabled: table.deletionProtection })
      }),
      { abortSignal }
    )).pipe(
      Effect.asVoid,
      // Another worker of the application created it first: fine, wait for it like for our own.
      Effect.catchTag("ConditionFailed", () => Effect.void),
      Effect.catchIf((error) => errorName(error.cause) === "ResourceInUseException", () => Effect.void)
    )
}

const awaitActive = (ensure: EnsureTable): Effect.Effect<TableDescription, LeaseRepository.LeaseStoreError> =>
  Effect.gen(function*() {
    const timeout = Duration.toMillis(Duration.fromInputUnsafe(ensure.table.activeTimeout ?? "5 minutes"))
    const deadline = (yield* Clock.currentTimeMillis) + timeout
    let delay = 50
    while (true) {
      const table = yield* describe(ensure)
      // UPDATING tables serve reads and writes; only CREATING ones do not yet.
      if (table !== undefined && (table.TableStatus === "ACTIVE" || table.TableStatus === "UPDATING")) return table
      if ((yield* Clock.currentTimeMillis) + delay > deadline) {
        return yield* new LeaseRepository.LeaseStoreError({
          operation: "CreateTable",
          message: `table ${ensure.tableName} not ACTIVE after ${Duration.format(Duration.millis(timeout))} (status ${
            table?.TableStatus ?? "missing"
          })`,
          retryable: true
        })
      }
      yield* Effect.sleep(Duration.millis(delay))
      delay = Math.min(delay * 2, 2_000)
    }
  })

// Tags are also given to CreateTable (tag-on-create, for tag-based IAM policies); endpoints that ignore them there
// (dynalite) get them afterwards.
const applyTags = (
  { policy, sdk, table }: EnsureTable,
  tableArn: string
): Effect.Effect<void, LeaseRepository.LeaseStoreError> =>
  Effect.gen(function*() {
    const wanted = Object.entries(table.tags ?? {})
    if (wanted.length === 0) return
    const existing = yield* call(policy, "ListTagsOfResource", (abortSignal) =>
      sdk.send(new ListTagsOfResourceCommand({ ResourceArn: tableArn }), { abortSignal })).pipe(
        Effect.catchTag("ConditionFailed", (error) =>
          Effect.fail(storeError("ListTagsOfResource", error)))
      )
    const missing = wanted.filter(([key, value]) =>
      !existing.Tags?.some((tag) => tag.Key === key && tag.Value === value)
    )
    if (missing.length === 0) return
    yield* call(policy, "TagResource", (abortSignal) =>
      sdk.send(
        new TagResourceCommand({ ResourceArn: tableArn, Tags: missing.map(([Key, Value]) => ({ Key, Value })) }),
        { abortSignal }
      )).pipe(Effect.catchTag("ConditionFailed", (error) => Effect.fail(storeError("TagResource", error))))
  })

const enablePointInTimeRecovery = (
  { policy, sdk, tableName }: EnsureTable
): Effect.Effect<void, LeaseRepository.LeaseStoreError> =>
  call(policy, "UpdateContinuousBackups", (abortSignal) =>
    sdk.send(
      new UpdateContinuousBackupsCommand({
        TableName: tableName,
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true }
      }),
      { abortSignal }
    )).pipe(
      Effect.asVoid,
      Effect.catchTag("ConditionFailed", (error) => Effect.fail(storeError("UpdateContinuousBackups", error))),
      // Emulators (dynalite) do not implement continuous backups; real DynamoDB does.
      Effect.catchIf(
        (error) => errorName(error.cause) === "UnknownOperationException",
        () => Effect.logWarning(`point-in-time recovery not enabled on ${tableName}: the endpoint does not support it`)
      )
    )

/**
 * Makes sure the lease table exists and is usable, creating it when it is missing and that is allowed. Returns the
 * table's description (for its owner index).
 *
 * @internal
 */
export const ensureTable = (
  ensure: EnsureTable
): Effect.Effect<TableDescription, LeaseTableNotFound | LeaseRepository.LeaseStoreError> =>
  Effect.gen(function*() {
    const existing = yield* describe(ensure)
    if (existing === undefined) {
      if (!ensure.createIfMissing) return yield* Effect.fail(ensure.notFound())
      yield* create(ensure)
      const created = yield* awaitActive(ensure)
      yield* checkKey(ensure.tableName, created)
      if (created.TableArn !== undefined) yield* applyTags(ensure, created.TableArn)
      if (ensure.table.pointInTimeRecovery === true) yield* enablePointInTimeRecovery(ensure)
      return yield* addOwnerIndex(ensure, created)
    }
    yield* checkKey(ensure.tableName, existing)
    const active = existing.TableStatus !== "ACTIVE" && existing.TableStatus !== "UPDATING"
      ? yield* awaitActive(ensure)
      : existing
    return yield* addOwnerIndex(ensure, active)
  })

// Added in the background as KCL 3.x adds it to a KCL 2.x table; the repository uses it once it is ACTIVE.
const addOwnerIndex = (
  ensure: EnsureTable,
  table: TableDescription
): Effect.Effect<TableDescription, LeaseRepository.LeaseStoreError> =>
  Effect.gen(function*() {
    if (!ensure.createOwnerIndex || indexStatus(table) !== undefined) return table
    yield* createIndex(ensure.sdk, ensure.tableName, table, ensure.policy)
    const updated = (yield* describe(ensure)) ?? table
    if (!hasUsableIndex(updated)) {
      yield* Effect.logWarning(
        `the lease table ${ensure.tableName} has no LeaseOwnerToLeaseKeyIndex after asking for it (the endpoint may not create indexes on existing tables); leases are found by scanning`
      )
    }
    return updated
  })
