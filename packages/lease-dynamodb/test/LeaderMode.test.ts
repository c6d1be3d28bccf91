import { GetItemCommand, PutItemCommand } from "@aws-sdk/client-dynamodb"
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import { DynamoDbClient, DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { DynamoEmulator } from "@effect-kinesis/testing"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { randomUUID } from "node:crypto"

const Env = Layer.unwrap(
  Effect.map(Effect.service(DynamoEmulator.DynamoEmulator), (dynamo) => DynamoDbClient.layer(dynamo.clientConfig))
).pipe(Layer.provideMerge(DynamoEmulator.layer()))

layer(Env, { excludeTestServices: true, timeout: "60 seconds" })("leader mode in the lease table", (it) => {
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

  it.effect("listOwnedKeys answers from the owner index, without reading the leases", () =>
    Effect.gen(function*() {
      const table = `owned-keys-${randomUUID().slice(0, 8)}`
      const repo = yield* DynamoDbLeaseRepository.make({ applicationName: table, leaseOwnerIndex: "create" })
      const { sdk } = yield* DynamoDbClient.DynamoDbClient
      const leases = yield* Effect.forEach(
        ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"],
        (leaseKey) =>
          repo.create({
            leaseKey,
            leaseOwner: undefined,
            leaseCounter: 0,
            checkpoint: ExtendedSequenceNumber.trimHorizon,
            pendingCheckpoint: undefined,
            ownerSwitchesSinceCheckpoint: 0,
            parentShardIds: [],
            childShardIds: [],
            hashKeyRange: undefined
          })
      )
      yield* repo.take(leases[0]!, "a")
      yield* repo.take(leases[1]!, "b")
      yield* repo.take(leases[2]!, "a")
      // An item that no scan can read as a lease: `list` fails on it, the index gives only its key.
      yield* Effect.promise(() =>
        sdk.send(
          new PutItemCommand({
            TableName: table,
            Item: { leaseKey: { S: "shardId-000000000003" }, leaseOwner: { S: "a" }, leaseCounter: { N: "1.5" } }
          })
        )
      )
      assert.strictEqual((yield* Effect.flip(repo.list))._tag, "LeaseStoreError")
      let keys: Array<string> = []
      for (let attempt = 0; attempt < 50 && keys.length < 3; attempt++) {
        keys = [...(yield* repo.listOwnedKeys!("a"))].sort()
        if (keys.length < 3) yield* Effect.sleep("100 millis")
      }
      assert.deepStrictEqual(keys, ["shardId-000000000000", "shardId-000000000002", "shardId-000000000003"])
    }))
})
