/**
 * The `effect-kinesis` command line, as a value: the `leases`, `stream` and `tail` commands on
 * Effect's CLI module, runnable in-process (tests, your own tools) or as the `effect-kinesis`
 * executable (`bin.ts`).
 *
 * Kinesis and DynamoDB are reached as the library's clients are: `Client.Client` and
 * `DynamoDBClient.DynamoDBClient` from the context, which {@link layerConfig} builds from the
 * environment (`KINESIS_ENDPOINT`, `DYNAMODB_ENDPOINT`, `AWS_REGION`, the SDK's credential chain).
 *
 * @since 0.1.0
 */
import type { Consumer } from "@effect-kinesis/consumer"
import { Client } from "@effect-kinesis/core"
import { DynamoDBClient } from "@effect-kinesis/lease-dynamodb"
import { Cause, Console, Duration, Effect, Exit, Layer, Logger, Option, References, Runtime, Stdio } from "effect"
import { Argument, type CliError, CliOutput, Command, Flag, TerminalCapabilities } from "effect/cli"
import { CommandError } from "./CommandError.ts"
import * as Leases from "./internal/leases.ts"
import * as StreamInfo from "./internal/stream.ts"
import * as Tail from "./internal/tail.ts"

/**
 * The version `effect-kinesis --version` prints.
 *
 * @example
 * ```ts
 * import { Cli } from "@effect-kinesis/cli"
 *
 * console.log(Cli.version)
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const version = "0.1.0"

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|millis|s|sec|seconds?|m|min|minutes?|h|hours?)$/

// `2s`, `500ms`, `1m`, `2 seconds`: what people type, which Duration's own input syntax does not all accept.
const parseDuration = (input: string): Option.Option<Duration.Duration> => {
  const match = DURATION.exec(input.trim())
  if (match === null) return Option.none()
  const n = Number(match[1])
  const unit = match[2]!
  const millis = unit === "ms" || unit === "millis"
    ? n
    : unit.startsWith("s")
    ? n * 1000
    : unit.startsWith("m")
    ? n * 60_000
    : n * 3_600_000
  return millis > 0 ? Option.some(Duration.millis(millis)) : Option.none()
}

const durationFlag = (name: string, fallback: string, description: string) =>
  Flag.String(name).pipe(
    Flag.withDefault(fallback),
    Flag.filterMap(parseDuration, () => "a duration like 2s, 500ms or 1m"),
    Flag.withDescription(description)
  )

const json = Flag.Boolean("json").pipe(
  Flag.withDefault(false),
  Flag.withDescription("Print JSON for scripts")
)

const leases = Command.make("leases", {
  application: Argument.String("application").pipe(
    Argument.withDescription("The consumer's application name (its lease table, unless --table says otherwise)")
  ),
  stream: Flag.String("stream").pipe(
    Flag.optional,
    Flag.withDescription("The stream the application reads: shows how far behind each shard's checkpoint is")
  ),
  table: Flag.String("table").pipe(Flag.optional, Flag.withDescription("The lease table (default: the application)")),
  json,
  watch: Flag.Boolean("watch").pipe(
    Flag.withDefault(false),
    Flag.withDescription("With JSON output: print one document per interval (one per line) until Ctrl-C")
  ),
  interval: durationFlag("interval", "2s", "How often to redraw (or print, with --watch); default 2s"),
  expiry: durationFlag(
    "expiry",
    "10s",
    "The application's lease expiry (default 10s, the consumer's): a held lease whose counter stood still this long shows as expired?"
  )
}, (input) =>
  Leases.run({
    application: input.application,
    table: Option.getOrElse(input.table, () => input.application),
    stream: Option.getOrUndefined(input.stream),
    json: input.json,
    watch: input.watch,
    interval: input.interval,
    expiry: input.expiry
  })).pipe(
    Command.withDescription(
      "The lease table of a consumer application: per shard its state, owner, checkpoint, lag and last renewal; live on a terminal, JSON otherwise"
    ),
    Command.withExamples([
      { command: "effect-kinesis leases billing --stream orders", description: "Live view, redrawn every 2 s" },
      { command: "effect-kinesis leases billing --stream orders --json", description: "One JSON document" }
    ])
  )

const stream = Command.make("stream", {
  name: Argument.String("name").pipe(Argument.withDescription("Stream name or ARN")),
  json
}, (input) => StreamInfo.run({ stream: input.name, json: input.json })).pipe(
  Command.withDescription(
    "A stream's status, capacity mode and retention, and its shards: hash ranges, parents, open/closed"
  )
)

const parsePosition = (input: string): Option.Option<Consumer.InitialPosition> => {
  const lower = input.toLowerCase()
  if (lower === "latest") return Option.some("LATEST")
  if (lower === "trim-horizon" || lower === "trim_horizon") return Option.some("TRIM_HORIZON")
  // An ISO date and time: a bare number or word is more likely a mistake than a timestamp.
  if (!/^\d{4}-\d{2}-\d{2}/.test(input)) return Option.none()
  const time = Date.parse(input)
  return Number.isNaN(time) ? Option.none() : Option.some({ atTimestamp: new Date(time) })
}

const tail = Command.make("tail", {
  stream: Argument.String("stream").pipe(Argument.withDescription("Stream name or ARN")),
  from: Flag.String("from").pipe(
    Flag.withDefault("latest"),
    Flag.filterMap(
      parsePosition,
      () => "latest, trim-horizon or an ISO time like 2026-12-04T10:00:00Z"
    ),
    Flag.withDescription("Where to start: latest (default), trim-horizon, or an ISO timestamp")
  ),
  format: Flag.Literals("format", ["text", "json", "raw"]).pipe(
    Flag.withDefault("text"),
    Flag.withDescription(
      "text (default): one line per record with its metadata; json: one object per line; raw: the data only"
    )
  ),
  limit: Flag.Int("limit").pipe(
    Flag.filter((n) => n >= 0, (n) => `--limit ${n} is negative: give the number of records to print`),
    Flag.optional,
    Flag.withDescription("Stop after this many records (default: run until Ctrl-C)")
  )
}, (input) =>
  Tail.run({
    stream: input.stream,
    from: input.from,
    format: input.format,
    limit: Option.getOrUndefined(input.limit)
  })).pipe(
    Command.withDescription(
      "Print a stream's records (KPL aggregates unpacked) from latest, trim-horizon or a time, following splits and merges"
    )
  )

/**
 * The root command, `effect-kinesis`, with its three subcommands.
 *
 * @example
 * ```ts
 * import { Command } from "effect/cli"
 * import { Cli } from "@effect-kinesis/cli"
 *
 * const runWithArgs = Command.runWith(Cli.command, { version: Cli.version })
 * const program = runWithArgs(["stream", "orders", "--json"])
 * ```
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("effect-kinesis").pipe(
  Command.withDescription("Look at a Kinesis application: its leases and lag, its stream's shards, its records"),
  Command.withSubcommands([leases, stream, tail])
)

// A failure is one line on stderr: the commands' own errors say what to do, and a bad invocation says where the help is.
const presenter: CliOutput.Presenter = {
  present: (event) =>
    event._tag === "InvalidInvocation"
      ? Console.error(
        event.errors.map((error) => `effect-kinesis: ${error.message}`).join("\n") +
          ` (see: ${event.commandPath.join(" ")} --help)`
      )
      : CliOutput.defaultPresenter.present(event)
}

const outputLayer = Layer.unwrap(Effect.gen(function*() {
  const { canColor } = yield* TerminalCapabilities.TerminalCapabilities
  const formatter = CliOutput.defaultFormatter({ colors: canColor })
  return Layer.mergeAll(
    CliOutput.layer({ ...formatter, formatError: (error) => `effect-kinesis: ${error.message}` }),
    CliOutput.layerPresenter(presenter)
  )
}))

/**
 * Runs the command line with explicit arguments (without the program name), printing what the
 * executable prints. A failure has already been printed (one line on standard error) when the
 * effect fails with it.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { NodeServices } from "@effect/platform-node"
 * import { Cli } from "@effect-kinesis/cli"
 *
 * const program = Cli.run(["stream", "orders"]).pipe(
 *   Effect.provide(Layer.merge(Cli.layerConfig, NodeServices.layer))
 * )
 * ```
 *
 * @since 0.1.0
 * @category running
 */
export const run = (
  args: ReadonlyArray<string>
): Effect.Effect<
  void,
  CommandError | CliError.CliError,
  Command.Environment | Client.Client | DynamoDBClient.DynamoDBClient
> =>
  Command.runWith(command, { version })(args).pipe(
    Effect.provide(outputLayer),
    // Logs (the consumer's warnings while tailing) go to stderr, and only from warnings up unless --log-level says so.
    Effect.provideService(Logger.LogToStderr, true),
    Effect.provideService(References.MinimumLogLevel, "Warn")
  )

/**
 * The Kinesis and DynamoDB clients configured from the environment: `Client.config`
 * (`KINESIS_ENDPOINT`, `AWS_REGION`, `KINESIS_HTTP_HANDLER`…) and `DynamoDBClient.config`
 * (`DYNAMODB_ENDPOINT`, `AWS_REGION`…); credentials from the AWS SDK's default chain.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { NodeServices } from "@effect/platform-node"
 * import { Cli } from "@effect-kinesis/cli"
 *
 * const environment = Layer.merge(Cli.layerConfig, NodeServices.layer)
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: Layer.Layer<Client.Client | DynamoDBClient.DynamoDBClient, CommandError> = Layer.unwrap(
  Effect.gen(function*() {
    const kinesis = yield* Client.config
    const dynamo = yield* DynamoDBClient.config
    return Layer.merge(Client.layer(kinesis), DynamoDBClient.layer(dynamo))
  }).pipe(
    Effect.mapError((error) =>
      new CommandError({
        reason: "InvalidArgument",
        message: `bad configuration in the environment: ${error.message.replace(/\s*\n\s*/g, " ")}`,
        cause: error
      })
    )
  )
)

/**
 * The executable: arguments from `Stdio`, clients from the environment, every failure printed as
 * one line (also those the commands did not expect), no stack trace.
 *
 * @example
 * ```ts
 * import { NodeRuntime, NodeServices } from "@effect/platform-node"
 * import { Effect } from "effect"
 * import { Cli } from "@effect-kinesis/cli"
 *
 * Cli.main.pipe(
 *   Effect.provide(NodeServices.layer),
 *   NodeRuntime.runMain({ disableErrorReporting: true, teardown: Cli.teardown })
 * )
 * ```
 *
 * @since 0.1.0
 * @category running
 */
export const main: Effect.Effect<void, unknown, Command.Environment> = Effect.gen(function*() {
  const args = yield* (yield* Stdio.Stdio).args
  yield* run(args).pipe(Effect.provide(layerConfig))
}).pipe(
  Effect.tapCause((cause) => {
    if (Cause.hasInterruptsOnly(cause)) return Effect.void
    const error = Cause.squash(cause)
    // Already printed: the commands' errors by the CLI's formatter, bad invocations by the presenter.
    if (Runtime.getErrorReported(error) === false) return Effect.void
    const message = error instanceof Error ? error.message : String(error)
    return Console.error(`effect-kinesis: ${message}`)
  })
)

/**
 * How the executable exits: 0 on success and when stopped with Ctrl-C (the way to leave `leases`
 * and `tail`), 1 on any failure.
 *
 * @example
 * ```ts
 * import { Exit } from "effect"
 * import { Cli } from "@effect-kinesis/cli"
 *
 * Cli.teardown(Exit.void, (code) => console.log(code)) // 0
 * ```
 *
 * @since 0.1.0
 * @category running
 */
export const teardown: Runtime.Teardown = (exit, onExit) => {
  if (Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)) return onExit(0)
  return Runtime.defaultTeardown(exit, onExit)
}
