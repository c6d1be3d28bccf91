/**
 * What the embedded emulators (`KinesisEmulator`, `DynamoEmulator`) have in common: how to reach them, the error a
 * failed start raises, and how a failing test shows what the emulator printed.
 *
 * @since 0.1.0
 */
import { Cause, Data, Effect, Schema } from "effect"

/**
 * The fixed dummy credentials the emulators accept (they check that requests are signed, not by whom).
 *
 * @example
 * ```ts
 * import type { Emulator } from "@effect-kinesis/testing"
 *
 * const credentials: Emulator.EmulatorCredentials = { accessKeyId: "local", secretAccessKey: "local" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface EmulatorCredentials {
  readonly accessKeyId: string
  readonly secretAccessKey: string
}

/**
 * Everything a client needs to talk to an emulator. The shape fits `Client.ClientConfig` of `@effect-kinesis/core`,
 * so a client layer can be built straight from it. `httpHandler: "http1"` says that HTTP/1.1 is required: kinesis-mock
 * breaks `SubscribeToShard` over HTTP/2.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { KinesisEmulator } from "@effect-kinesis/testing"
 *
 * const endpoint = Effect.map(KinesisEmulator.KinesisEmulator, (emulator) => emulator.clientConfig.endpoint)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface EmulatorClientConfig {
  readonly endpoint: string
  readonly region: string
  readonly credentials: EmulatorCredentials
  readonly httpHandler: "http1"
}

/**
 * The default credentials handed to clients of an emulator.
 *
 * @example
 * ```ts
 * import { Emulator } from "@effect-kinesis/testing"
 *
 * Emulator.credentials.accessKeyId // "local"
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const credentials: EmulatorCredentials = { accessKeyId: "local", secretAccessKey: "local" }

/**
 * A running emulator process.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { type Emulator, KinesisEmulator } from "@effect-kinesis/testing"
 *
 * const pid = Effect.map(KinesisEmulator.KinesisEmulator, (emulator: Emulator.EmulatorProcess) => emulator.pid)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface EmulatorProcess {
  /** `kinesis-local` or `dynalite`. */
  readonly name: string
  /** The emulator's own process id. */
  readonly pid: number
  /** The supervisor process between this process and the emulator, which kills the emulator if this process dies. */
  readonly supervisorPid: number
  /** The last lines (200 by default) the emulator wrote to stdout and stderr. */
  readonly output: Effect.Effect<string>
}

/**
 * The emulator did not start: its process exited, or it did not answer before the startup deadline. `output` holds
 * what it printed, which usually says why (a port in use, a missing file); the message includes it too.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { KinesisEmulator } from "@effect-kinesis/testing"
 *
 * const program = Effect.scoped(KinesisEmulator.make()).pipe(
 *   Effect.catchTag("EmulatorStartError", (error) => Effect.logError(error.output))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class EmulatorStartError extends Schema.TaggedError<EmulatorStartError>()("EmulatorStartError", {
  emulator: Schema.String,
  message: Schema.String,
  output: Schema.String
}) {}

/**
 * Attached as an extra defect to a failed effect by {@link withOutputOnFailure}, so that the emulator's output is
 * printed next to the failure.
 *
 * @example
 * ```ts
 * import { Emulator } from "@effect-kinesis/testing"
 *
 * const defect = new Emulator.EmulatorOutput({ emulator: "dynalite", message: "dynalite (pid 42) output, last lines:\n…" })
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class EmulatorOutput extends Data.TaggedError("EmulatorOutput")<{
  readonly emulator: string
  readonly message: string
}> {}

/**
 * Makes a failing effect carry the emulators' recent output: when `self` fails or dies (interruption alone is left
 * alone), the cause keeps the original failure first and gains one {@link EmulatorOutput} defect per emulator.
 * `@effect/vitest` logs every error of a failed test's cause, so the output shows up under the failure while the
 * test still fails with its own error. `KinesisEmulator.withOutputOnFailure` and `DynamoEmulator.withOutputOnFailure`
 * apply it with the emulator from the context.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Emulator, KinesisEmulator } from "@effect-kinesis/testing"
 *
 * const test = Effect.gen(function*() {
 *   const emulator = yield* KinesisEmulator.KinesisEmulator
 *   yield* Effect.fail("boom").pipe(Emulator.withOutputOnFailure(emulator))
 * })
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const withOutputOnFailure =
  (...emulators: ReadonlyArray<EmulatorProcess>) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.catchCause(self, (cause) =>
      Cause.hasInterruptsOnly(cause)
        ? Effect.failCause(cause)
        : Effect.flatMap(
          Effect.forEach(emulators, (emulator) =>
            Effect.map(emulator.output, (output) =>
              Cause.die(
                new EmulatorOutput({
                  emulator: emulator.name,
                  message: `${emulator.name} (pid ${emulator.pid}) output, last lines:\n${output}`
                })
              ))),
          (outputs) => Effect.failCause(outputs.reduce<Cause.Cause<E>>((all, one) => Cause.combine(all, one), cause))
        ))
