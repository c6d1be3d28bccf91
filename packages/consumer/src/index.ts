/**
 * @since 0.1.0
 */
export * as BatchProcessing from "./BatchProcessing.ts"
export * as Checkpointer from "./Checkpointer.ts"
export * as Consumer from "./Consumer.ts"
export * as ConsumerControl from "./ConsumerControl.ts"
export * as ConsumerError from "./ConsumerError.ts"
export * as ConsumerRecord from "./ConsumerRecord.ts"
export * as DiagnosticEvent from "./DiagnosticEvent.ts"
export * as EnhancedFanOut from "./EnhancedFanOut.ts"
export * as ErrorHandling from "./ErrorHandling.ts"
export * as FailureDestination from "./FailureDestination.ts"
export * as Lease from "./Lease.ts"
export * as LeaseRepository from "./LeaseRepository.ts"
export * as MultiStream from "./MultiStream.ts"
export * as Parallel from "./Parallel.ts"
export * as ShardAssignment from "./ShardAssignment.ts"
