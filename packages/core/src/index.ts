/**
 * @since 0.1.0
 */
export * as AdminClient from "./AdminClient.ts"
export * as Aggregation from "./Aggregation.ts"
export * as Client from "./Client.ts"
export * as ExtendedSequenceNumber from "./ExtendedSequenceNumber.ts"
export * as HashKey from "./HashKey.ts"
export * as InvalidSetting from "./InvalidSetting.ts"
export * as KinesisError from "./KinesisError.ts"
export * as MetricsCollector from "./MetricsCollector.ts"
export * as SequenceNumber from "./SequenceNumber.ts"
export * as Serde from "./Serde.ts"
export * as ShardMap from "./ShardMap.ts"
export * as TransportFailure from "./TransportFailure.ts"
