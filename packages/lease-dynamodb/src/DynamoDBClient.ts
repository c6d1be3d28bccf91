/**
 * The DynamoDB client the lease store uses: an AWS SDK `DynamoDBClient` configured like the Kinesis client of
 * `@effect-kinesis/core` (same endpoint, region and credential settings), living as long as its layer.
 *
 * Named with the AWS SDK's spelling (`DynamoDB`); `DynamoDbClient` is its deprecated former name.
 *
 * @since 0.2.0
 */
import { DynamoDBClient as SdkDynamoDBClient } from "@aws-sdk/client-dynamodb"
import { Client } from "@effect-kinesis/core"
import { Config, Context, Effect, Layer, Option } from "effect"

/**
 * How to reach DynamoDB: the fields of core's `Client.ClientConfig` except the HTTP handler (DynamoDB speaks
 * HTTP/1.1 only). With nothing set the client uses the region and credentials the AWS SDK's default chain finds.
 * An object built for the Kinesis client (or an emulator's `clientConfig`) can be passed as is.
 *
 * @example
 * ```ts
 * import type { DynamoDBClient } from "@effect-kinesis/lease-dynamodb"
 *
 * const local: DynamoDBClient.DynamoDBClientConfig = {
 *   endpoint: "http://127.0.0.1:4568",
 *   region: "us-east-1",
 *   credentials: { accessKeyId: "local", secretAccessKey: "local" }
 * }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export type DynamoDBClientConfig = Omit<Client.ClientConfig, "httpHandler">

/**
 * The DynamoDB client service.
 *
 * @example
 * ```ts
 * import { ListTablesCommand } from "@aws-sdk/client-dynamodb"
 * import { Effect } from "effect"
 * import { DynamoDBClient } from "@effect-kinesis/lease-dynamodb"
 *
 * const tables = Effect.gen(function*() {
 *   const { sdk } = yield* DynamoDBClient.DynamoDBClient
 *   return yield* Effect.promise((signal) => sdk.send(new ListTablesCommand({}), { abortSignal: signal }))
 * }).pipe(Effect.provide(DynamoDBClient.layer({ region: "eu-west-1" })))
 * ```
 *
 * @since 0.2.0
 * @category services
 */
export class DynamoDBClient extends Context.Service<DynamoDBClient, {
  readonly sdk: SdkDynamoDBClient
}>()("@effect-kinesis/lease-dynamodb/DynamoDBClient") {}

/**
 * Builds the AWS SDK client for a configuration. The caller owns it and must `destroy()` it.
 *
 * @example
 * ```ts
 * import { DynamoDBClient } from "@effect-kinesis/lease-dynamodb"
 *
 * const sdk = DynamoDBClient.makeSdkClient({ region: "eu-west-1" })
 * sdk.destroy()
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeSdkClient = (config: DynamoDBClientConfig = {}): SdkDynamoDBClient =>
  // Retries belong to the lease store, which bounds them by lease expiry; SDK retries would multiply them.
  new SdkDynamoDBClient(Client.sdkOptions({ ...config, httpHandler: "http1" }))

/**
 * A layer from an explicit configuration; the SDK client is destroyed when the layer's scope closes.
 *
 * @example
 * ```ts
 * import { DynamoDBClient } from "@effect-kinesis/lease-dynamodb"
 *
 * const DynamoLive = DynamoDBClient.layer({ region: "eu-west-1" })
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (config: DynamoDBClientConfig = {}): Layer.Layer<DynamoDBClient> =>
  Layer.effect(
    DynamoDBClient,
    Effect.map(
      Effect.acquireRelease(Effect.sync(() => makeSdkClient(config)), (sdk) => Effect.sync(() => sdk.destroy())),
      (sdk) => DynamoDBClient.of({ sdk })
    )
  )

/**
 * The client configuration read from Effect `Config` (environment variables by default):
 *
 * | variable | meaning |
 * |---|---|
 * | `DYNAMODB_ENDPOINT` | endpoint override (unset: AWS) |
 * | `AWS_REGION` | region (unset: the SDK's chain) |
 * | `DYNAMODB_MAX_ATTEMPTS` | SDK attempts per call (default 1) |
 *
 * Credentials always come from the SDK's default chain.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { DynamoDBClient } from "@effect-kinesis/lease-dynamodb"
 *
 * const config = Effect.runSync(DynamoDBClient.config)
 * ```
 *
 * @since 0.2.0
 * @category config
 */
export const config: Config.Config<DynamoDBClientConfig> = Config.all({
  endpoint: Config.option(Config.String("DYNAMODB_ENDPOINT")),
  region: Config.option(Config.String("AWS_REGION")),
  maxAttempts: Config.Int("DYNAMODB_MAX_ATTEMPTS").pipe(Config.withDefault(1))
}).pipe(Config.map((c) => ({
  endpoint: Option.getOrUndefined(c.endpoint),
  region: Option.getOrUndefined(c.region),
  maxAttempts: c.maxAttempts
})))

/**
 * A layer configured from the environment, see {@link config}.
 *
 * @example
 * ```ts
 * import { DynamoDBClient } from "@effect-kinesis/lease-dynamodb"
 *
 * const DynamoLive = DynamoDBClient.layerConfig
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig: Layer.Layer<DynamoDBClient, Config.ConfigError> = Layer.unwrap(
  Effect.map(config, layer)
)
