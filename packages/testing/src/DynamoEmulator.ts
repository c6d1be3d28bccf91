/**
 * dynalite as a scoped Layer: an in-memory DynamoDB API on loopback, started as a child process and stopped when the
 * layer's scope closes. For lease table tests.
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Layer, type Scope } from "effect"
import { createRequire } from "node:module"
import * as Path from "node:path"
import * as Emulator from "./Emulator.ts"
import * as EmulatorProcess from "./internal/emulatorProcess.ts"

/**
 * Options of {@link layer}. All optional; the defaults suit tests.
 *
 * @example
 * ```ts
 * import { DynamoEmulator } from "@effect-kinesis/testing"
 *
 * const DynamoLive = DynamoEmulator.layer({ transitionDuration: "20 millis" })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface DynamoEmulatorOptions {
  /** Region handed to clients. dynalite ignores it. Default `us-east-1`. */
  readonly region?: string | undefined
  /** How long tables stay CREATING, UPDATING or DELETING. Default 50 ms (dynalite's default is 500 ms). */
  readonly transitionDuration?: Duration.Input | undefined
  /** Overrides `transitionDuration` for CreateTable. */
  readonly createTableDuration?: Duration.Input | undefined
  /** Overrides `transitionDuration` for DeleteTable. */
  readonly deleteTableDuration?: Duration.Input | undefined
  /** Overrides `transitionDuration` for UpdateTable. */
  readonly updateTableDuration?: Duration.Input | undefined
  /** Port on 127.0.0.1. Default: a free port. */
  readonly port?: number | undefined
  /** How long to wait for the emulator to answer. Default 30 seconds. */
  readonly startupTimeout?: Duration.Input | undefined
  /** Time between SIGTERM and SIGKILL on shutdown. Default 1 second. */
  readonly stopGracePeriod?: Duration.Input | undefined
  /** Output lines kept for error messages. Default 200. */
  readonly outputLines?: number | undefined
  /** dynalite's `cli.js`. Default: the one of the installed `dynalite` package. */
  readonly cliScript?: string | undefined
}

const millis = (input: Duration.Input): number => Duration.toMillis(Duration.fromInputUnsafe(input))

/**
 * A running dynalite. Build it with {@link layer}; it starts in a fraction of a second.
 *
 * @example
 * ```ts
 * import { assert, layer } from "@effect/vitest"
 * import { Effect } from "effect"
 * import { DynamoEmulator } from "@effect-kinesis/testing"
 *
 * layer(DynamoEmulator.layer())("lease table", (it) => {
 *   it.effect("reaches dynalite", () =>
 *     Effect.gen(function*() {
 *       const dynamo = yield* DynamoEmulator.DynamoEmulator
 *       assert.match(dynamo.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/)
 *     }))
 * })
 * ```
 *
 * @since 0.1.0
 * @category services
 */
export class DynamoEmulator extends Context.Service<DynamoEmulator, {
  readonly name: string
  readonly pid: number
  readonly supervisorPid: number
  readonly output: Effect.Effect<string>
  /** e.g. `http://127.0.0.1:45123` */
  readonly endpoint: string
  readonly region: string
  readonly credentials: Emulator.EmulatorCredentials
  readonly clientConfig: Emulator.EmulatorClientConfig
}>()("@effect-kinesis/testing/DynamoEmulator") {}

/**
 * Starts dynalite in the current scope and waits until it answers.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { DynamoEmulator } from "@effect-kinesis/testing"
 *
 * const endpoint = Effect.scoped(Effect.map(DynamoEmulator.make(), (dynamo) => dynamo.endpoint))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: DynamoEmulatorOptions = {}
): Effect.Effect<DynamoEmulator["Service"], Emulator.EmulatorStartError, Scope.Scope> =>
  Effect.gen(function*() {
    const region = options.region ?? "us-east-1"
    const transition = options.transitionDuration ?? Duration.millis(50)
    const cliScript = options.cliScript
      ?? Path.join(Path.dirname(createRequire(import.meta.url).resolve("dynalite/package.json")), "cli.js")
    const running = yield* EmulatorProcess.start({
      name: "dynalite",
      ports: [options.port],
      command: ([port]) => ({
        args: [
          cliScript,
          "--host",
          "127.0.0.1",
          "--port",
          String(port),
          "--createTableMs",
          String(millis(options.createTableDuration ?? transition)),
          "--deleteTableMs",
          String(millis(options.deleteTableDuration ?? transition)),
          "--updateTableMs",
          String(millis(options.updateTableDuration ?? transition))
        ],
        env: {}
      }),
      probe: ([port], signal) =>
        fetch(`http://127.0.0.1:${port}/`, {
          method: "POST",
          headers: {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.ListTables"
          },
          body: "{}",
          signal: AbortSignal.any([signal, AbortSignal.timeout(1_000)])
        }).then((response) => response.body?.cancel().then(() => true) ?? true, () => false),
      startupTimeoutMillis: millis(options.startupTimeout ?? "30 seconds"),
      stopGraceMillis: millis(options.stopGracePeriod ?? "1 second"),
      outputLines: options.outputLines ?? 200
    })
    const endpoint = `http://127.0.0.1:${running.ports[0]}`
    return DynamoEmulator.of({
      name: "dynalite",
      pid: running.pid,
      supervisorPid: running.supervisorPid,
      output: Effect.sync(running.output),
      endpoint,
      region,
      credentials: Emulator.credentials,
      clientConfig: { endpoint, region, credentials: Emulator.credentials, httpHandler: "http1" }
    })
  })

/**
 * A layer running one dynalite for as long as the layer lives.
 *
 * @example
 * ```ts
 * import { DynamoEmulator } from "@effect-kinesis/testing"
 *
 * const DynamoLive = DynamoEmulator.layer()
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: DynamoEmulatorOptions = {}
): Layer.Layer<DynamoEmulator, Emulator.EmulatorStartError> => Layer.effect(DynamoEmulator, make(options))

/**
 * {@link Emulator.withOutputOnFailure} with the dynalite from the context.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { DynamoEmulator } from "@effect-kinesis/testing"
 *
 * const test = Effect.fail("boom").pipe(DynamoEmulator.withOutputOnFailure)
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const withOutputOnFailure = <A, E, R>(
  self: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R | DynamoEmulator> =>
  Effect.flatMap(DynamoEmulator, (dynamo) => Emulator.withOutputOnFailure(dynamo)(self))
