/**
 * @since 0.1.0
 */
export * as CloudWatchEndpoint from "./CloudWatchEndpoint.ts"
export * as ConsumerWorker from "./ConsumerWorker.ts"
export * as DynamoEmulator from "./DynamoEmulator.ts"
export * as DynamoFaultProxy from "./DynamoFaultProxy.ts"
export * as Emulator from "./Emulator.ts"
export * as FaultProxy from "./FaultProxy.ts"
export * as KinesisEmulator from "./KinesisEmulator.ts"
export * as StreamFixtures from "./StreamFixtures.ts"
export * as TcpFaultProxy from "./TcpFaultProxy.ts"
