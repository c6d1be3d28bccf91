/**
 * @since 0.1.0
 */
export * as DynamoDBClient from "./DynamoDBClient.ts"
export * as DynamoDBLeaseRepository from "./DynamoDbLeaseRepository.ts"

/**
 * @deprecated Use `DynamoDBClient` (the AWS SDK's spelling).
 * @since 0.1.0
 */
export * as DynamoDbClient from "./internal/dynamoDbClient.ts"

/**
 * @deprecated Use `DynamoDBLeaseRepository` (the AWS SDK's spelling); its `layerConfig` is a value.
 * @since 0.1.0
 */
export * as DynamoDbLeaseRepository from "./internal/dynamoDbLeaseRepository.ts"
