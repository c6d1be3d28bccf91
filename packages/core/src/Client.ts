/**
 * The Kinesis data-plane client: every call an Effect with a typed {@link KinesisError}, every
 * paginated call a `Stream`, interruption aborting the HTTP request.
 *
 * @since 0.1.0
 */
import type {
  Consumer as SdkConsumer,
  ConsumerDescription,
  GetRecordsInput,
  GetRecordsOutput,
  PutRecordInput,
  PutRecordOutput,
  PutRecordsOutput,
  PutRecordsRequestEntry,
  Shard,
  ShardFilter,
  ShardIteratorType,
  StartingPosition,
  StreamDescriptionSummary,
  SubscribeToShardEvent
} from "@aws-sdk/client-kinesis"
import {
  DeregisterStreamConsumerCommand,
  DescribeStreamConsumerCommand,
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  KinesisClient,
  ListShardsCommand,
  ListStreamConsumersCommand,
  ListStreamsCommand,
  PutRecordCommand,
  PutRecordsCommand,
  RegisterStreamConsumerCommand,
  SubscribeToShardCommand
} from "@aws-sdk/client-kinesis"
import { NodeHttp2Handler } from "@smithy/node-http-handler"
import { Config, Context, Duration, Effect, Layer, Option, Redacted, Stream } from "effect"
import * as GetRecordsBody from "./internal/getRecordsBody.ts"
import * as PutRecordsBody from "./internal/putRecordsBody.ts"
import * as ResponseTimeout from "./internal/responseTimeout.ts"
import { makeSdkClient, sdkOptions as sdkOptionsInternal } from "./internal/sdkClient.ts"
import * as KinesisError from "./KinesisError.ts"

/**
 * How to reach Kinesis. Every field is optional: with nothing set the client talks to AWS in the
 * region and with the credentials the AWS SDK's default provider chain finds.
 *
 * @example
 * ```ts
 * import type { Client } from "@effect-kinesis/core"
 *
 * const local: Client.ClientConfig = {
 *   endpoint: "http://127.0.0.1:4567",
 *   region: "us-east-1",
 *   credentials: { accessKeyId: "local", secretAccessKey: "local" },
 *   httpHandler: "http1"
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ClientConfig {
  /** AWS region. Default: the SDK's chain (`AWS_REGION`, profile); `us-east-1` when an endpoint is set. */
  readonly region?: string | undefined
  /** Endpoint override, e.g. a local emulator. Default: the AWS endpoint for the region. */
  readonly endpoint?: string | undefined
  /** Static credentials. Default: the SDK's default credential provider chain. */
  readonly credentials?: StaticCredentials | undefined
  /**
   * HTTP handler. `"http2"` (default) is what AWS requires for `SubscribeToShard`; `"http1"` is
   * what kinesis-mock requires for it. Unary calls work with either.
   */
  readonly httpHandler?: "http1" | "http2" | undefined
  /**
   * Attempts the SDK itself makes per call. Default 1: retry policy belongs to the caller
   * (producer, consumer, or your own `Effect.retry` on `KinesisError.isRetryable`), so that
   * retries do not multiply.
   */
  readonly maxAttempts?: number | undefined
  /** Sockets per host for the HTTP/1.1 handler. Default 50. */
  readonly maxSockets?: number | undefined
  /**
   * How long a unary call (every operation but `SubscribeToShard`) may wait for its answer to
   * start (the response headers) before it is abandoned and fails with a retryable
   * `ServiceUnavailable` (code `TimeoutError`); on HTTP/2 the pooled sessions are then dropped, so
   * that the next calls open a new connection. Without it, a connection that goes silent (a NAT or
   * load balancer forgetting the flow: no answer, no reset) hangs the call for good. The body may
   * then take as long as it needs: a 10 MiB `GetRecords` answer over a slow link is not cut off.
   * Default 10 s. The producer's `requestTimeout` replaces it for `PutRecords`.
   * `SubscribeToShard` streams are watched by the consumer's stall detection instead. Applies to this Kinesis client only: `sdkOptions` leaves
   * it out (the DynamoDB lease store times its calls itself).
   */
  readonly requestTimeout?: Duration.Input | undefined
}

/**
 * Options of {@link fromSdk}.
 *
 * @since 0.1.0
 * @category models
 */
export interface FromSdkOptions {
  /** See {@link ClientConfig} `requestTimeout`. Default 10 s. */
  readonly requestTimeout?: Duration.Input | undefined
}

/**
 * Static AWS credentials.
 *
 * @since 0.1.0
 * @category models
 */
export interface StaticCredentials {
  readonly accessKeyId: string
  readonly secretAccessKey: string | Redacted.Redacted<string>
  readonly sessionToken?: string | Redacted.Redacted<string> | undefined
}

/**
 * A stream is addressed by its name, or by its ARN (`arn:aws:kinesis:…`) — the ARN form reaches
 * streams in other accounts.
 *
 * @since 0.1.0
 * @category models
 */
export type StreamId = string

/**
 * The request parameters that address a stream, by name or ARN.
 *
 * @example
 * ```ts
 * import { Client } from "@effect-kinesis/core"
 *
 * Client.streamParams("orders") // { StreamName: "orders" }
 * Client.streamParams("arn:aws:kinesis:eu-west-1:123456789012:stream/orders") // { StreamARN: "arn:…" }
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const streamParams = (stream: StreamId): { StreamName: string } | { StreamARN: string } =>
  stream.startsWith("arn:") ? { StreamARN: stream } : { StreamName: stream }

/**
 * One entry of `ListStreams`.
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamListing {
  readonly streamName: string
  readonly streamARN: string | undefined
  readonly status: string | undefined
}

/**
 * Options of {@link Client} `listShards`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ListShardsOptions {
  /** E.g. `{ Type: "AT_LATEST" }` for open shards only. */
  readonly shardFilter?: ShardFilter | undefined
  /** Page size (1–10000). Default: Kinesis's (1000). */
  readonly pageSize?: number | undefined
  /** List shards after this one. */
  readonly exclusiveStartShardId?: string | undefined
}

/**
 * Options of {@link Client} `getShardIterator`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ShardIteratorOptions {
  readonly shardId: string
  readonly type: ShardIteratorType
  readonly sequenceNumber?: string | undefined
  readonly timestamp?: Date | undefined
}

/**
 * The Kinesis client service.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Client } from "@effect-kinesis/core"
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* Client.Client
 *   yield* client.putRecord("orders", { PartitionKey: "customer-1", Data: new TextEncoder().encode("hello") })
 *   const shards = yield* Stream.runCollect(client.listShards("orders"))
 *   return shards.map((shard) => shard.ShardId)
 * }).pipe(Effect.provide(Client.layer({ region: "eu-west-1" })))
 * ```
 *
 * @since 0.1.0
 * @category services
 */
export class Client extends Context.Service<Client, {
  /** The underlying AWS SDK client, for calls this service does not wrap. */
  readonly sdk: KinesisClient
  readonly putRecord: (
    stream: StreamId,
    input: Omit<PutRecordInput, "StreamName" | "StreamARN">
  ) => Effect.Effect<PutRecordOutput, KinesisError.KinesisError>
  /** `options.requestTimeout` replaces the client's for this call (the producer's own setting). */
  readonly putRecords: (
    stream: StreamId,
    records: Array<PutRecordsRequestEntry>,
    options?: { readonly requestTimeout?: Duration.Input | undefined }
  ) => Effect.Effect<PutRecordsOutput, KinesisError.KinesisError>
  readonly getShardIterator: (
    stream: StreamId,
    options: ShardIteratorOptions
  ) => Effect.Effect<string, KinesisError.KinesisError>
  readonly getRecords: (input: GetRecordsInput) => Effect.Effect<GetRecordsOutput, KinesisError.KinesisError>
  readonly listShards: (
    stream: StreamId,
    options?: ListShardsOptions
  ) => Stream.Stream<Shard, KinesisError.KinesisError>
  readonly listStreams: (options?: { readonly pageSize?: number }) => Stream.Stream<
    StreamListing,
    KinesisError.KinesisError
  >
  readonly describeStreamSummary: (stream: StreamId) => Effect.Effect<
    StreamDescriptionSummary,
    KinesisError.KinesisError
  >
  /** Resolves a stream name (or ARN) to its ARN. */
  readonly streamArn: (stream: StreamId) => Effect.Effect<string, KinesisError.KinesisError>
  readonly subscribeToShard: (input: {
    readonly consumerARN: string
    readonly shardId: string
    readonly startingPosition: StartingPosition
  }) => Stream.Stream<SubscribeToShardEvent, KinesisError.KinesisError>
  readonly registerStreamConsumer: (
    stream: StreamId,
    consumerName: string
  ) => Effect.Effect<SdkConsumer, KinesisError.KinesisError>
  readonly describeStreamConsumer: (
    consumer: { readonly consumerARN: string } | { readonly stream: StreamId; readonly consumerName: string }
  ) => Effect.Effect<ConsumerDescription, KinesisError.KinesisError>
  readonly deregisterStreamConsumer: (
    consumer: { readonly consumerARN: string } | { readonly stream: StreamId; readonly consumerName: string }
  ) => Effect.Effect<void, KinesisError.KinesisError>
  readonly listStreamConsumers: (stream: StreamId) => Stream.Stream<SdkConsumer, KinesisError.KinesisError>
}>()("@effect-kinesis/core/Client") {}

/**
 * Builds the client service from an SDK client the caller owns.
 *
 * It adds middleware to that client (once): `putRecords` writes the request body itself
 * (with Node's native base64, where the SDK's serializer encodes byte by byte in JavaScript),
 * and the middleware sends it in place of the SDK's before the request is signed; the successful
 * answers of `putRecords` and `getRecords` are decoded by the client (error answers by the SDK).
 * Commands sent to the client directly are left alone.
 *
 * @example
 * ```ts
 * import { KinesisClient } from "@aws-sdk/client-kinesis"
 * import { Client } from "@effect-kinesis/core"
 *
 * const client = Client.fromSdk(new KinesisClient({ region: "eu-west-1" }))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromSdk = (sdk: KinesisClient, options: FromSdkOptions = {}): Client["Service"] => {
  PutRecordsBody.install(sdk)
  GetRecordsBody.install(sdk)
  ResponseTimeout.install(sdk)
  const requestTimeoutMillis = Duration.toMillis(Duration.fromInputUnsafe(options.requestTimeout ?? "10 seconds"))
  // A call without an answer most likely went to a connection that went silent. On HTTP/1.1 the
  // abort destroys its socket; an HTTP/2 session would carry the next calls into the same silence,
  // so the pooled sessions are dropped (their other calls fail as transport failures and are
  // retried; `SubscribeToShard` has sessions of its own and is left alone).
  const dropSilentSessions = () => {
    const handler: unknown = sdk.config.requestHandler
    if (handler instanceof NodeHttp2Handler) handler.destroy()
  }
  const untimedCall = <A>(operation: string, send: (signal: AbortSignal) => Promise<A>) =>
    Effect.tryPromise({ try: send, catch: (error) => KinesisError.fromSdkError(operation, error) })
  const call = <A>(
    operation: string,
    send: (signal: AbortSignal) => Promise<A>,
    timeoutMillis = requestTimeoutMillis
  ) =>
    untimedCall(
      operation,
      (signal) => ResponseTimeout.send(signal, timeoutMillis, dropSilentSessions, send)
    )

  const describeStreamSummary = (stream: StreamId) =>
    call(
      "DescribeStreamSummary",
      (abortSignal) => sdk.send(new DescribeStreamSummaryCommand(streamParams(stream)), { abortSignal })
    ).pipe(Effect.map((out) => out.StreamDescriptionSummary!))

  const streamArn = (stream: StreamId) =>
    stream.startsWith("arn:")
      ? Effect.succeed(stream)
      : Effect.map(describeStreamSummary(stream), (summary) => summary.StreamARN!)

  const consumerParams = (
    consumer: { readonly consumerARN: string } | { readonly stream: StreamId; readonly consumerName: string }
  ): Effect.Effect<
    { ConsumerARN: string } | { StreamARN: string; ConsumerName: string },
    KinesisError.KinesisError
  > =>
    "consumerARN" in consumer
      ? Effect.succeed({ ConsumerARN: consumer.consumerARN })
      : Effect.map(streamArn(consumer.stream), (arn) => ({ StreamARN: arn, ConsumerName: consumer.consumerName }))

  return Client.of({
    sdk,
    putRecord: (stream, input) =>
      call(
        "PutRecord",
        (abortSignal) => sdk.send(new PutRecordCommand({ ...input, ...streamParams(stream) }), { abortSignal })
      ),
    putRecords: (stream, records, options) =>
      call(
        "PutRecords",
        (abortSignal) => {
          const marked = PutRecordsBody.input(streamParams(stream), records)
          return sdk.send(new PutRecordsCommand(marked.input), { abortSignal }).then((out) =>
            PutRecordsBody.output(out, marked.slot)
          )
        },
        options?.requestTimeout === undefined
          ? requestTimeoutMillis
          : Duration.toMillis(Duration.fromInputUnsafe(options.requestTimeout))
      ),
    getShardIterator: (stream, options) =>
      call("GetShardIterator", (abortSignal) =>
        sdk.send(
          new GetShardIteratorCommand({
            ...streamParams(stream),
            ShardId: options.shardId,
            ShardIteratorType: options.type,
            StartingSequenceNumber: options.sequenceNumber,
            Timestamp: options.timestamp
          }),
          { abortSignal }
        )).pipe(Effect.map((out) => out.ShardIterator!)),
    getRecords: (input) =>
      call("GetRecords", (abortSignal) => {
        const marked = GetRecordsBody.input(input)
        return sdk.send(new GetRecordsCommand(marked.input), { abortSignal }).then((out) =>
          GetRecordsBody.output(out, marked.slot)
        )
      }),
    listShards: (stream, options = {}) =>
      Stream.paginate(undefined as string | undefined, (nextToken) =>
        call("ListShards", (abortSignal) =>
          sdk.send(
            new ListShardsCommand(
              // Kinesis rejects the stream name or filter alongside a NextToken.
              nextToken === undefined
                ? {
                  ...streamParams(stream),
                  ShardFilter: options.shardFilter,
                  MaxResults: options.pageSize,
                  ExclusiveStartShardId: options.exclusiveStartShardId
                }
                : { NextToken: nextToken, MaxResults: options.pageSize }
            ),
            { abortSignal }
          )).pipe(
            Effect.map((out) => [out.Shards ?? [], Option.fromNullishOr(out.NextToken)] as const)
          )),
    listStreams: (options = {}) =>
      Stream.paginate(
        undefined as string | undefined,
        (nextToken) =>
          call("ListStreams", (abortSignal) =>
            sdk.send(new ListStreamsCommand({ NextToken: nextToken, Limit: options.pageSize }), { abortSignal })).pipe(
              Effect.map((out) => {
                const listings: Array<StreamListing> =
                  out.StreamSummaries !== undefined && out.StreamSummaries.length > 0
                    ? out.StreamSummaries.map((s) => ({
                      streamName: s.StreamName!,
                      streamARN: s.StreamARN,
                      status: s.StreamStatus
                    }))
                    : (out.StreamNames ?? []).map((name) => ({
                      streamName: name,
                      streamARN: undefined,
                      status: undefined
                    }))
                const more = out.HasMoreStreams === true && out.NextToken !== undefined
                return [listings, more ? Option.some(out.NextToken) : Option.none()] as const
              })
            )
      ),
    describeStreamSummary,
    streamArn,
    subscribeToShard: (input) =>
      Stream.unwrap(Effect.gen(function*() {
        // One controller for the whole subscription: closing the stream aborts the HTTP request.
        const controller = yield* Effect.acquireRelease(
          Effect.sync(() => new AbortController()),
          (controller) => Effect.sync(() => controller.abort())
        )
        const out = yield* untimedCall("SubscribeToShard", () =>
          sdk.send(
            new SubscribeToShardCommand({
              ConsumerARN: input.consumerARN,
              ShardId: input.shardId,
              StartingPosition: input.startingPosition
            }),
            { abortSignal: controller.signal }
          ))
        if (out.EventStream === undefined) return Stream.empty
        return Stream.fromAsyncIterable(
          out.EventStream,
          (error) => KinesisError.fromSdkError("SubscribeToShard", error)
        ).pipe(
          Stream.mapEffect((event) => {
            if (event.SubscribeToShardEvent !== undefined) return Effect.succeed(event.SubscribeToShardEvent)
            const [code, detail] = Object.entries(event).find(([, value]) => value !== undefined) ?? ["Unknown", {}]
            return Effect.fail(
              KinesisError.fromSdkError("SubscribeToShard", { name: code, message: messageOf(detail) })
            )
          })
        )
      })),
    registerStreamConsumer: (stream, consumerName) =>
      Effect.flatMap(
        streamArn(stream),
        (arn) =>
          call("RegisterStreamConsumer", (abortSignal) =>
            sdk.send(new RegisterStreamConsumerCommand({ StreamARN: arn, ConsumerName: consumerName }), {
              abortSignal
            }))
      ).pipe(Effect.map((out) =>
        out.Consumer!
      )),
    describeStreamConsumer: (consumer) =>
      Effect.flatMap(
        consumerParams(consumer),
        (params) =>
          call("DescribeStreamConsumer", (abortSignal) =>
            sdk.send(new DescribeStreamConsumerCommand(params), { abortSignal }))
      ).pipe(
        Effect.map((out) =>
          out.ConsumerDescription!
        )
      ),
    deregisterStreamConsumer: (consumer) =>
      Effect.flatMap(
        consumerParams(consumer),
        (params) =>
          call("DeregisterStreamConsumer", (abortSignal) =>
            sdk.send(new DeregisterStreamConsumerCommand(params), { abortSignal }))
      ).pipe(Effect.asVoid),
    listStreamConsumers: (stream) =>
      Stream.unwrap(
        Effect.map(streamArn(stream), (arn) =>
          Stream.paginate(undefined as string | undefined, (nextToken) =>
            call("ListStreamConsumers", (abortSignal) =>
              sdk.send(new ListStreamConsumersCommand({ StreamARN: arn, NextToken: nextToken }), { abortSignal })).pipe(
                Effect.map((out) =>
                  [out.Consumers ?? [], Option.fromNullishOr(out.NextToken)] as const
                )
              )))
      )
  })
}

const messageOf = (detail: unknown): string =>
  typeof detail === "object" && detail !== null && "message" in detail ? String(detail.message) : "event stream error"

/**
 * The constructor options for any AWS SDK v3 client (endpoint, region, credentials, attempts and
 * HTTP handler) from a {@link ClientConfig}, so other AWS clients (DynamoDB for leases) are
 * configured the same way.
 *
 * @example
 * ```ts
 * import { DynamoDBClient } from "@aws-sdk/client-dynamodb"
 * import { Client } from "@effect-kinesis/core"
 *
 * const dynamo = new DynamoDBClient(Client.sdkOptions({ region: "eu-west-1", httpHandler: "http1" }))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const sdkOptions: (config: ClientConfig) => ReturnType<typeof sdkOptionsInternal> = sdkOptionsInternal

/**
 * A layer from an explicit configuration. The SDK client is destroyed (its sockets closed) when
 * the layer's scope closes.
 *
 * @example
 * ```ts
 * import { Client } from "@effect-kinesis/core"
 *
 * const ClientLive = Client.layer({ region: "eu-west-1" })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (config: ClientConfig = {}): Layer.Layer<Client> =>
  Layer.effect(
    Client,
    Effect.map(
      Effect.acquireRelease(Effect.sync(() => makeSdkClient(config)), (sdk) => Effect.sync(() => sdk.destroy())),
      (sdk) => fromSdk(sdk, { requestTimeout: config.requestTimeout })
    )
  )

/**
 * The client configuration read from Effect `Config` (environment variables by default):
 *
 * | variable | meaning |
 * |---|---|
 * | `KINESIS_ENDPOINT` | endpoint override (unset: AWS) |
 * | `AWS_REGION` | region (unset: the SDK's chain) |
 * | `KINESIS_HTTP_HANDLER` | `http1` or `http2` (default `http2`) |
 * | `KINESIS_MAX_ATTEMPTS` | SDK attempts per call (default 1) |
 *
 * Credentials always come from the SDK's default chain (`AWS_ACCESS_KEY_ID`, profiles, roles…).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Client } from "@effect-kinesis/core"
 *
 * const config = Effect.runSync(Client.config)
 * ```
 *
 * @since 0.2.0
 * @category config
 */
export const config: Config.Config<ClientConfig> = Config.all({
  endpoint: Config.option(Config.String("KINESIS_ENDPOINT")),
  region: Config.option(Config.String("AWS_REGION")),
  httpHandler: Config.Literals(["http1", "http2"], "KINESIS_HTTP_HANDLER").pipe(Config.withDefault("http2" as const)),
  maxAttempts: Config.Int("KINESIS_MAX_ATTEMPTS").pipe(Config.withDefault(1))
}).pipe(Config.map((c) => ({
  endpoint: Option.getOrUndefined(c.endpoint),
  region: Option.getOrUndefined(c.region),
  httpHandler: c.httpHandler,
  maxAttempts: c.maxAttempts
})))

/**
 * A layer configured from the environment, see {@link config}.
 *
 * @example
 * ```ts
 * import { Client } from "@effect-kinesis/core"
 *
 * const ClientLive = Client.layerConfig
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: Layer.Layer<Client, Config.ConfigError> = Layer.unwrap(
  Effect.map(config, layer)
)

/**
 * The former name of {@link config}.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Client } from "@effect-kinesis/core"
 *
 * const config = Effect.runSync(Client.config)
 * ```
 *
 * @deprecated Use `Client.config` (every module's `Config` of its `layerConfig` is named `config`).
 * @since 0.1.0
 * @category config
 */
export const clientConfig: Config.Config<ClientConfig> = config
