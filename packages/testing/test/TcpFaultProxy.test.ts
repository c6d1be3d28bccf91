import { TcpFaultProxy } from "@effect-kinesis/testing"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Net from "node:net"

/** An upstream echoing every byte back. */
const echo = Effect.acquireRelease(
  Effect.promise(() =>
    new Promise<Net.Server>((resolve) => {
      const server = Net.createServer((socket) => socket.pipe(socket))
      server.listen(0, "127.0.0.1", () => resolve(server))
    })
  ),
  (server) => Effect.sync(() => server.close())
)

type Outcome = { readonly echoed: string } | { readonly error: string } | "silent"

/** Connects, sends "ping" and reports what came back within `wait` ms. */
const exchange = (port: number, wait = 300) =>
  Effect.promise(() =>
    new Promise<Outcome>((resolve) => {
      const socket = Net.connect({ host: "127.0.0.1", port }, () => socket.write("ping"))
      const timer = setTimeout(() => {
        socket.destroy()
        resolve("silent")
      }, wait)
      socket.once("data", (data) => {
        clearTimeout(timer)
        socket.destroy()
        resolve({ echoed: data.toString() })
      })
      socket.once("error", (error: NodeJS.ErrnoException) => {
        clearTimeout(timer)
        resolve({ error: error.code ?? error.message })
      })
    })
  )

/** Polls until the proxy is in `mode` (outage steps switch on real timers). */
const untilMode = (proxy: TcpFaultProxy.TcpFaultProxy["Service"], mode: TcpFaultProxy.ConnectionMode) =>
  Effect.gen(function*() {
    while ((yield* proxy.mode) !== mode) yield* sleep(10)
  })

const sleep = (millis: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, millis)))

describe("TcpFaultProxy", () => {
  it.live("forwards, refuses with ECONNREFUSED on the same port, resets, black-holes, and recovers on time", () =>
    Effect.gen(function*() {
      const upstream = yield* echo
      const proxy = yield* TcpFaultProxy.make(`127.0.0.1:${(upstream.address() as Net.AddressInfo).port}`)
      assert.deepStrictEqual(yield* exchange(proxy.port), { echoed: "ping" })

      yield* proxy.setMode("refuse", "300 millis")
      assert.deepStrictEqual(yield* exchange(proxy.port), { error: "ECONNREFUSED" })
      yield* untilMode(proxy, "forward")
      assert.deepStrictEqual(yield* exchange(proxy.port), { echoed: "ping" })

      yield* proxy.setMode("reset")
      assert.deepStrictEqual(yield* exchange(proxy.port), { error: "ECONNRESET" })
      yield* proxy.setMode("blackHole")
      assert.strictEqual(yield* exchange(proxy.port), "silent")
      yield* proxy.restore

      const stats = yield* proxy.stats
      assert.deepStrictEqual(
        { ...stats, open: 0 },
        { accepted: 4, forwarded: 2, reset: 1, blackHoled: 1, dropped: 0, refusals: 1, mode: "forward", open: 0 }
      )
    }).pipe(Effect.scoped))

  it.live("drops established connections with an RST, and an outage runs its steps in turn", () =>
    Effect.gen(function*() {
      const upstream = yield* echo
      const proxy = yield* TcpFaultProxy.make(`127.0.0.1:${(upstream.address() as Net.AddressInfo).port}`)
      const socket = Net.connect({ host: "127.0.0.1", port: proxy.port })
      const closed = new Promise<string | undefined>((resolve) => {
        socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code))
        socket.once("close", () => resolve(undefined))
      })
      yield* Effect.promise(() => new Promise((resolve) => socket.once("connect", resolve)))
      yield* sleep(50)
      assert.strictEqual((yield* proxy.stats).open, 1)

      yield* proxy.outage([{ mode: "refuse", duration: "300 millis" }, { mode: "reset", duration: "300 millis" }])
      assert.strictEqual(yield* Effect.promise(() => closed), "ECONNRESET")
      assert.strictEqual(yield* proxy.mode, "refuse")
      assert.deepStrictEqual(yield* exchange(proxy.port), { error: "ECONNREFUSED" })
      yield* untilMode(proxy, "reset")
      assert.deepStrictEqual(yield* exchange(proxy.port), { error: "ECONNRESET" })
      yield* untilMode(proxy, "forward")
      assert.deepStrictEqual(yield* exchange(proxy.port), { echoed: "ping" })
      assert.strictEqual((yield* proxy.stats).dropped, 1)
    }).pipe(Effect.scoped))

  it.live("established connections stall while black-holed and deliver what they held afterwards", () =>
    Effect.gen(function*() {
      const upstream = yield* echo
      const proxy = yield* TcpFaultProxy.make(`127.0.0.1:${(upstream.address() as Net.AddressInfo).port}`)
      const socket = Net.connect({ host: "127.0.0.1", port: proxy.port })
      yield* Effect.promise(() => new Promise((resolve) => socket.once("connect", resolve)))
      const received: Array<string> = []
      socket.on("data", (data) => received.push(data.toString()))
      yield* proxy.setMode("blackHole")
      socket.write("held")
      yield* sleep(200)
      assert.deepStrictEqual(received, [])
      yield* proxy.restore
      yield* sleep(200)
      assert.deepStrictEqual(received, ["held"])
      socket.destroy()
    }).pipe(Effect.scoped))
})
