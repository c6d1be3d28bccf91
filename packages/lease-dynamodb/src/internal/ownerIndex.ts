/**
 * KCL 3.x's `LeaseOwnerToLeaseKeyIndex`: a global secondary index of the lease table keyed by `leaseOwner` (hash) and
 * `leaseKey` (range), projecting keys only, through which a worker finds its own leases with a Query. Creating it,
 * telling whether a table has it, and querying it.
 *
 * @internal
 */
import {
  type DynamoDBClient,
  type GlobalSecondaryIndex,
  QueryCommand,
  type TableDescription,
  UpdateTableCommand
} from "@aws-sdk/client-dynamodb"
import type { LeaseRepository } from "@effect-kinesis/consumer"
import { Effect } from "effect"
import { A, type Item, S } from "./leaseItem.ts"
import { call, errorName, type RetryPolicy, storeError } from "./sdkCall.ts"

/** The index's name, as the KCL 3.x names it. @internal */
export const INDEX_NAME = "LeaseOwnerToLeaseKeyIndex"

/** The index's attributes, for `AttributeDefinitions`. @internal */
export const indexAttributes = [
  { AttributeName: A.leaseOwner, AttributeType: "S" as const },
  { AttributeName: A.leaseKey, AttributeType: "S" as const }
]

/**
 * The index as the KCL 3.x creates it; on a provisioned table with the table's capacity (the KCL does the same).
 *
 * @internal
 */
export const indexDefinition = (
  throughput: { readonly ReadCapacityUnits: number; readonly WriteCapacityUnits: number } | undefined
): GlobalSecondaryIndex => ({
  IndexName: INDEX_NAME,
  KeySchema: [{ AttributeName: A.leaseOwner, KeyType: "HASH" }, { AttributeName: A.leaseKey, KeyType: "RANGE" }],
  Projection: { ProjectionType: "KEYS_ONLY" },
  ...(throughput === undefined ? {} : { ProvisionedThroughput: throughput })
})

/** The index's status on the table (`ACTIVE`, `CREATING`…), `undefined` when it has none. @internal */
export const indexStatus = (table: TableDescription | undefined): string | undefined =>
  table?.GlobalSecondaryIndexes?.find((index) => index.IndexName === INDEX_NAME)?.IndexStatus

/** Whether the table has the index with the KCL's key schema (another index of that name would be of no use). @internal */
export const hasUsableIndex = (table: TableDescription | undefined): boolean => {
  const index = table?.GlobalSecondaryIndexes?.find((i) => i.IndexName === INDEX_NAME)
  const keys = index?.KeySchema ?? []
  return keys.length === 2 &&
    keys.some((k) => k.AttributeName === A.leaseOwner && k.KeyType === "HASH") &&
    keys.some((k) => k.AttributeName === A.leaseKey && k.KeyType === "RANGE")
}

/**
 * Adds the index to an existing table, as KCL 3.x does at its first start on a KCL 2.x table. DynamoDB builds it in
 * the background (the table stays usable); an endpoint that cannot (dynalite ignores the request) leaves the table
 * without it, and the repository goes on scanning.
 *
 * @internal
 */
export const createIndex = (
  sdk: DynamoDBClient,
  tableName: string,
  table: TableDescription,
  policy: RetryPolicy
): Effect.Effect<void, LeaseRepository.LeaseStoreError> => {
  const provisioned = table.BillingModeSummary?.BillingMode !== "PAY_PER_REQUEST" &&
    table.ProvisionedThroughput?.ReadCapacityUnits !== undefined &&
    table.ProvisionedThroughput.ReadCapacityUnits > 0
  const throughput = provisioned
    ? {
      ReadCapacityUnits: table.ProvisionedThroughput!.ReadCapacityUnits!,
      WriteCapacityUnits: table.ProvisionedThroughput!.WriteCapacityUnits!
    }
    : undefined
  const { IndexName, KeySchema, Projection, ProvisionedThroughput } = indexDefinition(throughput)
  return call(policy, "UpdateTable", (abortSignal) =>
    sdk.send(
      new UpdateTableCommand({
        TableName: tableName,
        AttributeDefinitions: indexAttributes,
        GlobalSecondaryIndexUpdates: [{
          Create: {
            IndexName,
            KeySchema,
            Projection,
            ...(ProvisionedThroughput === undefined ? {} : { ProvisionedThroughput })
          }
        }]
      }),
      { abortSignal }
    )).pipe(
      Effect.asVoid,
      Effect.catchTag("ConditionFailed", (error) => Effect.fail(storeError("UpdateTable", error))),
      // Another worker (or a KCL worker) is creating it, or the table is busy with another update: fine either way.
      Effect.catchIf(
        (error) => errorName(error.cause) === "ResourceInUseException",
        () => Effect.void
      )
    )
}

/** The lease keys the index lists for `owner`, page by page (eventually consistent, as every GSI). @internal */
export const queryLeaseKeys = (
  sdk: DynamoDBClient,
  tableName: string,
  policy: RetryPolicy,
  owner: string
): Effect.Effect<Array<string>, LeaseRepository.LeaseStoreError> =>
  Effect.gen(function*() {
    const keys: Array<string> = []
    let startKey: Item | undefined = undefined
    do {
      const page = yield* call(policy, "Query", (abortSignal) =>
        sdk.send(
          new QueryCommand({
            TableName: tableName,
            IndexName: INDEX_NAME,
            KeyConditionExpression: "#owner = :owner",
            ExpressionAttributeNames: { "#owner": A.leaseOwner },
            ExpressionAttributeValues: { ":owner": S(owner) },
            ExclusiveStartKey: startKey
          }),
          { abortSignal }
        )).pipe(Effect.catchTag("ConditionFailed", (error) => Effect.fail(storeError("Query", error))))
      for (const item of page.Items ?? []) {
        const key = item[A.leaseKey]?.S
        if (key !== undefined) keys.push(key)
      }
      startKey = page.LastEvaluatedKey
    } while (startKey !== undefined)
    return keys
  })
