import {
  CreateTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand
} from "@aws-sdk/client-dynamodb"
import { DynamoEmulator } from "@effect-kinesis/testing"
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect } from "effect"
import { vi } from "vitest"

// Emulators start in about a second, more on a loaded machine; vitest's 5 s default leaves too little room.
vi.setConfig({ testTimeout: 30_000 })

/** The process no longer exists, and has been reaped. */
const isGone = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return false
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ESRCH"
  }
}

layer(DynamoEmulator.layer())("DynamoEmulator", (it) => {
  it.effect("serves the DynamoDB API: an item written is read back", () =>
    Effect.gen(function*() {
      const dynamo = yield* DynamoEmulator.DynamoEmulator
      const client = yield* Effect.acquireRelease(
        Effect.sync(() => new DynamoDBClient({ ...dynamo.clientConfig, maxAttempts: 1 })),
        (client) => Effect.sync(() => client.destroy())
      )
      yield* Effect.promise(async () => {
        await client.send(
          new CreateTableCommand({
            TableName: "leases",
            AttributeDefinitions: [{ AttributeName: "leaseKey", AttributeType: "S" }],
            KeySchema: [{ AttributeName: "leaseKey", KeyType: "HASH" }],
            BillingMode: "PAY_PER_REQUEST"
          })
        )
        // Tables stay CREATING for the (short) transition duration.
        while ((await client.send(new DescribeTableCommand({ TableName: "leases" }))).Table?.TableStatus !== "ACTIVE") {
          await new Promise((resolve) => setTimeout(resolve, 20))
        }
        await client.send(
          new PutItemCommand({ TableName: "leases", Item: { leaseKey: { S: "shardId-0" }, leaseCounter: { N: "1" } } })
        )
      })
      const item = yield* Effect.promise(() =>
        client.send(new GetItemCommand({ TableName: "leases", Key: { leaseKey: { S: "shardId-0" } } }))
      )
      assert.deepStrictEqual(item.Item, { leaseKey: { S: "shardId-0" }, leaseCounter: { N: "1" } })
    }).pipe(DynamoEmulator.withOutputOnFailure))
})

describe("DynamoEmulator lifecycle", () => {
  it.effect("stops dynalite and its supervisor when the scope closes", () =>
    Effect.gen(function*() {
      const { pid, supervisorPid } = yield* Effect.scoped(DynamoEmulator.make())
      assert.isTrue(isGone(pid))
      assert.isTrue(isGone(supervisorPid))
    }))

  it.effect("a missing cli script fails with the emulator's output", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Effect.scoped(DynamoEmulator.make({ cliScript: "/nonexistent/dynalite/cli.js" }))
      )
      assert.strictEqual(error._tag, "EmulatorStartError")
      assert.strictEqual(error.emulator, "dynalite")
      assert.include(error.output, "Cannot find module")
    }))

  it.effect("keeps only the last output lines", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Effect.scoped(DynamoEmulator.make({ cliScript: "/nonexistent/dynalite/cli.js", outputLines: 3 }))
      )
      const lines = error.output.split("\n")
      assert.isAtMost(lines.length, 3)
      assert.match(lines.at(-1) ?? "", /^Node\.js v/)
    }))
})
