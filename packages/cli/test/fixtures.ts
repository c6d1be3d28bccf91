/**
 * Running the CLI in-process against the emulators, with standard output, standard error and the
 * terminal captured.
 */
import { Cli } from "@effect-kinesis/cli"
import { DynamoDbClient } from "@effect-kinesis/lease-dynamodb"
import { DynamoEmulator, KinesisEmulator } from "@effect-kinesis/testing"
import { type Duration, Effect, type Exit, Fiber, FileSystem, Layer, Path, Sink, Stdio, Terminal } from "effect"
import { ChildProcessSpawner } from "effect/process"
import { TestConsole } from "effect/testing"

const DynamoClientLive = Layer.unwrap(
  Effect.map(Effect.service(DynamoEmulator.DynamoEmulator), (dynamo) => DynamoDbClient.layer(dynamo.clientConfig))
)

/** Kinesis and DynamoDB emulators with clients, one of each per test file. */
export const Env = Layer.mergeAll(
  KinesisEmulator.layerClient.pipe(Layer.provideMerge(KinesisEmulator.layer())),
  DynamoClientLive.pipe(Layer.provideMerge(DynamoEmulator.layer()))
)

/** What one run printed and how it ended. */
export interface Run {
  readonly exit: Exit.Exit<void, unknown>
  /** Everything written to standard output, as written. */
  readonly stdout: string
  /** The writes to standard output, one entry per write. */
  readonly writes: ReadonlyArray<string>
  /** The lines written to standard error. */
  readonly stderr: ReadonlyArray<string>
}

const decoder = new TextDecoder()

/**
 * Runs `effect-kinesis <args>` in-process. `terminal` says whether standard output is a terminal (80×24 unless
 * `columns`/`rows` say otherwise); `stopAfter` interrupts the run (as Ctrl-C does) after that long.
 */
export const runCli = (
  args: ReadonlyArray<string>,
  options: {
    readonly terminal?: boolean | undefined
    readonly columns?: number | undefined
    readonly rows?: number | undefined
    readonly stopAfter?: Duration.Input | undefined
    /** A slow reader: how long the write of `chunk` takes. */
    readonly writeDelay?: ((chunk: string) => Duration.Input | undefined) | undefined
  } = {}
) =>
  Effect.gen(function*() {
    const writes: Array<string> = []
    const environment = Layer.mergeAll(
      FileSystem.layerNoop({}),
      Path.layer,
      Stdio.layerTest({
        args: Effect.succeed(args),
        stdoutIsTerminal: Effect.succeed(options.terminal ?? false),
        stdout: () =>
          Sink.forEach((chunk: string | Uint8Array) => {
            const text = typeof chunk === "string" ? chunk : decoder.decode(chunk)
            const delay = options.writeDelay?.(text)
            return Effect.andThen(
              delay === undefined ? Effect.void : Effect.sleep(delay),
              Effect.sync(() => writes.push(text))
            )
          })
      }),
      Layer.succeed(
        Terminal.Terminal,
        Terminal.make({
          columns: Effect.succeed(options.columns ?? 80),
          rows: Effect.succeed(options.rows ?? 24),
          size: Effect.die("unused"),
          readInput: Effect.die("unused"),
          readLine: Effect.die("unused"),
          display: () => Effect.void
        })
      ),
      Layer.succeed(
        ChildProcessSpawner.ChildProcessSpawner,
        ChildProcessSpawner.make(() => Effect.die("unused"))
      ),
      TestConsole.layer
    )
    return yield* Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(Cli.run(args))
      if (options.stopAfter !== undefined) {
        yield* Effect.sleep(options.stopAfter)
        yield* Fiber.interrupt(fiber)
      }
      const exit = yield* Fiber.await(fiber)
      const stderr = (yield* TestConsole.errorLines).map(String)
      return { exit, stdout: writes.join(""), writes, stderr } satisfies Run
    }).pipe(Effect.provide(environment))
  })
