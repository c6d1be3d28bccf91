/**
 * @since 0.1.0
 */
export * as DynamoDbClient from "./DynamoDbClient.ts"
export * as DynamoDbLeaseRepository from "./DynamoDbLeaseRepository.ts"
