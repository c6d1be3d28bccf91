/**
 * A connection-level fault proxy: raw TCP forwarding to any upstream (a `KinesisEmulator`, a `DynamoEmulator`, …), so
 * it carries HTTP/1.1 and HTTP/2 cleartext (h2c) alike. Where `FaultProxy` answers single Kinesis requests with errors,
 * this one breaks the network under them: for a while it refuses connections (no listener: a real `ECONNREFUSED`),
 * resets them, black-holes them (accepted, never answered), or drops every established connection at once — what a
 * client meets during a network blip, a load balancer failover or a restarting endpoint.
 *
 * Faults run on real timers, whatever clock the test uses; counters tell what the proxy did.
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Layer, type Scope } from "effect"
import { TcpFaultServer } from "./internal/tcpFaultServer.ts"

/**
 * What the proxy does with new connections:
 *
 * - `"forward"`: pipes them to the upstream (the default);
 * - `"refuse"`: nothing listens on the port, so connecting fails with `ECONNREFUSED`;
 * - `"reset"`: accepts, then resets at once (RST), so the client sees `ECONNRESET`;
 * - `"blackHole"`: accepts and never answers; established connections stall too, and deliver what they held once the
 *   proxy forwards again.
 *
 * Established connections keep forwarding in `"refuse"` and `"reset"`: drop them to force clients to reconnect.
 *
 * @example
 * ```ts
 * import type { TcpFaultProxy } from "@effect-kinesis/testing"
 *
 * const modes: ReadonlyArray<TcpFaultProxy.ConnectionMode> = ["refuse", "reset"]
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type ConnectionMode = "forward" | "refuse" | "reset" | "blackHole"

/**
 * One phase of an {@link TcpFaultProxy outage}: a mode held for a duration.
 *
 * @example
 * ```ts
 * import type { TcpFaultProxy } from "@effect-kinesis/testing"
 *
 * const step: TcpFaultProxy.OutageStep = { mode: "refuse", duration: "750 millis" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface OutageStep {
  readonly mode: Exclude<ConnectionMode, "forward">
  readonly duration: Duration.Input
}

/**
 * What the proxy has done since it started or since `resetStats`.
 *
 * @example
 * ```ts
 * import type { TcpFaultProxy } from "@effect-kinesis/testing"
 *
 * const faulted = (stats: TcpFaultProxy.ConnectionStats) => stats.reset + stats.dropped + stats.blackHoled
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ConnectionStats {
  /** Connections accepted, whatever happened to them. */
  readonly accepted: number
  /** Connections piped to the upstream. */
  readonly forwarded: number
  /** New connections reset at once. */
  readonly reset: number
  /** New connections accepted and never answered. */
  readonly blackHoled: number
  /** Established connections dropped by `drop` or `outage`. */
  readonly dropped: number
  /** Times the proxy stopped listening (connections refused meanwhile are not seen, so not counted). */
  readonly refusals: number
  /** The current mode. */
  readonly mode: ConnectionMode
  /** Connections open now (forwarded or black-holed). */
  readonly open: number
}

/**
 * A running proxy. Point clients at `endpoint` instead of the upstream's.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TcpFaultProxy } from "@effect-kinesis/testing"
 *
 * // Every established connection is reset, then new ones are refused for 1.5 s.
 * const blip = Effect.gen(function*() {
 *   const proxy = yield* TcpFaultProxy.TcpFaultProxy
 *   yield* proxy.outage([{ mode: "refuse", duration: "1500 millis" }])
 * })
 * ```
 *
 * @since 0.1.0
 * @category services
 */
export class TcpFaultProxy extends Context.Service<TcpFaultProxy, {
  /** e.g. `http://127.0.0.1:45123`; stays the same while refusing. */
  readonly endpoint: string
  readonly port: number
  readonly mode: Effect.Effect<ConnectionMode>
  /**
   * Switches to `mode` at once, replacing any outage still running; with a `duration` the proxy forwards again
   * after it (the call itself returns at once).
   */
  setMode(mode: ConnectionMode, duration?: Duration.Input): Effect.Effect<void>
  /**
   * Destroys every established connection on both sides and returns how many. `"reset"` (the default) sends the
   * client an RST (`ECONNRESET`), `"close"` a FIN.
   */
  drop(how?: "reset" | "close"): Effect.Effect<number>
  /**
   * Starts an outage and returns at once: every established connection is dropped (RST), then each step holds its
   * mode for its duration in turn, then the proxy forwards again. Replaces any outage still running.
   */
  outage(steps: ReadonlyArray<OutageStep>): Effect.Effect<void>
  /** Forwards again at once, ending any outage. */
  readonly restore: Effect.Effect<void>
  readonly stats: Effect.Effect<ConnectionStats>
  readonly resetStats: Effect.Effect<void>
}>()("@effect-kinesis/testing/TcpFaultProxy") {}

const millis = (input: Duration.Input): number => Duration.toMillis(Duration.fromInputUnsafe(input))

/**
 * Starts a proxy forwarding to `upstream` (an `http://host:port` endpoint, or `host:port`) for the current scope.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { DynamoEmulator, TcpFaultProxy } from "@effect-kinesis/testing"
 *
 * const dynamoEndpoint = Effect.gen(function*() {
 *   const dynamo = yield* DynamoEmulator.DynamoEmulator
 *   const proxy = yield* TcpFaultProxy.make(dynamo.endpoint)
 *   return proxy.endpoint
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (upstream: string): Effect.Effect<TcpFaultProxy["Service"], never, Scope.Scope> =>
  Effect.gen(function*() {
    const url = new URL(upstream.includes("://") ? upstream : `tcp://${upstream}`)
    const server = yield* Effect.acquireRelease(
      Effect.promise(() =>
        TcpFaultServer.start({
          // `URL` keeps IPv6 hosts bracketed; `net.connect` wants them bare.
          upstreamHost: url.hostname.replace(/^\[(.*)\]$/, "$1"),
          upstreamPort: Number(url.port || (url.protocol === "https:" ? 443 : 80))
        })
      ),
      (server) => Effect.promise(() => server.close())
    )
    return TcpFaultProxy.of({
      endpoint: `http://127.0.0.1:${server.port}`,
      port: server.port,
      mode: Effect.sync(() => server.mode),
      setMode: (mode, duration) =>
        Effect.promise(() =>
          duration === undefined || mode === "forward"
            ? server.set(mode)
            : server.schedule([[mode, millis(duration)]])
        ),
      drop: (how = "reset") => Effect.sync(() => server.drop(how)),
      outage: (steps) =>
        Effect.promise(() => {
          server.drop("reset")
          return server.schedule(steps.map((step) => [step.mode, millis(step.duration)] as const))
        }),
      restore: Effect.promise(() => server.set("forward")),
      stats: Effect.sync(() => server.stats()),
      resetStats: Effect.sync(() => server.resetStats())
    })
  })

/**
 * A layer running one proxy for as long as the layer lives, in front of the endpoint `upstream` gives (an effect, so
 * it can read an emulator from the context).
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { KinesisEmulator, TcpFaultProxy } from "@effect-kinesis/testing"
 *
 * const TestKinesis = TcpFaultProxy.layer(Effect.map(KinesisEmulator.KinesisEmulator, (e) => e.endpoint)).pipe(
 *   Layer.provideMerge(KinesisEmulator.layer())
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <E, R>(upstream: Effect.Effect<string, E, R>): Layer.Layer<TcpFaultProxy, E, R> =>
  Layer.effect(TcpFaultProxy, Effect.flatMap(upstream, make))
