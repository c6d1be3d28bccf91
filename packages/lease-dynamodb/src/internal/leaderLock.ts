/**
 * The leader lock in the lease table, as KCL 3.x keeps it there (`LeaderLock` through the DynamoDB lock client,
 * `LeaseTableCoordinatorStateDAODelegate`): `leaseKey` = `Leader`, `entityType` = `LEADER`, `ownerName`,
 * `leaseDuration` (milliseconds, a string), `recordVersionNumber` (a string, new on every write), and `isReleased` =
 * `"1"` when the lock client gave it up without deleting it. The lease reader skips it (not a `LEASE` entity).
 *
 * @internal
 */
import { DeleteItemCommand, GetItemCommand, PutItemCommand, UpdateItemCommand } from "@aws-sdk/client-dynamodb"
import type { DynamoDBClient } from "@aws-sdk/client-dynamodb"
import { LeaseRepository } from "@effect-kinesis/consumer"
import { Effect } from "effect"
import { randomUUID } from "node:crypto"
import { A, type Item, S } from "./leaseItem.ts"
import { call, type RetryPolicy, storeError } from "./sdkCall.ts"

/** `LeaderLock.LEADER_HASH_KEY`. @internal */
export const LEADER_KEY = "Leader"
/** `EntityType.LEADER_LOCK`. @internal */
export const LEADER_ENTITY = "LEADER"

const L = {
  ownerName: "ownerName",
  leaseDuration: "leaseDuration",
  recordVersionNumber: "recordVersionNumber",
  isReleased: "isReleased"
} as const

const toLock = (item: Item): LeaseRepository.LeaderLock | undefined => {
  const owner = item[L.ownerName]?.S
  const recordVersionNumber = item[L.recordVersionNumber]?.S
  const leaseDurationMillis = Number(item[L.leaseDuration]?.S)
  if (owner === undefined || recordVersionNumber === undefined || !Number.isFinite(leaseDurationMillis)) {
    return undefined
  }
  return { owner, recordVersionNumber, leaseDurationMillis, released: item[L.isReleased]?.S === "1" }
}

/** @internal */
export const make = (sdk: DynamoDBClient, tableName: string, policy: RetryPolicy): LeaseRepository.LeaderLockStore => {
  const key = { [A.leaseKey]: S(LEADER_KEY) }
  const conflict = new LeaseRepository.LeaseConflict({ leaseKey: LEADER_KEY, operation: "leaderLock" })

  // Eventually consistent for the workers' periodic reads (half the read capacity): a stale
  // number only delays an expiry, and every write is conditional. Consistent after our own write.
  const readWith = (consistent: boolean) =>
    call(
      policy,
      "GetItem",
      (abortSignal) =>
        sdk.send(new GetItemCommand({ TableName: tableName, Key: key, ConsistentRead: consistent }), { abortSignal })
    ).pipe(
      Effect.catchTag("ConditionFailed", (error) => Effect.fail(storeError("GetItem", error))),
      Effect.map((out) => out.Item === undefined ? undefined : toLock(out.Item))
    )
  const read: LeaseRepository.LeaderLockStore["read"] = readWith(false)
  const readConsistent = readWith(true)

  // After a condition failure that may follow our own landed attempt: ours if the stored lock is what we wrote.
  const landed = (ambiguous: { value: boolean }, written: LeaseRepository.LeaderLock) =>
    ambiguous.value
      ? Effect.flatMap(readConsistent, (stored) =>
        stored?.recordVersionNumber === written.recordVersionNumber ? Effect.succeed(written) : Effect.fail(conflict))
      : Effect.fail(conflict)

  const acquire: LeaseRepository.LeaderLockStore["acquire"] = (owner, leaseDurationMillis, expected) =>
    Effect.suspend(() => {
      const written: LeaseRepository.LeaderLock = {
        owner,
        recordVersionNumber: randomUUID(),
        leaseDurationMillis,
        released: false
      }
      const ambiguous = { value: false }
      return call(policy, "PutItem", (abortSignal) =>
        sdk.send(
          new PutItemCommand({
            TableName: tableName,
            Item: {
              ...key,
              [A.entityType]: S(LEADER_ENTITY),
              [L.ownerName]: S(owner),
              [L.leaseDuration]: S(String(leaseDurationMillis)),
              [L.recordVersionNumber]: S(written.recordVersionNumber)
            },
            ...(expected === undefined
              ? { ConditionExpression: "attribute_not_exists(#k)", ExpressionAttributeNames: { "#k": A.leaseKey } }
              : {
                ConditionExpression: "#rvn = :rvn",
                ExpressionAttributeNames: { "#rvn": L.recordVersionNumber },
                ExpressionAttributeValues: { ":rvn": S(expected.recordVersionNumber) }
              })
          }),
          { abortSignal }
        ), ambiguous).pipe(
          Effect.as(written),
          Effect.catchTag("ConditionFailed", () => landed(ambiguous, written))
        )
    })

  const refresh: LeaseRepository.LeaderLockStore["refresh"] = (held) =>
    Effect.suspend(() => {
      const written = { ...held, recordVersionNumber: randomUUID(), released: false }
      const ambiguous = { value: false }
      return call(policy, "UpdateItem", (abortSignal) =>
        sdk.send(
          new UpdateItemCommand({
            TableName: tableName,
            Key: key,
            UpdateExpression: "SET #rvn = :new, #ld = :ld REMOVE #ir",
            ConditionExpression: "#rvn = :rvn AND #on = :on",
            ExpressionAttributeNames: {
              "#rvn": L.recordVersionNumber,
              "#ld": L.leaseDuration,
              "#ir": L.isReleased,
              "#on": L.ownerName
            },
            ExpressionAttributeValues: {
              ":new": S(written.recordVersionNumber),
              ":ld": S(String(held.leaseDurationMillis)),
              ":rvn": S(held.recordVersionNumber),
              ":on": S(held.owner)
            }
          }),
          { abortSignal }
        ), ambiguous).pipe(
          Effect.as(written),
          Effect.catchTag("ConditionFailed", () => landed(ambiguous, written))
        )
    })

  const release: LeaseRepository.LeaderLockStore["release"] = (held) =>
    Effect.suspend(() => {
      const ambiguous = { value: false }
      return call(policy, "DeleteItem", (abortSignal) =>
        sdk.send(
          new DeleteItemCommand({
            TableName: tableName,
            Key: key,
            ConditionExpression: "#rvn = :rvn",
            ExpressionAttributeNames: { "#rvn": L.recordVersionNumber },
            ExpressionAttributeValues: { ":rvn": S(held.recordVersionNumber) }
          }),
          { abortSignal }
        ), ambiguous).pipe(
          Effect.asVoid,
          // Gone after an attempt that may have landed: most likely our own delete.
          Effect.catchTag("ConditionFailed", () =>
            ambiguous.value
              ? Effect.flatMap(readConsistent, (stored) => stored === undefined ? Effect.void : Effect.fail(conflict))
              : Effect.fail(conflict))
        )
    })

  return { read, acquire, refresh, release }
}
