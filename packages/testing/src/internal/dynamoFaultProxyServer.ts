/**
 * The HTTP/1.1 proxy behind `DynamoFaultProxy`: forwards DynamoDB JSON 1.0 requests to dynalite and injects
 * throttling, server errors, latency and dropped connections on the way. Requests under {@link CONTROL_PATH} change
 * its settings and read its counters, so that another process can steer it.
 *
 * It runs on plain Node timers and `Math.random`: it serves real clients in real time, whatever clock the tests use.
 *
 * @internal
 */
import { randomUUID } from "node:crypto"
import * as Http from "node:http"
import type * as Net from "node:net"
import type { DynamoFaultSettings, DynamoFaultStats } from "../DynamoFaultProxy.ts"
import { type Buffered, chance, forwardableHeaders, millisOf, readBody, relay, sleep } from "./httpRelay.ts"

/** @internal */
export const CONTROL_PATH = "/__fault-proxy"

const JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
const ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
const TARGET = /^DynamoDB_20120810\.(\w+)$/

// Durations travel as milliseconds: a `Duration` value does not survive JSON.
const wireSettings = (settings: DynamoFaultSettings): DynamoFaultSettings => ({
  ...settings,
  latency: millisOf(settings.latency),
  latencyJitter: millisOf(settings.latencyJitter)
})

interface MutableStats {
  requests: Record<string, number>
  forwarded: number
  throttled: number
  injectedServerErrors: number
  serverErrorsAfterForward: number
  droppedConnections: number
  droppedAfterForward: number
}

const emptyStats = (): MutableStats => ({
  requests: {},
  forwarded: 0,
  throttled: 0,
  injectedServerErrors: 0,
  serverErrorsAfterForward: 0,
  droppedConnections: 0,
  droppedAfterForward: 0
})

/** @internal */
export interface ServerOptions {
  readonly upstream: URL
  readonly settings: () => DynamoFaultSettings
  /** Applies a settings patch received on the control path; returns an error message or undefined. */
  readonly update: (patch: Partial<DynamoFaultSettings>) => string | undefined
  readonly reset: () => void
}

/** @internal */
export class DynamoFaultProxyServer {
  readonly #options: ServerOptions
  readonly #server: Http.Server
  readonly #agent = new Http.Agent({ keepAlive: true, maxSockets: 256 })
  readonly #sockets = new Set<Net.Socket>()
  #stats = emptyStats()

  private constructor(options: ServerOptions) {
    this.#options = options
    this.#server = Http.createServer((req, res) => {
      this.#handle(req, res).catch((error: unknown) => {
        if (!res.headersSent) {
          answer(res, 502, { __type: "ProxyError", message: `proxy: ${String(error)}` })
        } else {
          res.destroy()
        }
      })
    })
    this.#server.keepAliveTimeout = 60_000
    this.#server.on("connection", (socket) => {
      this.#sockets.add(socket)
      socket.once("close", () => this.#sockets.delete(socket))
    })
  }

  static start(options: ServerOptions): Promise<DynamoFaultProxyServer> {
    const server = new DynamoFaultProxyServer(options)
    return new Promise((resolve, reject) => {
      server.#server.once("error", reject)
      server.#server.listen(0, "127.0.0.1", () => resolve(server))
    })
  }

  get port(): number {
    return (this.#server.address() as Net.AddressInfo).port
  }

  stats(): DynamoFaultStats {
    return { ...this.#stats, requests: { ...this.#stats.requests } }
  }

  resetStats(): void {
    this.#stats = emptyStats()
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve())
      for (const socket of this.#sockets) socket.destroy()
      this.#agent.destroy()
    })
  }

  async #handle(req: Http.IncomingMessage, res: Http.ServerResponse): Promise<void> {
    const body = await readBody(req)
    if (req.url?.startsWith(CONTROL_PATH) === true) return this.#control(req, res, body)
    const target = req.headers["x-amz-target"]
    const operation = typeof target === "string" ? TARGET.exec(target)?.[1] ?? "unknown" : "unknown"
    this.#stats.requests[operation] = (this.#stats.requests[operation] ?? 0) + 1
    const settings = this.#options.settings()
    const applies = settings.operations === "all" || settings.operations.includes(operation)
    if (!applies) return relay(res, await this.#forward(req, body))

    const delay = millisOf(settings.latency) + Math.random() * millisOf(settings.latencyJitter)
    if (delay > 0) await sleep(delay)
    if (chance(settings.dropRate)) {
      this.#stats.droppedConnections++
      return drop(req, res)
    }
    if (chance(settings.throttleRate)) {
      this.#stats.throttled++
      return answer(res, 400, {
        __type: `${ERROR_PREFIX}ProvisionedThroughputExceededException`,
        message: "The level of configured provisioned throughput for the table was exceeded. "
          + "Consider increasing your provisioning level with the UpdateTable API."
      })
    }
    if (chance(settings.serverErrorRate)) {
      this.#stats.injectedServerErrors++
      return serverError(res)
    }
    const response = await this.#forward(req, body)
    this.#stats.forwarded++
    // The request took effect upstream (or failed there on its own); the client never learns which.
    if (chance(settings.dropAfterForwardRate)) {
      this.#stats.droppedAfterForward++
      return drop(req, res)
    }
    if (chance(settings.serverErrorAfterForwardRate)) {
      this.#stats.serverErrorsAfterForward++
      return serverError(res)
    }
    return relay(res, response)
  }

  #control(req: Http.IncomingMessage, res: Http.ServerResponse, body: Buffer): void {
    const path = req.url!.slice(CONTROL_PATH.length)
    if (path === "/settings" && req.method === "GET") return answer(res, 200, wireSettings(this.#options.settings()))
    if (path === "/settings" && req.method === "POST") {
      let patch: unknown
      try {
        patch = JSON.parse(body.toString("utf8"))
      } catch {
        return answer(res, 400, { message: "settings: not JSON" })
      }
      if (typeof patch !== "object" || patch === null) return answer(res, 400, { message: "settings: not an object" })
      const problem = this.#options.update(patch as Partial<DynamoFaultSettings>)
      return problem === undefined
        ? answer(res, 200, wireSettings(this.#options.settings()))
        : answer(res, 400, { message: problem })
    }
    if (path === "/stats" && req.method === "GET") return answer(res, 200, this.stats())
    if (path === "/stats/reset" && req.method === "POST") {
      this.resetStats()
      return answer(res, 200, {})
    }
    if (path === "/reset" && req.method === "POST") {
      this.#options.reset()
      this.resetStats()
      return answer(res, 200, {})
    }
    return answer(res, 404, { message: `no control endpoint ${req.method} ${path}` })
  }

  #forward(req: Http.IncomingMessage, body: Buffer): Promise<Buffered> {
    const upstream = this.#options.upstream
    return new Promise((resolve, reject) => {
      const request = Http.request({
        agent: this.#agent,
        host: upstream.hostname,
        port: upstream.port,
        method: req.method ?? "POST",
        path: req.url ?? "/",
        headers: { ...forwardableHeaders(req.headers), host: upstream.host, "content-length": body.length }
      })
      request.once("error", reject)
      request.once("response", (response) => {
        readBody(response).then(
          (responseBody) =>
            resolve({ status: response.statusCode ?? 502, headers: response.headers, body: responseBody }),
          reject
        )
      })
      request.end(body)
    })
  }
}

/** Closes the connection without an answer: the client sees a socket hang-up (ECONNRESET). */
const drop = (req: Http.IncomingMessage, _res: Http.ServerResponse): void => {
  req.socket.destroy()
}

const serverError = (res: Http.ServerResponse): void =>
  answer(res, 500, { __type: `${ERROR_PREFIX}InternalServerError`, message: "Internal server error" })

const answer = (res: Http.ServerResponse, status: number, json: unknown): void => {
  const body = Buffer.from(JSON.stringify(json))
  res.writeHead(status, {
    "x-amzn-requestid": randomUUID(),
    "content-type": JSON_CONTENT_TYPE,
    "content-length": body.length
  })
  res.end(body)
}
