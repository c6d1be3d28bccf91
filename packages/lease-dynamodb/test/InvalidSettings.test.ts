import { DynamoDbClient, DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer } from "effect"

// A DynamoDB without the table: options that pass reach `DescribeTable` and fail with
// LeaseTableNotFound at once (`createTableIfMissing: false`), so that "accepted" is told from
// "refused" without a DynamoDB.
const missing = Object.assign(new Error("table not found"), { name: "ResourceNotFoundException" })
const NoTable = Layer.succeed(
  DynamoDbClient.DynamoDbClient,
  DynamoDbClient.DynamoDbClient.of({ sdk: { send: () => Promise.reject(missing) } as never })
)

type Options = Partial<DynamoDbLeaseRepository.Options>

const start = (options: Options) =>
  DynamoDbLeaseRepository.make({ applicationName: "billing", createTableIfMissing: false, ...options }).pipe(
    Effect.provide(NoTable),
    Effect.exit
  )

const failureOf = (exit: Exit.Exit<unknown, unknown>) => {
  const reason = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
  return (reason?._tag === "Fail" ? reason.error : reason) as
    | { readonly _tag: string; readonly setting?: string; readonly message?: string }
    | undefined
}

const notPositive = [0, -1, "-1 seconds", "soon", NaN, Infinity]

const invalid: ReadonlyArray<readonly [setting: string, options: Options]> = [
  ["applicationName", { applicationName: "" }],
  ["applicationName", { applicationName: "ab" }],
  ["applicationName", { applicationName: "orders/billing" }],
  ["tableName", { tableName: "" }],
  ["tableName", { tableName: "x".repeat(256) }],
  ["tableName", { tableName: "lease table" }],
  ...[0, -1, 1.5, NaN, Infinity].flatMap((units) => [
    ["table.billing.readCapacityUnits", {
      table: { billing: { mode: "PROVISIONED", readCapacityUnits: units, writeCapacityUnits: 1 } }
    }] as const,
    ["table.billing.writeCapacityUnits", {
      table: { billing: { mode: "PROVISIONED", readCapacityUnits: 1, writeCapacityUnits: units } }
    }] as const
  ]),
  ...notPositive.map((value) => ["table.activeTimeout", { table: { activeTimeout: value as never } }] as const),
  ...(["budget", "attemptTimeout", "baseDelay"] as const).flatMap((name) =>
    notPositive.map((value) => [`retry.${name}`, { retry: { [name]: value } }] as const)
  )
]

const valid: ReadonlyArray<Options> = [
  {},
  { applicationName: "abc" },
  { applicationName: "a".repeat(255) },
  { tableName: "A-z_0.9" },
  { table: { billing: { mode: "PROVISIONED", readCapacityUnits: 1, writeCapacityUnits: 1 }, activeTimeout: 1 } },
  { table: { billing: { mode: "PAY_PER_REQUEST" } } },
  { retry: { budget: 1, attemptTimeout: 1, baseDelay: 1 } }
]

describe("DynamoDbLeaseRepository options", () => {
  for (const [setting, options] of invalid) {
    it.effect(`refuses ${JSON.stringify(options)} with InvalidSetting(${setting})`, () =>
      Effect.gen(function*() {
        const failure = failureOf(yield* start(options))
        assert.strictEqual(failure?._tag, "InvalidSetting")
        assert.strictEqual(failure?.setting, setting)
      }))
  }

  for (const options of valid) {
    it.effect(`accepts ${JSON.stringify(options)}`, () =>
      Effect.gen(function*() {
        // Past the options: the store went on to look for its table.
        assert.strictEqual(failureOf(yield* start(options))?._tag, "LeaseTableNotFound")
      }))
  }
})

// A DynamoDB whose lease table exists: the store starts.
const ActiveTable = Layer.succeed(
  DynamoDbClient.DynamoDbClient,
  DynamoDbClient.DynamoDbClient.of({
    sdk: {
      send: () =>
        Promise.resolve({
          Table: {
            TableStatus: "ACTIVE",
            KeySchema: [{ AttributeName: "leaseKey", KeyType: "HASH" }],
            AttributeDefinitions: [{ AttributeName: "leaseKey", AttributeType: "S" }]
          }
        })
    } as never
  })
)

describe("DynamoDbLeaseRepository application", () => {
  it.effect("the store names its application, so that a consumer of another one fails at start", () =>
    Effect.gen(function*() {
      const store = yield* DynamoDbLeaseRepository.make({ applicationName: "billing", tableName: "leases" }).pipe(
        Effect.provide(ActiveTable)
      )
      assert.strictEqual(store.applicationName, "billing")
    }))
})
