import { GetItemCommand, PutItemCommand } from "@aws-sdk/client-dynamodb"
import { DynamoDbClient, DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { DynamoEmulator } from "@effect-kinesis/testing"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { randomUUID } from "node:crypto"

const Env = Layer.unwrap(
  Effect.map(Effect.service(DynamoEmulator.DynamoEmulator), (dynamo) => DynamoDbClient.layer(dynamo.clientConfig))
).pipe(Layer.provideMerge(DynamoEmulator.layer()))

layer(Env, { excludeTestServices: true, timeout: "60 seconds" })("leader lock in the lease table", (it) => {
  it.effect("reads a lock as the KCL 3.x lock client writes it, takes it over at its version, writes it in the KCL's form", () =>
    Effect.gen(function*() {
      const table = `leader-lock-${randomUUID().slice(0, 8)}`
      const repo = yield* DynamoDbLeaseRepository.make({ applicationName: table })
      const { sdk } = yield* DynamoDbClient.DynamoDbClient
      // As `DynamoDBLockBasedLeaderDecider` leaves it: the `LeaderLock` entity, the lock client's attributes, released.
      yield* Effect.promise(() =>
        sdk.send(
          new PutItemCommand({
            TableName: table,
            Item: {
              leaseKey: { S: "Leader" },
              entityType: { S: "LEADER" },
              ownerName: { S: "kcl-worker-1" },
              leaseDuration: { S: "120000" },
              recordVersionNumber: { S: "5f0c1b1e-0000-4000-8000-000000000001" },
              isReleased: { S: "1" },
              data: { B: new Uint8Array([1, 2]) }
            }
          })
        )
      )
      const locks = repo.leaderLock!
      const kcl = yield* locks.read
      assert.deepStrictEqual(kcl, {
        owner: "kcl-worker-1",
        recordVersionNumber: "5f0c1b1e-0000-4000-8000-000000000001",
        leaseDurationMillis: 120_000,
        released: true
      })
      assert.deepStrictEqual(yield* repo.list, [])
      const ours = yield* locks.acquire("worker-a", 20_000, kcl)
      const stored = yield* Effect.promise(() =>
        sdk.send(new GetItemCommand({ TableName: table, Key: { leaseKey: { S: "Leader" } }, ConsistentRead: true }))
      )
      assert.deepStrictEqual(stored.Item, {
        leaseKey: { S: "Leader" },
        entityType: { S: "LEADER" },
        ownerName: { S: "worker-a" },
        leaseDuration: { S: "20000" },
        recordVersionNumber: { S: ours.recordVersionNumber }
      })
    }))
})
