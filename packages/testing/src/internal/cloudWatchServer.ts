/**
 * The loopback HTTP server behind `CloudWatchEndpoint`: decodes `PutMetricData` as the AWS SDK sends it (AWS JSON 1.0
 * with `awsQueryCompatible`, the installed client's protocol; the older `awsQuery` form encoding; or Smithy RPC v2
 * CBOR, which a client can be configured to use), gzip or not;
 * checks it against CloudWatch's limits; answers with CloudWatch's error shapes; and fails or hangs on request.
 *
 * @internal
 */
import { randomUUID } from "node:crypto"
import * as Http from "node:http"
import type * as Net from "node:net"
import { gunzipSync } from "node:zlib"
import type { Datum, EndpointSettings, EndpointStats, PutMetricDataCall, Rejection } from "../CloudWatchEndpoint.ts"
import * as Cbor from "./cbor.ts"
import { chance, readBody } from "./httpRelay.ts"

/** CloudWatch's limits, from the `PutMetricData` and `MetricDatum` API reference. @internal */
export const LIMITS = {
  maxDatumsPerRequest: 1000,
  maxRequestBytes: 1024 * 1024,
  maxDimensionsPerDatum: 30,
  maxNameLength: 255,
  maxDimensionValueLength: 1024,
  maxValuesPerDatum: 150,
  maxMagnitude: 2 ** 360
} as const

const STANDARD_UNITS = new Set([
  "Seconds",
  "Microseconds",
  "Milliseconds",
  "Bytes",
  "Kilobytes",
  "Megabytes",
  "Gigabytes",
  "Terabytes",
  "Bits",
  "Kilobits",
  "Megabits",
  "Gigabits",
  "Terabits",
  "Percent",
  "Count",
  "Bytes/Second",
  "Kilobytes/Second",
  "Megabytes/Second",
  "Gigabytes/Second",
  "Terabytes/Second",
  "Bits/Second",
  "Kilobits/Second",
  "Megabits/Second",
  "Gigabits/Second",
  "Terabits/Second",
  "Count/Second",
  "None"
])

const TWO_WEEKS = 14 * 24 * 3600 * 1000
const TWO_HOURS = 2 * 3600 * 1000

class ApiError extends Error {
  readonly status: number
  readonly code: string
  readonly type: "Sender" | "Receiver"
  constructor(status: number, code: string, type: "Sender" | "Receiver", message: string) {
    super(message)
    this.status = status
    this.code = code
    this.type = type
  }
}

interface State {
  readonly calls: Array<PutMetricDataCall>
  readonly rejections: Array<Rejection>
  stats: { requests: number; accepted: number; rejected: number; failed: number; hung: number }
}

const invalid = (message: string) => new ApiError(400, "InvalidParameterValue", "Sender", message)

// ---------------------------------------------------------------------------------------------------------------------
// decoding
// ---------------------------------------------------------------------------------------------------------------------

type Protocol = PutMetricDataCall["protocol"]

interface Decoded {
  readonly protocol: Protocol
  readonly operation: string
  readonly input: Record<string, unknown>
}

/** `a.member.1.b=x` → `{ a: [{ b: "x" }] }`: the awsQuery form encoding, read back into the shape JSON has. */
const fromQuery = (params: URLSearchParams): Record<string, unknown> => {
  const root: Record<string, unknown> = {}
  for (const [key, value] of params) {
    const path = key.split(".")
    let node: Record<string, unknown> | Array<unknown> = root
    for (let i = 0; i < path.length; i++) {
      let segment: string | number = path[i]!
      if (segment === "member" && Array.isArray(node)) continue
      if (Array.isArray(node)) segment = Number(segment) - 1
      const last = i === path.length - 1
      const nextIsList = !last && path[i + 1] === "member"
      const container = node as Record<string | number, unknown>
      if (last) container[segment] = value
      else {
        if (container[segment] === undefined) container[segment] = nextIsList ? [] : {}
        node = container[segment] as Record<string, unknown> | Array<unknown>
      }
    }
  }
  return root
}

const decode = (req: Http.IncomingMessage, body: Buffer): Decoded => {
  const contentType = String(req.headers["content-type"] ?? "")
  if (contentType.startsWith("application/x-amz-json-1.0")) {
    const target = String(req.headers["x-amz-target"] ?? "")
    const operation = target.slice(target.indexOf(".") + 1)
    let input: Record<string, unknown>
    try {
      input = JSON.parse(body.toString("utf8") || "{}")
    } catch {
      throw new ApiError(400, "SerializationException", "Sender", "request body is not JSON")
    }
    return { protocol: "json", operation, input }
  }
  if (contentType.startsWith("application/cbor")) {
    // Smithy RPC v2 CBOR: /service/<service>/operation/<operation>
    const operation = (req.url ?? "").split("/").at(-1) ?? ""
    let input: Record<string, unknown>
    try {
      input = body.length === 0 ? {} : Cbor.decode(body) as Record<string, unknown>
    } catch {
      throw new ApiError(400, "SerializationException", "Sender", "request body is not CBOR")
    }
    return { protocol: "cbor", operation, input }
  }
  if (contentType.startsWith("application/x-www-form-urlencoded")) {
    const params = new URLSearchParams(body.toString("utf8"))
    const input = fromQuery(params)
    const { Action, Version: _, ...rest } = input
    return { protocol: "query", operation: String(Action ?? ""), input: rest }
  }
  throw new ApiError(400, "UnknownOperationException", "Sender", `unsupported content-type ${contentType}`)
}

const num = (value: unknown): number | undefined =>
  value === undefined || value === null ? undefined : typeof value === "number" ? value : Number(value)

const timestampOf = (value: unknown): number | undefined => {
  if (value === undefined || value === null) return undefined
  if (typeof value === "number") return value * 1000 // JSON and CBOR protocols: epoch seconds
  const text = String(value)
  return /^\d+(\.\d+)?$/.test(text) ? Number(text) * 1000 : Date.parse(text)
}

const asArray = (value: unknown): Array<Record<string, unknown>> =>
  Array.isArray(value) ? value.filter((v): v is Record<string, unknown> => typeof v === "object" && v !== null) : []

const finite = (name: string, value: number | undefined): void => {
  if (value === undefined || !Number.isFinite(value) || Math.abs(value) > LIMITS.maxMagnitude) {
    throw invalid(`The value ${String(value)} for parameter ${name} is invalid.`)
  }
}

const nameOk = (name: string, value: unknown, max: number): string => {
  if (typeof value !== "string" || value.length < 1 || value.length > max) {
    throw invalid(`The parameter ${name} must be between 1 and ${max} characters long.`)
  }
  return value
}

/**
 * CloudWatch's rule for dimension names and values: printable ASCII only, at least one non-whitespace character, and
 * a name never starts with a colon.
 */
const dimensionText = (name: string, value: string, isName: boolean): string => {
  if (!/^[\x20-\x7e]*$/.test(value) || value.trim().length === 0 || (isName && value.startsWith(":"))) {
    throw invalid(`The value for parameter ${name} contains characters that are not allowed.`)
  }
  return value
}

/** Validates one request the way CloudWatch does and returns its datums. */
const validate = (input: Record<string, unknown>, now: number, settings: EndpointSettings): {
  readonly namespace: string
  readonly datums: Array<Datum>
} => {
  const namespace = nameOk("Namespace", input["Namespace"], LIMITS.maxNameLength)
  if (namespace.startsWith("AWS/")) throw invalid("The value AWS/ for parameter Namespace is invalid.")
  dimensionText("Namespace", namespace, true)
  if (input["EntityMetricData"] !== undefined) throw invalid("EntityMetricData is not supported by this fake.")
  const raw = asArray(input["MetricData"])
  if (raw.length < 1 || raw.length > LIMITS.maxDatumsPerRequest) {
    throw invalid(
      `The collection MetricData must not have a size greater than ${LIMITS.maxDatumsPerRequest} (got ${raw.length}).`
    )
  }
  const datums = raw.map((d, i): Datum => {
    const at = `MetricData.member.${i + 1}`
    const metricName = nameOk(`${at}.MetricName`, d["MetricName"], LIMITS.maxNameLength)
    if (settings.refuseMetricNames.includes(metricName)) {
      throw invalid(`The value ${metricName} for parameter ${at}.MetricName is invalid.`)
    }
    const dimensions = asArray(d["Dimensions"]).map((dim, j) => ({
      name: dimensionText(
        `${at}.Dimensions.member.${j + 1}.Name`,
        nameOk(`${at}.Dimensions.member.${j + 1}.Name`, dim["Name"], LIMITS.maxNameLength),
        true
      ),
      value: dimensionText(
        `${at}.Dimensions.member.${j + 1}.Value`,
        nameOk(`${at}.Dimensions.member.${j + 1}.Value`, dim["Value"], LIMITS.maxDimensionValueLength),
        false
      )
    }))
    if (dimensions.length > LIMITS.maxDimensionsPerDatum) {
      throw invalid(`The collection ${at}.Dimensions must not have a size greater than 30.`)
    }
    if (new Set(dimensions.map((dim) => dim.name)).size !== dimensions.length) {
      throw invalid(`No metric may have duplicate dimension names (${at}).`)
    }
    const unit = d["Unit"] === undefined ? undefined : String(d["Unit"])
    if (unit !== undefined && !STANDARD_UNITS.has(unit)) throw invalid(`The value ${unit} for ${at}.Unit is invalid.`)
    const storageResolution = num(d["StorageResolution"])
    if (storageResolution !== undefined && storageResolution !== 1 && storageResolution !== 60) {
      throw invalid(`The value ${storageResolution} for ${at}.StorageResolution is invalid.`)
    }
    const timestamp = timestampOf(d["Timestamp"])
    if (
      timestamp !== undefined &&
      (Number.isNaN(timestamp) ||
        settings.checkTimestamps && (timestamp < now - TWO_WEEKS || timestamp > now + TWO_HOURS))
    ) {
      throw invalid(
        `The parameter ${at}.Timestamp must specify a time no more than two weeks in the past or two hours in the future.`
      )
    }
    const value = num(d["Value"])
    const values = Array.isArray(d["Values"]) ? (d["Values"] as Array<unknown>).map((v) => Number(v)) : undefined
    const counts = Array.isArray(d["Counts"]) ? (d["Counts"] as Array<unknown>).map((v) => Number(v)) : undefined
    const sv = d["StatisticValues"] as Record<string, unknown> | undefined
    const statisticValues = sv === undefined ? undefined : {
      sampleCount: num(sv["SampleCount"])!,
      sum: num(sv["Sum"])!,
      minimum: num(sv["Minimum"])!,
      maximum: num(sv["Maximum"])!
    }
    const given = [value, values, statisticValues].filter((x) => x !== undefined).length
    if (given !== 1) throw invalid(`${at}: exactly one of Value, Values or StatisticValues must be given.`)
    if (value !== undefined) finite(`${at}.Value`, value)
    if (values !== undefined) {
      if (values.length > LIMITS.maxValuesPerDatum) throw invalid(`${at}.Values has more than 150 values.`)
      values.forEach((v, j) => finite(`${at}.Values.member.${j + 1}`, v))
      if (counts !== undefined && counts.length !== values.length) {
        throw invalid(`${at}: Counts and Values differ in length.`)
      }
    }
    if (statisticValues !== undefined) {
      for (const [key, v] of Object.entries(statisticValues)) finite(`${at}.StatisticValues.${key}`, v)
      if (!(statisticValues.sampleCount > 0)) throw invalid(`${at}.StatisticValues.SampleCount must be positive.`)
      if (statisticValues.minimum > statisticValues.maximum) {
        throw invalid(`${at}.StatisticValues.Minimum is greater than Maximum.`)
      }
    }
    return {
      namespace,
      metricName,
      unit,
      dimensions,
      timestamp,
      storageResolution,
      value,
      values,
      counts,
      statisticValues
    }
  })
  return { namespace, datums }
}

// ---------------------------------------------------------------------------------------------------------------------
// answers
// ---------------------------------------------------------------------------------------------------------------------

const XMLNS = "http://monitoring.amazonaws.com/doc/2010-08-01/"

const escapeXml = (text: string) =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

const answer = (res: Http.ServerResponse, protocol: Protocol, operation: string): void => {
  const requestId = randomUUID()
  if (protocol === "json") {
    res.writeHead(200, { "content-type": "application/x-amz-json-1.0", "x-amzn-requestid": requestId })
    res.end("{}")
  } else if (protocol === "cbor") {
    res.writeHead(200, {
      "content-type": "application/cbor",
      "smithy-protocol": "rpc-v2-cbor",
      "x-amzn-requestid": requestId
    })
    res.end(Cbor.encodeMap({}))
  } else {
    res.writeHead(200, { "content-type": "text/xml", "x-amzn-requestid": requestId })
    res.end(
      `<${operation}Response xmlns="${XMLNS}"><ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></${operation}Response>`
    )
  }
}

/** The Smithy shape of each modelled query error code: what the JSON protocol names in `__type`. */
const SHAPES: Record<string, string> = {
  InvalidParameterValue: "InvalidParameterValueException",
  InternalServiceError: "InternalServiceFault",
  MissingParameter: "MissingRequiredParameterException",
  InvalidParameterCombination: "InvalidParameterCombinationException"
}

/**
 * CloudWatch's error shapes: JSON or CBOR with `__type` and the query error code in `x-amzn-query-error`, or query
 * XML.
 */
const fail = (res: Http.ServerResponse, protocol: Protocol, error: ApiError): void => {
  const requestId = randomUUID()
  if (protocol === "cbor") {
    res.writeHead(error.status, {
      "content-type": "application/cbor",
      "smithy-protocol": "rpc-v2-cbor",
      "x-amzn-requestid": requestId,
      "x-amzn-query-error": `${error.code};${error.type}`
    })
    res.end(Cbor.encodeMap({
      __type: `com.amazonaws.cloudwatch#${SHAPES[error.code] ?? error.code}`,
      message: error.message,
      Message: error.message
    }))
  } else if (protocol === "json") {
    res.writeHead(error.status, {
      "content-type": "application/x-amz-json-1.0",
      "x-amzn-requestid": requestId,
      "x-amzn-query-error": `${error.code};${error.type}`
    })
    res.end(JSON.stringify({
      __type: `com.amazonaws.cloudwatch#${SHAPES[error.code] ?? error.code}`,
      message: error.message,
      Message: error.message
    }))
  } else {
    res.writeHead(error.status, { "content-type": "text/xml", "x-amzn-requestid": requestId })
    res.end(
      `<ErrorResponse xmlns="${XMLNS}"><Error><Type>${error.type}</Type><Code>${error.code}</Code><Message>${
        escapeXml(error.message)
      }</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`
    )
  }
}

const injected = (fault: EndpointSettings["fault"]): ApiError | undefined => {
  switch (fault) {
    case "InternalFailure":
      return new ApiError(500, "InternalServiceError", "Receiver", "Internal service error")
    case "ServiceUnavailable":
      return new ApiError(503, "ServiceUnavailable", "Receiver", "Service unavailable")
    case "Throttling":
      return new ApiError(400, "Throttling", "Sender", "Rate exceeded")
    default:
      return undefined
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// the server
// ---------------------------------------------------------------------------------------------------------------------

/** @internal */
export class CloudWatchServer {
  private readonly server: Http.Server
  readonly port: number
  private readonly state: State
  private readonly sockets: Set<Net.Socket>
  private constructor(server: Http.Server, port: number, state: State, sockets: Set<Net.Socket>) {
    this.server = server
    this.port = port
    this.state = state
    this.sockets = sockets
  }

  static start(settings: () => EndpointSettings): Promise<CloudWatchServer> {
    const state: State = {
      calls: [],
      rejections: [],
      stats: { requests: 0, accepted: 0, rejected: 0, failed: 0, hung: 0 }
    }
    const sockets = new Set<Net.Socket>()
    const server = Http.createServer((req, res) => {
      void handle(req, res).catch(() => res.destroy())
    })
    const handle = async (req: Http.IncomingMessage, res: Http.ServerResponse) => {
      const raw = await readBody(req)
      const current = settings()
      state.stats.requests++
      const compressed = req.headers["content-encoding"] === "gzip"
      let body: Buffer
      try {
        body = compressed ? gunzipSync(raw) : raw
      } catch {
        return fail(res, "json", new ApiError(400, "SerializationException", "Sender", "bad gzip body"))
      }
      let decoded: Decoded
      try {
        decoded = decode(req, body)
      } catch (error) {
        return fail(res, "json", error as ApiError)
      }
      if (current.fault === "hang" && chance(current.faultRate)) {
        // No answer, connection held: what a blackholed endpoint does. Closing the server ends it.
        state.stats.hung++
        return
      }
      const fault = chance(current.faultRate) ? injected(current.fault) : undefined
      if (fault !== undefined) {
        state.stats.failed++
        return fail(res, decoded.protocol, fault)
      }
      if (decoded.operation !== "PutMetricData") {
        return fail(
          res,
          decoded.protocol,
          new ApiError(400, "InvalidAction", "Sender", `${decoded.operation} is not supported by this fake`)
        )
      }
      try {
        if (body.length > LIMITS.maxRequestBytes) {
          throw new ApiError(
            413,
            "RequestEntityTooLarge",
            "Sender",
            `Request size ${body.length} exceeded ${LIMITS.maxRequestBytes} bytes`
          )
        }
        const { datums, namespace } = validate(decoded.input, Date.now(), current)
        state.stats.accepted++
        state.calls.push({ protocol: decoded.protocol, compressed, bytes: body.length, namespace, datums })
        answer(res, decoded.protocol, decoded.operation)
      } catch (error) {
        if (!(error instanceof ApiError)) throw error
        state.stats.rejected++
        state.rejections.push({ code: error.code, message: error.message, bytes: body.length })
        fail(res, decoded.protocol, error)
      }
    }
    server.on("connection", (socket) => {
      sockets.add(socket)
      socket.once("close", () => sockets.delete(socket))
    })
    return new Promise((resolve, reject) => {
      server.once("error", reject)
      server.listen(0, "127.0.0.1", () => {
        const address = server.address() as Net.AddressInfo
        resolve(new CloudWatchServer(server, address.port, state, sockets))
      })
    })
  }

  calls(): ReadonlyArray<PutMetricDataCall> {
    return this.state.calls.slice()
  }

  rejections(): ReadonlyArray<Rejection> {
    return this.state.rejections.slice()
  }

  stats(): EndpointStats {
    return { ...this.state.stats }
  }

  clear(): void {
    this.state.calls.length = 0
    this.state.rejections.length = 0
    this.state.stats = { requests: 0, accepted: 0, rejected: 0, failed: 0, hung: 0 }
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}
