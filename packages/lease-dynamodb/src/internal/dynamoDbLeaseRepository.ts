/**
 * The former name of the `DynamoDBLeaseRepository` module, kept so that code written against it
 * compiles: the same module, but for `layerConfig`, which was a function of the options.
 */
import type { LeaseRepository } from "@effect-kinesis/consumer"
import type { InvalidSetting } from "@effect-kinesis/core"
import type { Config } from "effect"
import { Effect, Layer } from "effect"
import * as DynamoDBClient from "../DynamoDBClient.ts"
import { config, layer, type LeaseTableNotFound, type Options } from "../DynamoDbLeaseRepository.ts"

export * from "../DynamoDbLeaseRepository.ts"

/**
 * The lease store with its own DynamoDB client configured from the environment; the application
 * name, when not given, from `KINESIS_APPLICATION_NAME`.
 *
 * @deprecated Use `DynamoDBLeaseRepository.layerConfig` (a value: names from `KINESIS_APPLICATION_NAME` and
 * `KINESIS_LEASE_TABLE`), or `DynamoDBLeaseRepository.layer` with `DynamoDBClient.layerConfig` for other options.
 * @since 0.1.0
 */
export const layerConfig = (
  options: Partial<Options> = {}
): Layer.Layer<
  LeaseRepository.LeaseRepository,
  LeaseTableNotFound | LeaseRepository.LeaseStoreError | InvalidSetting.InvalidSetting | Config.ConfigError
> => {
  const applicationName = options.applicationName
  const store = applicationName !== undefined
    ? layer({ ...options, applicationName })
    : Layer.unwrap(
      Effect.map(config, (identity) =>
        layer({
          ...options,
          applicationName: identity.applicationName,
          tableName: options.tableName ?? identity.tableName
        }))
    )
  return Layer.provide(store, DynamoDBClient.layerConfig)
}
