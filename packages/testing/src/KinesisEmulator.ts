/**
 * kinesis-mock (the npm `kinesis-local` build) as a scoped Layer: a real Kinesis API on loopback, started as a child
 * process for a test file and stopped — SIGTERM, then SIGKILL — when the layer's scope closes.
 *
 * @since 0.1.0
 */
import { AdminClient, Client } from "@effect-kinesis/core"
import { Context, Duration, Effect, Layer, type Scope } from "effect"
import { createRequire } from "node:module"
import * as Path from "node:path"
import * as Emulator from "./Emulator.ts"
import * as EmulatorProcess from "./internal/emulatorProcess.ts"

/**
 * How long kinesis-mock keeps a stream or consumer in a transitional state (CREATING, UPDATING, DELETING) after each
 * control-plane call. Unset entries use `KinesisEmulatorOptions.transitionDuration`.
 *
 * @example
 * ```ts
 * import type { KinesisEmulator } from "@effect-kinesis/testing"
 *
 * const durations: KinesisEmulator.KinesisEmulatorDurations = { splitShard: "1 second" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface KinesisEmulatorDurations {
  readonly createStream?: Duration.Input | undefined
  readonly deleteStream?: Duration.Input | undefined
  readonly splitShard?: Duration.Input | undefined
  readonly mergeShards?: Duration.Input | undefined
  readonly updateShardCount?: Duration.Input | undefined
  readonly updateStreamMode?: Duration.Input | undefined
  readonly registerStreamConsumer?: Duration.Input | undefined
  readonly deregisterStreamConsumer?: Duration.Input | undefined
  readonly startStreamEncryption?: Duration.Input | undefined
  readonly stopStreamEncryption?: Duration.Input | undefined
}

/**
 * Options of {@link layer}. All optional; the defaults suit tests.
 *
 * @example
 * ```ts
 * import { KinesisEmulator } from "@effect-kinesis/testing"
 *
 * const EmulatorLive = KinesisEmulator.layer({ region: "eu-west-1", transitionDuration: "50 millis" })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface KinesisEmulatorOptions {
  /** Region clients sign with (kinesis-mock keeps streams per region). Default `us-east-1`. */
  readonly region?: string | undefined
  /** The account id in ARNs and error messages. Default `000000000000`. */
  readonly accountId?: string | undefined
  /** Default for every entry of `durations`. Default 100 ms (kinesis-mock's own default is 500 ms). */
  readonly transitionDuration?: Duration.Input | undefined
  /** Per-operation transition durations. */
  readonly durations?: KinesisEmulatorDurations | undefined
  /** Open shards allowed in the account. Default 1000 (kinesis-mock's default of 50 is soon reached by a test file). */
  readonly shardLimit?: number | undefined
  /** On-demand streams allowed in the account. Default 50. */
  readonly onDemandStreamCountLimit?: number | undefined
  /** Plain HTTP port. Default: a free loopback port (kinesis-mock binds all interfaces). */
  readonly port?: number | undefined
  /** TLS port. Default: a free port. */
  readonly tlsPort?: number | undefined
  /** How long to wait for the emulator to answer. Default 30 seconds. */
  readonly startupTimeout?: Duration.Input | undefined
  /**
   * Time between SIGTERM and SIGKILL on shutdown. Default 250 ms: kinesis-mock takes about two seconds to honour
   * SIGTERM, and an in-memory emulator has nothing to save.
   */
  readonly stopGracePeriod?: Duration.Input | undefined
  /** Output lines kept for error messages. Default 200. */
  readonly outputLines?: number | undefined
  /** kinesis-mock's `main.js`. Default: the one of the installed `kinesis-local` package. */
  readonly mainScript?: string | undefined
  /** Extra environment variables for kinesis-mock (they override the ones set from the options). */
  readonly env?: Readonly<Record<string, string>> | undefined
}

const durationEnv: ReadonlyArray<readonly [keyof KinesisEmulatorDurations, string]> = [
  ["createStream", "CREATE_STREAM_DURATION"],
  ["deleteStream", "DELETE_STREAM_DURATION"],
  ["splitShard", "SPLIT_SHARD_DURATION"],
  ["mergeShards", "MERGE_SHARDS_DURATION"],
  ["updateShardCount", "UPDATE_SHARD_COUNT_DURATION"],
  ["updateStreamMode", "UPDATE_STREAM_MODE_DURATION"],
  ["registerStreamConsumer", "REGISTER_STREAM_CONSUMER_DURATION"],
  ["deregisterStreamConsumer", "DEREGISTER_STREAM_CONSUMER_DURATION"],
  ["startStreamEncryption", "START_STREAM_ENCRYPTION_DURATION"],
  ["stopStreamEncryption", "STOP_STREAM_ENCRYPTION_DURATION"]
]

const millis = (input: Duration.Input): number => Duration.toMillis(Duration.fromInputUnsafe(input))

const packageDir = (): string => Path.dirname(createRequire(import.meta.url).resolve("kinesis-local/package.json"))

// kinesis-mock only checks that the Authorization header is well-formed, and takes the region from its scope.
const unsignedHeaders = (region: string, target: string): Record<string, string> => ({
  "Content-Type": "application/x-amz-json-1.1",
  "X-Amz-Target": `Kinesis_20131202.${target}`,
  "X-Amz-Date": "20240101T000000Z",
  Authorization: `AWS4-HMAC-SHA256 Credential=${Emulator.credentials.accessKeyId}/20240101/${region}/kinesis/`
    + "aws4_request, SignedHeaders=host;x-amz-date, Signature=0"
})

/**
 * A running kinesis-mock: where it listens and how to reach it. Build it with {@link layer} and share
 * one per test file — it takes about a second to start.
 *
 * @example
 * ```ts
 * import { assert, layer } from "@effect/vitest"
 * import { Effect } from "effect"
 * import { KinesisEmulator } from "@effect-kinesis/testing"
 *
 * layer(KinesisEmulator.layer())("my stream tests", (it) => {
 *   it.effect("reaches the emulator", () =>
 *     Effect.gen(function*() {
 *       const emulator = yield* KinesisEmulator.KinesisEmulator
 *       assert.match(emulator.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/)
 *     }))
 * })
 * ```
 *
 * @since 0.1.0
 * @category services
 */
export class KinesisEmulator extends Context.Service<KinesisEmulator, {
  readonly name: string
  readonly pid: number
  readonly supervisorPid: number
  readonly output: Effect.Effect<string>
  /** The plain HTTP endpoint, e.g. `http://127.0.0.1:45123`. */
  readonly endpoint: string
  /** The TLS endpoint (self-signed certificate). */
  readonly tlsEndpoint: string
  readonly region: string
  readonly accountId: string
  readonly credentials: Emulator.EmulatorCredentials
  /** Endpoint, region, credentials and the HTTP/1.1 requirement, for building a client. */
  readonly clientConfig: Emulator.EmulatorClientConfig
}>()("@effect-kinesis/testing/KinesisEmulator") {}

/**
 * Starts kinesis-mock in the current scope and waits until it answers.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { KinesisEmulator } from "@effect-kinesis/testing"
 *
 * const endpoint = Effect.scoped(Effect.map(KinesisEmulator.make(), (emulator) => emulator.endpoint))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: KinesisEmulatorOptions = {}
): Effect.Effect<KinesisEmulator["Service"], Emulator.EmulatorStartError, Scope.Scope> =>
  Effect.gen(function*() {
    const region = options.region ?? "us-east-1"
    const accountId = options.accountId ?? "000000000000"
    const transition = options.transitionDuration ?? Duration.millis(100)
    const dir = packageDir()
    const mainScript = options.mainScript ?? Path.join(dir, "main.js")
    const durations: Record<string, string> = {}
    for (const [key, name] of durationEnv) {
      durations[name] = `${millis(options.durations?.[key] ?? transition)}ms`
    }
    const running = yield* EmulatorProcess.start({
      name: "kinesis-local",
      ports: [options.port, options.tlsPort],
      command: ([plain, tls]) => ({
        args: [mainScript],
        env: {
          KINESIS_MOCK_PLAIN_PORT: String(plain),
          KINESIS_MOCK_TLS_PORT: String(tls),
          KINESIS_MOCK_CERT_PATH: Path.join(dir, "server.json"),
          LOG_LEVEL: "WARN",
          AWS_REGION: region,
          AWS_ACCOUNT_ID: accountId,
          SHARD_LIMIT: String(options.shardLimit ?? 1000),
          ON_DEMAND_STREAM_COUNT_LIMIT: String(options.onDemandStreamCountLimit ?? 50),
          SHOULD_PERSIST_DATA: "false",
          ...durations,
          ...options.env
        }
      }),
      probe: ([plain], signal) =>
        fetch(`http://127.0.0.1:${plain}/`, {
          method: "POST",
          headers: unsignedHeaders(region, "ListStreams"),
          body: "{}",
          signal: AbortSignal.any([signal, AbortSignal.timeout(1_000)])
        }).then((response) => response.body?.cancel().then(() => true) ?? true, () => false),
      startupTimeoutMillis: millis(options.startupTimeout ?? "30 seconds"),
      stopGraceMillis: millis(options.stopGracePeriod ?? "250 millis"),
      outputLines: options.outputLines ?? 200
    })
    const endpoint = `http://127.0.0.1:${running.ports[0]}`
    return KinesisEmulator.of({
      name: "kinesis-local",
      pid: running.pid,
      supervisorPid: running.supervisorPid,
      output: Effect.sync(running.output),
      endpoint,
      tlsEndpoint: `https://127.0.0.1:${running.ports[1]}`,
      region,
      accountId,
      credentials: Emulator.credentials,
      clientConfig: { endpoint, region, credentials: Emulator.credentials, httpHandler: "http1" }
    })
  })

/**
 * A layer running one kinesis-mock for as long as the layer lives. With `@effect/vitest`, `layer(...)` shares it
 * across a test file.
 *
 * @example
 * ```ts
 * import { KinesisEmulator } from "@effect-kinesis/testing"
 *
 * const EmulatorLive = KinesisEmulator.layer({ transitionDuration: "50 millis" })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: KinesisEmulatorOptions = {}
): Layer.Layer<KinesisEmulator, Emulator.EmulatorStartError> => Layer.effect(KinesisEmulator, make(options))

/**
 * {@link Emulator.withOutputOnFailure} with the emulator from the context: a failing test also prints the
 * emulator's last output lines.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { KinesisEmulator } from "@effect-kinesis/testing"
 *
 * const test = Effect.fail("boom").pipe(KinesisEmulator.withOutputOnFailure)
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const withOutputOnFailure = <A, E, R>(
  self: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R | KinesisEmulator> =>
  Effect.flatMap(KinesisEmulator, (emulator) => Emulator.withOutputOnFailure(emulator)(self))

/**
 * Core's `Client` and `AdminClient`, pointed at the emulator in context (over HTTP/1.1, which
 * kinesis-mock needs for SubscribeToShard).
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { KinesisEmulator } from "@effect-kinesis/testing"
 *
 * const Live = KinesisEmulator.layerClient.pipe(Layer.provideMerge(KinesisEmulator.layer()))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClient: Layer.Layer<Client.Client | AdminClient.AdminClient, never, KinesisEmulator> = AdminClient
  .layer.pipe(
    Layer.provideMerge(
      Layer.unwrap(Effect.map(Effect.service(KinesisEmulator), (emulator) => Client.layer(emulator.clientConfig)))
    )
  )
