/**
 * Which failures of an AWS SDK call are the network's, and pass: a refused or reset connection, a cancelled HTTP/2
 * stream, a GOAWAY, a timed-out request. Both HTTP handlers report them differently, and often nested: the HTTP/2
 * handler fails a call with `ERR_HTTP2_STREAM_CANCEL` whose `cause` is the `ECONNREFUSED`, a connection to a host
 * with several addresses fails with an `AggregateError` of them, and the SDK adds `$metadata` to whatever it throws.
 * One classification for every client of this project (Kinesis and DynamoDB alike), so that all retry the same
 * failures.
 *
 * An `AbortError` anywhere in the chain is never transient: it is the caller's own cancellation (Effect interruption
 * aborts the request), and retrying it would fight the interruption.
 *
 * @since 0.1.0
 */
import { Predicate } from "effect"

// Socket and DNS errors (`code`), Node's HTTP/2 errors, smithy's names for timeouts and the errors it sets `name` on.
const transientCodes: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "ENOTCONN",
  "EAI_AGAIN",
  // A failed DNS lookup is usually a resolver hiccup for AWS endpoints; callers bound their retries anyway.
  "ENOTFOUND",
  "ERR_SOCKET_CONNECTION_TIMEOUT",
  "ERR_STREAM_PREMATURE_CLOSE",
  "ERR_HTTP2_STREAM_CANCEL",
  "ERR_HTTP2_STREAM_ERROR",
  "ERR_HTTP2_SESSION_ERROR",
  "ERR_HTTP2_GOAWAY_SESSION",
  "ERR_HTTP2_INVALID_SESSION",
  "ERR_HTTP2_ERROR",
  "ERR_HTTP2_PING_CANCEL",
  "ERR_HTTP2_SOCKET_UNBOUND",
  // smithy: `TimeoutError` names every connect/request timeout and, on HTTP/1.1, ECONNRESET/EPIPE too.
  "TimeoutError",
  "RequestTimeout",
  "RequestTimeoutException"
])

// Node's HTTP/2 stream and session errors carry the nghttp2 code only in the message.
const NGHTTP2 = /\bNGHTTP2_[A-Z_]+\b/
const transientMessages = ["socket hang up", "http2 request did not get a response"]

const isAbort = (e: Record<string, unknown>): boolean => e["name"] === "AbortError" || e["code"] === "ABORT_ERR"

/**
 * The code (`ECONNREFUSED`, `ERR_HTTP2_STREAM_CANCEL`, `TimeoutError`, …) of the first transient transport failure
 * found in `error`, its `cause` chain or the `errors` of an `AggregateError`; `undefined` when there is none, or when
 * the chain holds an `AbortError`. The innermost cause is not preferred: the outermost transient code is returned.
 *
 * @example
 * ```ts
 * import { TransportFailure } from "@effect-kinesis/core"
 *
 * const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:4567"), { code: "ECONNREFUSED" })
 * const cancelled = Object.assign(new Error("The pending stream has been canceled"), {
 *   code: "ERR_HTTP2_STREAM_CANCEL",
 *   cause: refused
 * })
 * TransportFailure.transientCode(cancelled) // "ERR_HTTP2_STREAM_CANCEL"
 * ```
 *
 * @since 0.1.0
 * @category classification
 */
export const transientCode = (error: unknown): string | undefined => {
  const seen = new Set<unknown>()
  let found: string | undefined
  const visit = (node: unknown, depth: number): boolean => {
    if (!Predicate.isObject(node) || seen.has(node) || depth > 8) return true
    seen.add(node)
    const e = node as Record<string, unknown>
    if (isAbort(e)) return false
    if (found === undefined) {
      for (const key of ["code", "name"] as const) {
        const value = e[key]
        if (Predicate.isString(value) && transientCodes.has(value)) {
          found = value
          break
        }
      }
    }
    if (found === undefined && Predicate.isString(e["message"])) {
      const message = e["message"]
      const nghttp2 = NGHTTP2.exec(message)
      if (nghttp2 !== null) found = nghttp2[0]
      else if (transientMessages.some((text) => message.includes(text))) found = message
    }
    if (!visit(e["cause"], depth + 1)) return false
    const errors = e["errors"]
    if (Array.isArray(errors)) {
      for (const inner of errors) if (!visit(inner, depth + 1)) return false
    }
    return true
  }
  return visit(error, 0) ? found : undefined
}

/**
 * Whether `error` (anything an AWS SDK call rejects with) is a transient transport failure, so that trying again
 * can succeed: see {@link transientCode}. Answers from the service (throttling, 5xx, access denied) are not transport
 * failures; classify them by their error name first.
 *
 * @example
 * ```ts
 * import { TransportFailure } from "@effect-kinesis/core"
 *
 * TransportFailure.isTransient({ name: "Error", code: "ECONNRESET", message: "read ECONNRESET" }) // true
 * TransportFailure.isTransient({ name: "AbortError", message: "Request aborted" }) // false
 * ```
 *
 * @since 0.1.0
 * @category classification
 */
export const isTransient = (error: unknown): boolean => transientCode(error) !== undefined
