/**
 * @since 0.1.0
 */
export * as AutoSplit from "./AutoSplit.ts"
export * as Producer from "./Producer.ts"
export * as ProducerError from "./ProducerError.ts"
export * as ProducerMetrics from "./ProducerMetrics.ts"
export * as ProducerSettings from "./ProducerSettings.ts"
