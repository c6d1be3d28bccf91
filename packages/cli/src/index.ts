/**
 * @since 0.1.0
 */
export * as Cli from "./Cli.ts"
export * as CommandError from "./CommandError.ts"
