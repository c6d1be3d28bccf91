import { KinesisClient, type KinesisClientConfig } from "@aws-sdk/client-kinesis"
import { NodeHttp2Handler, NodeHttpHandler } from "@smithy/node-http-handler"
import { Redacted } from "effect"
import { Agent as HttpAgent } from "node:http"
import { Agent as HttpsAgent } from "node:https"
import type { ClientConfig } from "../Client.ts"

const reveal = (value: string | Redacted.Redacted<string>): string =>
  Redacted.isRedacted(value) ? Redacted.value(value) : value

// The SDK's default no-op logger still has `info`, so its logger middleware deep-copies every
// request and response (filtering sensitive fields) just to throw the copy away — about 0.4 µs per
// produced record. Without `info` and `error` the middleware skips that; failures reach callers
// as typed errors anyway. Unlike the default (which prints nothing), SDK warnings (e.g. socket
// exhaustion) go to the console: they point at a misconfigured client.
const quietLogger = {
  trace: () => {},
  debug: () => {},
  warn: (...args: ReadonlyArray<unknown>) => console.warn(...args)
} as unknown as NonNullable<KinesisClientConfig["logger"]>

/** The constructor options any AWS SDK v3 client takes, for a {@link ClientConfig}. */
export const sdkOptions = (config: ClientConfig) => {
  const maxSockets = config.maxSockets ?? 50
  const requestHandler = config.httpHandler === "http1"
    ? new NodeHttpHandler({
      httpAgent: new HttpAgent({ keepAlive: true, maxSockets }),
      httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets })
    })
    : new NodeHttp2Handler({ disableConcurrentStreams: false })
  const credentials = config.credentials === undefined ? undefined : {
    accessKeyId: config.credentials.accessKeyId,
    secretAccessKey: reveal(config.credentials.secretAccessKey),
    ...(config.credentials.sessionToken === undefined ? {} : { sessionToken: reveal(config.credentials.sessionToken) })
  }
  return {
    ...(config.endpoint === undefined ? {} : { endpoint: config.endpoint }),
    // An endpoint override usually means an emulator, where the region only has to be well-formed.
    ...(config.region !== undefined
      ? { region: config.region }
      : config.endpoint !== undefined
      ? { region: "us-east-1" }
      : {}),
    ...(credentials === undefined ? {} : { credentials }),
    maxAttempts: config.maxAttempts ?? 1,
    requestHandler,
    logger: quietLogger
  }
}

/** Builds the AWS SDK Kinesis client for a {@link ClientConfig}. */
export const makeSdkClient = (config: ClientConfig): KinesisClient => new KinesisClient(sdkOptions(config))
