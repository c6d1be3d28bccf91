/**
 * The HTTP/1.1 proxy behind `FaultProxy`: forwards Kinesis JSON 1.1 requests to the emulator and injects throttling,
 * server errors, latency and dropped connections on the way.
 *
 * It runs on plain Node timers and `Math.random`: it serves real clients in real time, whatever clock the tests use.
 *
 * @internal
 */
import type { Shard } from "@aws-sdk/client-kinesis"
import { Aggregation, ShardMap } from "@effect-kinesis/core"
import { Option, Result } from "effect"
import { randomUUID } from "node:crypto"
import * as Http from "node:http"
import type * as Net from "node:net"
import type { FaultSettings, FaultStats, RejectCandidate, ShardStats } from "../FaultProxy.ts"
import { EventStreamGate } from "./eventStreamGate.ts"
import { type Buffered, chance, forwardableHeaders, millisOf, readBody, relay, sleep } from "./httpRelay.ts"
import {
  decodeListShards,
  decodePutRecord,
  decodePutRecordOutput,
  decodePutRecords,
  decodePutRecordsOutput,
  parseJson
} from "./kinesisWire.ts"
import { Bucket, type ShardBudget } from "./shardBudget.ts"

const JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
const THROTTLED = "ProvisionedThroughputExceededException"

// ---------------------------------------------------------------------------------------------------------------------
// shard routing
// ---------------------------------------------------------------------------------------------------------------------

/** A stream's routing as last listed; `stale` once a write landed on a shard other than predicted. */
interface Routes {
  readonly map: ShardMap.ShardMap
  stale: boolean
}

const shardOf = (
  map: ShardMap.ShardMap,
  record: { readonly PartitionKey: string; readonly ExplicitHashKey?: string | null }
): string | undefined => ShardMap.shardForRecord(map, record.PartitionKey, record.ExplicitHashKey ?? undefined)?.shardId

interface StreamTarget {
  /** `region/stream`: kinesis-mock keeps streams per region, taken from the request signature. */
  readonly key: string
  readonly name: string
  readonly account: string
  readonly ref: { readonly StreamName: string } | { readonly StreamARN: string }
}

const ARN = /^arn:[^:]+:kinesis:([^:]*):([^:]*):stream\/(.+)$/
const SIGNING_REGION = /Credential=[^/,]+\/\d{8}\/([^/,]+)\//

// ---------------------------------------------------------------------------------------------------------------------
// token buckets
// ---------------------------------------------------------------------------------------------------------------------
// ---------------------------------------------------------------------------------------------------------------------
// the server
// ---------------------------------------------------------------------------------------------------------------------

interface MutableShardStats {
  forwardedRecords: number
  forwardedBytes: number
  throttledRecords: number
}

interface MutableStats {
  requests: Record<string, number>
  injectedServerErrors: number
  droppedConnections: number
  throttledRecords: number
  throttledGetRecords: number
  stalledSubscriptions: number
  rejectedRequests: number
  shards: Map<string, Map<string, MutableShardStats>>
}

const emptyStats = (): MutableStats => ({
  requests: {},
  injectedServerErrors: 0,
  droppedConnections: 0,
  throttledRecords: 0,
  throttledGetRecords: 0,
  stalledSubscriptions: 0,
  rejectedRequests: 0,
  shards: new Map()
})

type AfterForward = "none" | "serverError" | "drop"

/** @internal */
export interface ServerOptions {
  readonly upstream: URL
  readonly accountId: string
  readonly settings: () => FaultSettings
}

/** @internal */
export class FaultProxyServer {
  readonly #options: ServerOptions
  readonly #server: Http.Server
  readonly #agent = new Http.Agent({ keepAlive: true, maxSockets: 256 })
  readonly #routes = new Map<string, Routes | Promise<Routes | undefined>>()
  readonly #budgets = new Map<string, ShardBudget>()
  #stats: MutableStats = emptyStats()

  private constructor(options: ServerOptions) {
    this.#options = options
    this.#server = Http.createServer((req, res) => {
      this.#handle(req, res).catch((error: unknown) => {
        if (!res.headersSent) {
          answer(res, 502, { __type: "ProxyError", message: `fault proxy: ${String(error)}` })
        } else {
          res.destroy()
        }
      })
    })
    this.#server.keepAliveTimeout = 60_000
  }

  static start(options: ServerOptions): Promise<FaultProxyServer> {
    const proxy = new FaultProxyServer(options)
    return new Promise((resolve, reject) => {
      proxy.#server.once("error", reject)
      proxy.#server.listen(0, "127.0.0.1", () => resolve(proxy))
    })
  }

  get port(): number {
    return (this.#server.address() as Net.AddressInfo).port
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve())
      // Stalled subscriptions and idle keep-alive sockets would otherwise hold the server open.
      this.#server.closeAllConnections()
      this.#agent.destroy()
    })
  }

  resetStats(): void {
    this.#stats = emptyStats()
  }

  /** Full shard budgets for every shard again. */
  resetBudgets(): void {
    this.#budgets.clear()
  }

  stats(): FaultStats {
    const shards: Record<string, Record<string, ShardStats>> = {}
    for (const [stream, byShard] of this.#stats.shards) {
      const entry: Record<string, ShardStats> = {}
      for (const [shardId, stats] of byShard) entry[shardId] = { ...stats }
      shards[stream] = entry
    }
    const { shards: _, requests, ...counters } = this.#stats
    return { ...counters, requests: { ...requests }, shards }
  }

  // -------------------------------------------------------------------------------------------------------------------

  async #handle(req: Http.IncomingMessage, res: Http.ServerResponse): Promise<void> {
    const settings = this.#options.settings()
    const target = req.headers["x-amz-target"]
    const operation = typeof target === "string" ? target.slice(target.indexOf(".") + 1) : "Unknown"
    this.#stats.requests[operation] = (this.#stats.requests[operation] ?? 0) + 1
    const body = await readBody(req)

    const faulted = settings.faultOperations === "all" || settings.faultOperations.includes(operation)
    if (faulted) {
      const latency = millisOf(settings.latency) + Math.random() * millisOf(settings.latencyJitter)
      if (latency > 0) await sleep(latency)
      if (chance(settings.dropRate)) return this.#drop(req)
      if (chance(settings.serverErrorRate)) return this.#serverError(res, settings)
    }
    // A subscription has no "after": its response is a stream that lasts minutes.
    const after: AfterForward = !faulted || operation === "SubscribeToShard"
      ? "none"
      : chance(settings.serverErrorAfterForwardRate)
      ? "serverError"
      : chance(settings.dropAfterForwardRate)
      ? "drop"
      : "none"

    if (operation === "GetRecords" && chance(settings.getRecordsThrottleRate)) {
      this.#stats.throttledGetRecords++
      return answer(res, 400, { __type: THROTTLED, message: "Rate exceeded for shard." })
    }
    if (operation === "PutRecords") return this.#putRecords(req, res, body, settings, after)
    if (operation === "PutRecord") return this.#putRecord(req, res, body, settings, after)
    if (after !== "none") {
      await this.#forwardBuffered(req, body)
      return this.#afterForward(req, res, after, settings)
    }
    return this.#forwardStreaming(
      req,
      res,
      body,
      operation === "SubscribeToShard" ? settings.stallSubscriptionsAfterEvents : undefined
    )
  }

  #drop(req: Http.IncomingMessage): void {
    this.#stats.droppedConnections++
    req.socket.destroy()
  }

  #serverError(res: Http.ServerResponse, settings: FaultSettings): void {
    this.#stats.injectedServerErrors++
    const type = settings.serverError === "random"
      ? (Math.random() < 0.5 ? "InternalFailure" : "ServiceUnavailable")
      : settings.serverError
    answer(res, type === "InternalFailure" ? 500 : 503, { __type: type })
  }

  #afterForward(
    req: Http.IncomingMessage,
    res: Http.ServerResponse,
    after: Exclude<AfterForward, "none">,
    settings: FaultSettings
  ): void {
    return after === "drop" ? this.#drop(req) : this.#serverError(res, settings)
  }

  #upstreamRequest(
    method: string,
    path: string,
    headers: Http.OutgoingHttpHeaders,
    body: Buffer
  ): Http.ClientRequest {
    const upstream = this.#options.upstream
    return Http.request({
      agent: this.#agent,
      host: upstream.hostname,
      port: upstream.port,
      method,
      path,
      headers: { ...headers, host: upstream.host, "content-length": body.length }
    })
  }

  #send(method: string, path: string, headers: Http.OutgoingHttpHeaders, body: Buffer): Promise<Buffered> {
    return new Promise((resolve, reject) => {
      const request = this.#upstreamRequest(method, path, headers, body)
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

  #forwardBuffered(req: Http.IncomingMessage, body: Buffer): Promise<Buffered> {
    return this.#send(req.method ?? "POST", req.url ?? "/", forwardableHeaders(req.headers), body)
  }

  #forwardStreaming(
    req: Http.IncomingMessage,
    res: Http.ServerResponse,
    body: Buffer,
    stallAfterEvents: number | undefined
  ): Promise<void> {
    return new Promise((resolve) => {
      const request = this.#upstreamRequest(req.method ?? "POST", req.url ?? "/", forwardableHeaders(req.headers), body)
      let upstreamDone = false
      let stalled = false
      res.once("close", () => {
        // The client went away mid-response (or gave up on a stalled stream): stop the upstream call too.
        if (!upstreamDone) request.destroy()
        resolve()
      })
      request.once("error", (error) => {
        if (!res.headersSent) answer(res, 502, { __type: "ProxyError", message: `upstream: ${error.message}` })
        else res.destroy()
        resolve()
      })
      request.once("response", (response) => {
        response.once("end", () => (upstreamDone = true))
        // Upstream cut the stream short: so does the proxy, unless the stream is being held silent anyway.
        response.once("close", () => {
          if (!response.complete && !stalled) res.destroy()
        })
        res.writeHead(response.statusCode ?? 502, forwardableHeaders(response.headers))
        res.flushHeaders()
        if (stallAfterEvents === undefined || response.statusCode !== 200) {
          response.pipe(res)
          return
        }
        const gate = new EventStreamGate(stallAfterEvents)
        response.on("data", (chunk: Buffer) => {
          const passed = gate.push(chunk)
          if (passed.length > 0) res.write(passed)
          if (gate.closed && !stalled) {
            stalled = true
            this.#stats.stalledSubscriptions++
          }
        })
        // A stalled subscription stays open and silent until the client gives up; otherwise it ends as upstream does.
        response.once("end", () => {
          if (!stalled) res.end()
        })
      })
      request.end(body)
    })
  }

  // -------------------------------------------------------------------------------------------------------------------
  // PutRecords / PutRecord

  #streamTarget(req: Http.IncomingMessage, input: { readonly StreamName?: string; readonly StreamARN?: string }) {
    const arn = input.StreamARN === undefined ? null : ARN.exec(input.StreamARN)
    const authorization = req.headers.authorization ?? ""
    const region = arn?.[1] ?? SIGNING_REGION.exec(authorization)?.[1] ?? ""
    const name = arn?.[3] ?? input.StreamName
    if (name === undefined) return undefined
    return {
      key: `${region}/${name}`,
      name,
      account: arn?.[2] ?? this.#options.accountId,
      ref: input.StreamARN !== undefined ? { StreamARN: input.StreamARN } : { StreamName: name }
    } satisfies StreamTarget
  }

  async #routesFor(req: Http.IncomingMessage, target: StreamTarget, refresh: boolean): Promise<Routes | undefined> {
    const cached = this.#routes.get(target.key)
    if (cached instanceof Promise) return cached
    if (cached !== undefined && !refresh && !cached.stale) return cached
    const loading = this.#listOpenShards(req, target).then((routes) => {
      if (routes === undefined) this.#routes.delete(target.key)
      else this.#routes.set(target.key, routes)
      return routes
    })
    this.#routes.set(target.key, loading)
    return loading
  }

  /** ListShards on the upstream, signed like the client's request (kinesis-mock reads the region from it). */
  async #listOpenShards(req: Http.IncomingMessage, target: StreamTarget): Promise<Routes | undefined> {
    const headers: Http.OutgoingHttpHeaders = {
      "content-type": JSON_CONTENT_TYPE,
      "x-amz-target": "Kinesis_20131202.ListShards"
    }
    for (const name of ["authorization", "x-amz-date", "x-amz-security-token"]) {
      const value = req.headers[name]
      if (value !== undefined) headers[name] = value
    }
    const shards: Array<Shard> = []
    let nextToken: string | undefined
    try {
      do {
        const request = nextToken === undefined
          ? { ...target.ref, ShardFilter: { Type: "AT_LATEST" } }
          : { NextToken: nextToken }
        const response = await this.#send("POST", "/", headers, Buffer.from(JSON.stringify(request)))
        if (response.status !== 200) return undefined
        const page = decodeListShards(parseJson(response.body))
        if (Option.isNone(page)) return undefined
        for (const shard of page.value.Shards) {
          // JSON null (kinesis-mock's "still open") is what the SDK turns into an absent field.
          const ending = shard.SequenceNumberRange?.EndingSequenceNumber
          shards.push({
            ShardId: shard.ShardId,
            HashKeyRange: shard.HashKeyRange,
            SequenceNumberRange: ending == null
              ? undefined
              : { StartingSequenceNumber: undefined, EndingSequenceNumber: ending }
          })
        }
        nextToken = page.value.NextToken ?? undefined
      } while (nextToken !== undefined)
    } catch {
      return undefined
    }
    // A gap or overlap (a listing read across a reshard) leaves the stream unrouted until the next write.
    const map = ShardMap.fromShards(shards)
    return Result.isSuccess(map) ? { map: map.success, stale: false } : undefined
  }

  #shardStats(stream: string, shardId: string): MutableShardStats {
    let byShard = this.#stats.shards.get(stream)
    if (byShard === undefined) this.#stats.shards.set(stream, byShard = new Map())
    let stats = byShard.get(shardId)
    if (stats === undefined) {
      byShard.set(shardId, stats = { forwardedRecords: 0, forwardedBytes: 0, throttledRecords: 0 })
    }
    return stats
  }

  /**
   * Decides which records pass: random throttling first, then the shard's token buckets (records and bytes both
   * needed). Returns, per record, the predicted shard and whether it was throttled.
   */
  async #admit(
    req: Http.IncomingMessage,
    target: StreamTarget | undefined,
    records: ReadonlyArray<
      { readonly Data: string; readonly PartitionKey: string; readonly ExplicitHashKey?: string | null }
    >,
    settings: FaultSettings,
    operation: "PutRecords" | "PutRecord"
  ): Promise<Array<{ readonly shardId: string | undefined; readonly bytes: number; readonly throttled: boolean }>> {
    const applies = settings.throttleOperations.includes(operation)
    const limits = applies && settings.shardLimits
    let routes = target === undefined ? undefined : await this.#routesFor(req, target, false)
    let refreshed = false
    const now = performance.now()
    const decisions: Array<{ shardId: string | undefined; bytes: number; throttled: boolean }> = []
    for (const record of records) {
      const bytes = Buffer.byteLength(record.Data, "base64") + Buffer.byteLength(record.PartitionKey, "utf8")
      let shardId = routes === undefined ? undefined : shardOf(routes.map, record)
      if (shardId === undefined && target !== undefined && !refreshed) {
        refreshed = true
        routes = await this.#routesFor(req, target, true)
        shardId = routes === undefined ? undefined : shardOf(routes.map, record)
      }
      let throttled = applies && chance(settings.throttleRate)
      if (!throttled && limits && target !== undefined && shardId !== undefined) {
        const key = `${target.key}/${shardId}`
        let budget = this.#budgets.get(key)
        if (budget === undefined) {
          budget = {
            records: new Bucket(settings.shardRecordsPerSecond, now),
            bytes: new Bucket(settings.shardBytesPerSecond, now)
          }
          this.#budgets.set(key, budget)
        }
        // A record larger than a second's budget (up to 10 MiB on a stream that allows it) passes on a full
        // bucket and leaves it in debt: Kinesis bursts for it and averages the shard back to its rate.
        const fits = budget.records.available(settings.shardRecordsPerSecond, now) >= 1
          && budget.bytes.available(settings.shardBytesPerSecond, now) >= Math.min(bytes, settings.shardBytesPerSecond)
        if (fits) {
          budget.records.take(1)
          budget.bytes.take(bytes)
        } else {
          throttled = true
        }
      }
      if (throttled) {
        this.#stats.throttledRecords++
        if (target !== undefined) this.#shardStats(target.name, shardId ?? "unknown").throttledRecords++
      }
      decisions.push({ shardId, bytes, throttled })
    }
    return decisions
  }

  /** Whether `rejectRequestsWith` matches a user record of the request, aggregated ones unpacked. */
  #rejects(
    records: ReadonlyArray<
      { readonly Data: string; readonly PartitionKey: string; readonly ExplicitHashKey?: string | null }
    >,
    settings: FaultSettings
  ): boolean {
    const matches = settings.rejectRequestsWith
    if (matches === undefined) return false
    for (const record of records) {
      const data = new Uint8Array(Buffer.from(record.Data, "base64"))
      const users = Aggregation.deaggregate({
        partitionKey: record.PartitionKey,
        explicitHashKey: record.ExplicitHashKey ?? undefined,
        data
      })
      const candidates: ReadonlyArray<RejectCandidate> = Result.isSuccess(users)
        ? users.success
        : [{ partitionKey: record.PartitionKey, explicitHashKey: record.ExplicitHashKey ?? undefined, data }]
      if (candidates.some((candidate) => matches(candidate))) return true
    }
    return false
  }

  #rejectRequest(res: Http.ServerResponse): void {
    this.#stats.rejectedRequests++
    return answer(res, 400, {
      __type: "InvalidArgumentException",
      message: "1 validation error detected: a record of the request was rejected by the fault proxy"
    })
  }

  #throttleMessage(target: StreamTarget | undefined, shardId: string | undefined): string {
    return `Rate exceeded for shard ${shardId ?? "shardId-000000000000"} in stream ${
      target?.name ?? ""
    } under account ${target?.account ?? this.#options.accountId}.`
  }

  /** Counts what upstream accepted, and marks the routes stale when a record landed on another shard than predicted. */
  #recordForwarded(
    target: StreamTarget | undefined,
    predicted: string | undefined,
    actual: string | null | undefined,
    bytes: number
  ): void {
    if (target === undefined || actual == null) return
    const stats = this.#shardStats(target.name, actual)
    stats.forwardedRecords++
    stats.forwardedBytes += bytes
    if (predicted !== actual) {
      const routes = this.#routes.get(target.key)
      if (routes !== undefined && !(routes instanceof Promise)) routes.stale = true
    }
  }

  async #putRecords(
    req: Http.IncomingMessage,
    res: Http.ServerResponse,
    body: Buffer,
    settings: FaultSettings,
    after: AfterForward
  ): Promise<void> {
    const raw = parseJson(body)
    const input = decodePutRecords(raw)
    if (Option.isNone(input)) return this.#forwardThenAnswer(req, res, body, after, settings)
    if (this.#rejects(input.value.Records, settings)) return this.#rejectRequest(res)
    const target = this.#streamTarget(req, input.value)
    const decisions = await this.#admit(req, target, input.value.Records, settings, "PutRecords")
    const admitted = decisions.flatMap((decision, index) => (decision.throttled ? [] : [index]))
    const throttledEntry = (index: number) => ({
      ErrorCode: THROTTLED,
      ErrorMessage: this.#throttleMessage(target, decisions[index]?.shardId)
    })

    if (admitted.length === 0) {
      // Nothing would be written: answer as Kinesis does without calling upstream.
      return answer(res, 200, {
        FailedRecordCount: decisions.length,
        Records: decisions.map((_, index) => throttledEntry(index))
      })
    }

    const rawRecords = (raw as { readonly Records: ReadonlyArray<unknown> }).Records
    const forwardedBody = admitted.length === decisions.length
      ? body
      : Buffer.from(JSON.stringify({ ...(raw as object), Records: admitted.map((index) => rawRecords[index]) }))
    const response = await this.#forwardBuffered(req, forwardedBody)
    const output = response.status === 200 ? decodePutRecordsOutput(parseJson(response.body)) : Option.none()
    if (Option.isNone(output)) {
      if (after !== "none") return this.#afterForward(req, res, after, settings)
      return relay(res, response)
    }
    const upstreamRecords = (parseJson(response.body) as { readonly Records: ReadonlyArray<unknown> }).Records
    const merged: Array<unknown> = decisions.map((_, index) => throttledEntry(index))
    let failed = decisions.length - admitted.length
    admitted.forEach((index, position) => {
      const entry = output.value.Records[position]
      merged[index] = upstreamRecords[position]
      if (entry?.ErrorCode != null) failed++
      else this.#recordForwarded(target, decisions[index]?.shardId, entry?.ShardId, decisions[index]?.bytes ?? 0)
    })
    if (after !== "none") return this.#afterForward(req, res, after, settings)
    const upstreamJson = parseJson(response.body) as object
    return answer(res, 200, { ...upstreamJson, FailedRecordCount: failed, Records: merged }, response.headers)
  }

  async #putRecord(
    req: Http.IncomingMessage,
    res: Http.ServerResponse,
    body: Buffer,
    settings: FaultSettings,
    after: AfterForward
  ): Promise<void> {
    const input = decodePutRecord(parseJson(body))
    if (Option.isNone(input)) return this.#forwardThenAnswer(req, res, body, after, settings)
    if (this.#rejects([input.value], settings)) return this.#rejectRequest(res)
    const target = this.#streamTarget(req, input.value)
    const [decision] = await this.#admit(req, target, [input.value], settings, "PutRecord")
    if (decision?.throttled === true) {
      return answer(res, 400, { __type: THROTTLED, message: this.#throttleMessage(target, decision.shardId) })
    }
    const response = await this.#forwardBuffered(req, body)
    const output = response.status === 200 ? decodePutRecordOutput(parseJson(response.body)) : Option.none()
    if (Option.isSome(output)) {
      this.#recordForwarded(target, decision?.shardId, output.value.ShardId, decision?.bytes ?? 0)
    }
    if (after !== "none") return this.#afterForward(req, res, after, settings)
    return relay(res, response)
  }

  async #forwardThenAnswer(
    req: Http.IncomingMessage,
    res: Http.ServerResponse,
    body: Buffer,
    after: AfterForward,
    settings: FaultSettings
  ): Promise<void> {
    const response = await this.#forwardBuffered(req, body)
    if (after !== "none") return this.#afterForward(req, res, after, settings)
    return relay(res, response)
  }
}

const answer = (
  res: Http.ServerResponse,
  status: number,
  json: unknown,
  headers: Http.IncomingHttpHeaders = {}
): void => {
  const body = Buffer.from(JSON.stringify(json))
  const { "content-length": _, ...rest } = forwardableHeaders(headers)
  res.writeHead(status, {
    "x-amzn-requestid": randomUUID(),
    ...rest,
    "content-type": JSON_CONTENT_TYPE,
    "content-length": body.length
  })
  res.end(body)
}
