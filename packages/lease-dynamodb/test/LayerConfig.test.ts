import { ListTablesCommand } from "@aws-sdk/client-dynamodb"
import { Consumer, LeaseRepository } from "@effect-kinesis/consumer"
import { DynamoDBClient, DynamoDBLeaseRepository, DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { DynamoEmulator } from "@effect-kinesis/testing"
import { assert, layer } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"
import { randomUUID } from "node:crypto"

layer(DynamoEmulator.layer(), { excludeTestServices: true, timeout: "60 seconds" })(
  "DynamoDBLeaseRepository.layerConfig",
  (it) => {
    it.effect("takes the application name from KINESIS_APPLICATION_NAME, as Consumer.config does, and names the table after it", () =>
      Effect.gen(function*() {
        const dynamo = yield* DynamoEmulator.DynamoEmulator
        // The SDK reads credentials from its own chain, not from Effect's Config.
        process.env.AWS_ACCESS_KEY_ID ??= dynamo.clientConfig.credentials.accessKeyId
        process.env.AWS_SECRET_ACCESS_KEY ??= dynamo.clientConfig.credentials.secretAccessKey
        const applicationName = `billing-${randomUUID().slice(0, 8)}`
        const provider = ConfigProvider.fromUnknown({
          KINESIS_STREAM: "orders",
          KINESIS_APPLICATION_NAME: applicationName,
          DYNAMODB_ENDPOINT: dynamo.clientConfig.endpoint,
          AWS_REGION: dynamo.clientConfig.region
        })
        const store = yield* LeaseRepository.LeaseRepository.pipe(
          Effect.provide(DynamoDBLeaseRepository.layerConfig),
          Effect.provide(ConfigProvider.layer(provider))
        )
        const identity = yield* Consumer.config.parse(provider)
        assert.strictEqual(store.applicationName, identity.applicationName)
        const sdk = DynamoDBClient.makeSdkClient(dynamo.clientConfig)
        const tables = yield* Effect.promise(() => sdk.send(new ListTablesCommand({})))
        sdk.destroy()
        assert.include(tables.TableNames ?? [], applicationName)
      }))

    it.effect("the deprecated DynamoDbLeaseRepository.layerConfig(options) also takes the name from the environment when not given", () =>
      Effect.gen(function*() {
        const dynamo = yield* DynamoEmulator.DynamoEmulator
        process.env.AWS_ACCESS_KEY_ID ??= dynamo.clientConfig.credentials.accessKeyId
        process.env.AWS_SECRET_ACCESS_KEY ??= dynamo.clientConfig.credentials.secretAccessKey
        const applicationName = `audit-${randomUUID().slice(0, 8)}`
        const provider = ConfigProvider.layer(ConfigProvider.fromUnknown({
          KINESIS_APPLICATION_NAME: applicationName,
          DYNAMODB_ENDPOINT: dynamo.clientConfig.endpoint,
          AWS_REGION: dynamo.clientConfig.region
        }))
        const fromEnv = yield* LeaseRepository.LeaseRepository.pipe(
          Effect.provide(DynamoDbLeaseRepository.layerConfig()),
          Effect.provide(provider)
        )
        assert.strictEqual(fromEnv.applicationName, applicationName)
        const given = yield* LeaseRepository.LeaseRepository.pipe(
          Effect.provide(DynamoDbLeaseRepository.layerConfig({ applicationName: `${applicationName}-given` })),
          Effect.provide(provider)
        )
        assert.strictEqual(given.applicationName, `${applicationName}-given`)
      }))

    it.effect("KINESIS_LEASE_TABLE names another table", () =>
      Effect.gen(function*() {
        const read = yield* DynamoDBLeaseRepository.config.parse(
          ConfigProvider.fromUnknown({ KINESIS_APPLICATION_NAME: "billing", KINESIS_LEASE_TABLE: "billing-leases" })
        )
        assert.deepStrictEqual(read, { applicationName: "billing", tableName: "billing-leases" })
        const defaults = yield* DynamoDBLeaseRepository.config.parse(
          ConfigProvider.fromUnknown({ KINESIS_APPLICATION_NAME: "billing" })
        )
        assert.deepStrictEqual(defaults, { applicationName: "billing", tableName: undefined })
      }))
  }
)
