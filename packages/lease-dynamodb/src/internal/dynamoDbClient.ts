/**
 * The former names of the `DynamoDBClient` module, kept so that code written against them compiles.
 */
import * as DynamoDBClient from "../DynamoDBClient.ts"

/**
 * @deprecated Use `DynamoDBClient.DynamoDBClientConfig`.
 * @since 0.1.0
 */
export type DynamoDbClientConfig = DynamoDBClient.DynamoDBClientConfig

/**
 * @deprecated Use `DynamoDBClient.DynamoDBClient`.
 * @since 0.1.0
 */
export const DynamoDbClient: typeof DynamoDBClient.DynamoDBClient = DynamoDBClient.DynamoDBClient

/**
 * @deprecated Use `DynamoDBClient.DynamoDBClient`.
 * @since 0.1.0
 */
export type DynamoDbClient = DynamoDBClient.DynamoDBClient

/**
 * @deprecated Use `DynamoDBClient.makeSdkClient`.
 * @since 0.1.0
 */
export const makeSdkClient = DynamoDBClient.makeSdkClient

/**
 * @deprecated Use `DynamoDBClient.layer`.
 * @since 0.1.0
 */
export const layer = DynamoDBClient.layer

/**
 * @deprecated Use `DynamoDBClient.config`.
 * @since 0.1.0
 */
export const clientConfig = DynamoDBClient.config

/**
 * @deprecated Use `DynamoDBClient.layerConfig`.
 * @since 0.1.0
 */
export const layerConfig = DynamoDBClient.layerConfig
