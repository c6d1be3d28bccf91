/**
 * The request timeout of `Client` calls: how long a call may wait for its answer to start. A
 * middleware next to the HTTP handler tells the call when the response headers arrived; the
 * body may then take as long as it takes (a 10 MiB `GetRecords` answer over a slow link must not
 * time out on every retry, which a whole-call timeout would do). The call's state travels in an
 * `AsyncLocalStorage`, since the middleware is the SDK client's and shared by all its calls.
 *
 * @internal
 */
import type { KinesisClient } from "@aws-sdk/client-kinesis"
import { AsyncLocalStorage } from "node:async_hooks"

interface Waiting {
  /** Called by the middleware once the handler returned the response (its headers). */
  readonly started: () => void
}

const current = new AsyncLocalStorage<Waiting>()
const installed = new WeakSet<KinesisClient>()

/** Adds the middleware to `sdk`, once. @internal */
export const install = (sdk: KinesisClient): void => {
  if (installed.has(sdk)) return
  installed.add(sdk)
  sdk.middlewareStack.add(
    (next) => async (args) => {
      const output = await next(args)
      current.getStore()?.started()
      return output
    },
    // The innermost middleware: `next` is the HTTP handler, which resolves at the headers.
    { step: "deserialize", priority: "low", name: "effectKinesisResponseStarted" }
  )
}

/** Why a call was abandoned by {@link send}. @internal */
export class ResponseTimeout extends Error {
  override readonly name = "TimeoutError"
}

/**
 * Sends through `send` with an abort signal that fires when `signal` does (interruption) or when
 * no response started within `timeoutMillis`; then `onTimeout` runs and the call fails with
 * {@link ResponseTimeout}. Runs on real timers: network silence is real time, whatever clock a
 * test uses.
 *
 * @internal
 */
export const send = <A>(
  signal: AbortSignal,
  timeoutMillis: number,
  onTimeout: () => void,
  sendWith: (signal: AbortSignal) => Promise<A>
): Promise<A> => {
  const controller = new AbortController()
  const interrupted = () => controller.abort(signal.reason)
  signal.addEventListener("abort", interrupted, { once: true })
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    controller.abort()
    onTimeout()
  }, timeoutMillis)
  const done = () => {
    clearTimeout(timer)
    signal.removeEventListener("abort", interrupted)
  }
  return current.run({ started: () => clearTimeout(timer) }, () => sendWith(controller.signal)).then(
    (output) => {
      done()
      return output
    },
    (error: unknown) => {
      done()
      // Without the abort as its cause: an `AbortError` in the chain reads as our own interruption.
      throw timedOut ? new ResponseTimeout(`no answer started within ${timeoutMillis} ms`) : error
    }
  )
}
