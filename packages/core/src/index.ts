/**
 * @since 0.1.0
 */
export * as SequenceNumber from "./SequenceNumber.ts"
