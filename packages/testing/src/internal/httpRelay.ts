/**
 * What the HTTP fault proxies (Kinesis and DynamoDB) share: reading a request or answer whole, the headers that may
 * be passed on, relaying a buffered answer, and the randomness and timers they inject faults with.
 *
 * @internal
 */
import { Duration } from "effect"
import type * as Http from "node:http"

/** An upstream answer read whole. @internal */
export interface Buffered {
  readonly status: number
  readonly headers: Http.IncomingHttpHeaders
  readonly body: Buffer
}

const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "expect", "upgrade", "proxy-connection"])

/** The headers a proxy passes on: all but the hop-by-hop ones. @internal */
export const forwardableHeaders = (headers: Http.IncomingHttpHeaders): Http.OutgoingHttpHeaders => {
  const out: Http.OutgoingHttpHeaders = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value
  }
  return out
}

/** @internal */
export const readBody = (stream: Http.IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    stream.on("data", (chunk: Buffer) => chunks.push(chunk))
    stream.once("end", () => resolve(Buffer.concat(chunks)))
    stream.once("error", reject)
    stream.once("aborted", () => reject(new Error("request aborted")))
  })

/** Sends a buffered upstream answer on, with its length. @internal */
export const relay = (res: Http.ServerResponse, response: Buffered): void => {
  res.writeHead(response.status, { ...forwardableHeaders(response.headers), "content-length": response.body.length })
  res.end(response.body)
}

/** @internal */
export const sleep = (millis: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, millis))

/** @internal */
export const millisOf = (input: Duration.Input): number => Duration.toMillis(Duration.fromInputUnsafe(input))

/** True with the given probability (never for 0). @internal */
export const chance = (probability: number): boolean => probability > 0 && Math.random() < probability
