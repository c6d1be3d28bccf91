import { KinesisClient, ListStreamsCommand } from "@aws-sdk/client-kinesis"
import { Client, KinesisError, TransportFailure } from "@effect-kinesis/core"
import { TcpFaultProxy } from "@effect-kinesis/testing"
import { assert, describe, it } from "@effect/vitest"
import { NodeHttp2Handler, NodeHttpHandler } from "@smithy/node-http-handler"
import { Effect, Fiber } from "effect"
import * as Http from "node:http"
import * as Http2 from "node:http2"
import type * as Net from "node:net"

const nodeError = (message: string, fields: Record<string, unknown>) => Object.assign(new Error(message), fields)
const metadata = { $metadata: { attempts: 1, totalRetryDelay: 0 } }

// The errors the AWS SDK (3.11xx, @smithy/node-http-handler 4) rejected with on Node 24, recorded through
// TcpFaultProxy and a misbehaving HTTP/2 server; same constructors, names, codes, messages and nesting.
const refused = () =>
  nodeError("connect ECONNREFUSED 127.0.0.1:39685", {
    code: "ECONNREFUSED",
    errno: -111,
    syscall: "connect",
    address: "127.0.0.1",
    port: 39685
  })
const recorded: ReadonlyArray<readonly [string, unknown]> = [
  ["http1 refused", Object.assign(refused(), metadata)],
  [
    "http1 reset on connect",
    nodeError("connect ECONNRESET 127.0.0.1:39685", { name: "TimeoutError", code: "ECONNRESET", ...metadata })
  ],
  [
    "http1 RST while awaiting the answer",
    nodeError("read ECONNRESET", { name: "TimeoutError", code: "ECONNRESET", syscall: "read", ...metadata })
  ],
  [
    "http1 FIN while awaiting the answer",
    nodeError("socket hang up", { name: "TimeoutError", code: "ECONNRESET", ...metadata })
  ],
  [
    "http1 write to a dropped keep-alive socket",
    nodeError("write ECONNRESET", { name: "TimeoutError", code: "ECONNRESET", syscall: "write", ...metadata })
  ],
  [
    "http1 requestTimeout",
    nodeError("@smithy/node-http-handler - [ERROR] a request has exceeded the configured 500 ms requestTimeout.", {
      name: "TimeoutError",
      code: "ETIMEDOUT",
      ...metadata
    })
  ],
  [
    "http2 refused",
    nodeError("The pending stream has been canceled (caused by: connect ECONNREFUSED 127.0.0.1:44023)", {
      code: "ERR_HTTP2_STREAM_CANCEL",
      cause: refused(),
      ...metadata
    })
  ],
  [
    "http2 reset on connect",
    nodeError("The pending stream has been canceled (caused by: connect ECONNRESET 127.0.0.1:44023)", {
      code: "ERR_HTTP2_STREAM_CANCEL",
      cause: nodeError("connect ECONNRESET 127.0.0.1:44023", { code: "ECONNRESET", syscall: "connect" }),
      ...metadata
    })
  ],
  [
    "http2 RST while awaiting the answer",
    nodeError("read ECONNRESET", { code: "ECONNRESET", syscall: "read", ...metadata })
  ],
  [
    "http2 FIN while awaiting the answer",
    nodeError("Unexpected error: http2 request did not get a response", { name: "TimeoutError", ...metadata })
  ],
  [
    "http2 requestTimeout",
    nodeError("Stream timed out because of no activity for 500 ms", { name: "TimeoutError", ...metadata })
  ],
  [
    "http2 GOAWAY with an error code",
    nodeError("Session closed with error code 2", { code: "ERR_HTTP2_SESSION_ERROR", ...metadata })
  ],
  [
    "http2 RST_STREAM",
    nodeError("Stream closed with error code NGHTTP2_REFUSED_STREAM", { code: "ERR_HTTP2_STREAM_ERROR", ...metadata })
  ],
  // Node's happy-eyeballs connect to a name with several addresses: one error per address.
  [
    "connect to several addresses",
    new AggregateError([refused(), nodeError("connect ECONNREFUSED ::1:39685", { code: "ECONNREFUSED" })])
  ],
  [
    "SDK wrapper around a cause",
    Object.assign(new Error("wrapped"), { name: "Error", $metadata: {}, cause: { cause: refused() } })
  ]
]

// Not transport failures: trying again cannot help, or the caller cancelled.
const fatal: ReadonlyArray<readonly [string, unknown]> = [
  ["interruption (abortSignal)", nodeError("Request aborted", { name: "AbortError" })],
  [
    "abort around a reset",
    nodeError("This operation was aborted", { name: "AbortError", code: "ABORT_ERR", cause: refused() })
  ],
  ["access denied", { name: "AccessDeniedException", message: "denied", $metadata: { httpStatusCode: 400 } }],
  ["validation", { name: "ValidationException", message: "bad", $fault: "client", $metadata: { httpStatusCode: 400 } }],
  ["a plain bug", new TypeError("Cannot read properties of undefined")],
  ["not an object", "ECONNREFUSED"]
]

describe("TransportFailure", () => {
  it("classifies every transport failure either handler was seen to throw as transient, nested causes included", () => {
    for (const [situation, error] of recorded) {
      assert.isTrue(TransportFailure.isTransient(error), situation)
      const mapped = KinesisError.fromSdkError("PutRecords", error)
      assert.strictEqual(mapped._tag, "ServiceUnavailable", situation)
      assert.isTrue(mapped.retryable, situation)
    }
    assert.strictEqual(TransportFailure.transientCode(recorded[6]![1]), "ERR_HTTP2_STREAM_CANCEL")
  })

  it("leaves cancellation, service refusals and bugs alone", () => {
    for (const [situation, error] of fatal) {
      assert.isFalse(TransportFailure.isTransient(error), situation)
      assert.isFalse(KinesisError.fromSdkError("PutRecords", error).retryable, situation)
    }
  })

  it("terminates on a cyclic cause chain", () => {
    const a: Record<string, unknown> = { name: "Error", message: "a" }
    a["cause"] = { name: "Error", message: "b", cause: a }
    assert.isFalse(TransportFailure.isTransient(a))
  })
})

/** An upstream answering every Kinesis call with `{}`: HTTP/1.1, or h2c misbehaving as told. */
type H2Behaviour = "answer" | "goaway" | "rstStream"
const upstreams = Effect.acquireRelease(
  Effect.promise(async () => {
    const answer = { ":status": 200, "content-type": "application/x-amz-json-1.1" }
    const h2 = { behaviour: "answer" as H2Behaviour, server: Http2.createServer() }
    h2.server.on("stream", (stream) => {
      stream.on("error", () => {})
      if (h2.behaviour === "goaway") stream.session!.goaway(Http2.constants.NGHTTP2_INTERNAL_ERROR)
      else if (h2.behaviour === "rstStream") stream.close(Http2.constants.NGHTTP2_REFUSED_STREAM)
      else stream.respond(answer), stream.end("{}")
    })
    const h1 = Http.createServer((_, res) => res.writeHead(200, { "content-type": answer["content-type"] }).end("{}"))
    const listen = (server: Net.Server) =>
      new Promise<number>((resolve) =>
        server.listen(0, "127.0.0.1", () => resolve((server.address() as Net.AddressInfo).port))
      )
    return { h1, h2, ports: { http1: await listen(h1), http2: await listen(h2.server) } }
  }),
  ({ h1, h2 }) =>
    Effect.sync(() => {
      h1.closeAllConnections()
      h1.close()
      h2.server.close()
    })
)

const sdkClient = (endpoint: string, httpHandler: "http1" | "http2", requestTimeout?: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const options = Client.sdkOptions({
        endpoint,
        credentials: { accessKeyId: "a", secretAccessKey: "b" },
        httpHandler
      })
      const requestHandler = requestTimeout === undefined
        ? options.requestHandler
        : httpHandler === "http1"
        ? new NodeHttpHandler({ requestTimeout, throwOnRequestTimeout: true })
        : new NodeHttp2Handler({ requestTimeout })
      return new KinesisClient({ ...options, requestHandler })
    }),
    (client) => Effect.sync(() => client.destroy())
  )

/** What the call rejected with, or `undefined` when it succeeded. */
const failureOf = (client: KinesisClient, signal: AbortSignal = new AbortController().signal) =>
  Effect.promise(() =>
    client.send(new ListStreamsCommand({}), { abortSignal: signal }).then(() => undefined, (e: unknown) => e)
  )

const sleep = (millis: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, millis)))

describe("TransportFailure on errors the SDK really throws", () => {
  for (const httpHandler of ["http1", "http2"] as const) {
    it.live(`${httpHandler}: refused, reset, dropped and timed-out calls are transient; aborted ones are not`, () =>
      Effect.gen(function*() {
        const { ports } = yield* upstreams
        const proxy = yield* TcpFaultProxy.make(`127.0.0.1:${ports[httpHandler]}`)
        const transient = (situation: string, error: unknown) => {
          assert.isDefined(error, situation)
          assert.isTrue(KinesisError.fromSdkError("ListStreams", error).retryable, `${situation}: ${String(error)}`)
        }

        const warm = yield* sdkClient(proxy.endpoint, httpHandler)
        assert.isUndefined(yield* failureOf(warm))
        yield* proxy.outage([{ mode: "refuse", duration: "10 seconds" }])
        transient("refused after the established connection dropped", yield* failureOf(warm))
        yield* proxy.setMode("reset")
        transient("reset on connect", yield* failureOf(warm))
        yield* proxy.restore
        assert.isUndefined(yield* failureOf(warm))

        for (const how of ["reset", "close"] as const) {
          yield* proxy.setMode("blackHole")
          const pending = yield* Effect.forkChild(failureOf(warm))
          yield* sleep(100)
          yield* proxy.drop(how)
          transient(`connection ${how} while awaiting the answer`, yield* Fiber.join(pending))
          yield* proxy.restore
        }

        yield* proxy.setMode("blackHole")
        transient(
          "black-holed past requestTimeout",
          yield* failureOf(yield* sdkClient(proxy.endpoint, httpHandler, 300))
        )
        const aborted = yield* failureOf(warm, AbortSignal.timeout(100))
        assert.isFalse(TransportFailure.isTransient(aborted))
        assert.isFalse(KinesisError.fromSdkError("ListStreams", aborted).retryable)
        yield* proxy.restore
      }).pipe(Effect.scoped))
  }

  it.live("http2: GOAWAY with an error code and RST_STREAM are transient", () =>
    Effect.gen(function*() {
      const { h2, ports } = yield* upstreams
      for (const behaviour of ["goaway", "rstStream"] as const) {
        h2.behaviour = behaviour
        const error = yield* failureOf(yield* sdkClient(`http://127.0.0.1:${ports.http2}`, "http2"))
        assert.isTrue(KinesisError.fromSdkError("ListStreams", error).retryable, `${behaviour}: ${String(error)}`)
      }
    }).pipe(Effect.scoped))
})
