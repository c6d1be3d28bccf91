/**
 * @since 0.2.0
 */
export * as CloudWatchMetrics from "./CloudWatchMetrics.ts"
export * as EmbeddedMetrics from "./EmbeddedMetrics.ts"
