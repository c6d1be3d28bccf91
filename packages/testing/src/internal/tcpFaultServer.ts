/**
 * The raw TCP forwarder behind `TcpFaultProxy`: every accepted connection is piped byte for byte to the upstream, so
 * it carries HTTP/1.1, h2c and anything else. Faults act on connections, not on requests: refusing (no listener at
 * all, so clients get a real ECONNREFUSED), resetting new connections, black-holing, and dropping established ones.
 *
 * It runs on plain Node timers: it serves real clients in real time, whatever clock the tests use.
 *
 * @internal
 */
import * as Net from "node:net"

/** What happens to new connections; the public module documents each. @internal */
export type Mode = "forward" | "refuse" | "reset" | "blackHole"

/** @internal */
export interface ServerStats {
  readonly accepted: number
  readonly forwarded: number
  readonly reset: number
  readonly blackHoled: number
  readonly dropped: number
  readonly refusals: number
  readonly mode: Mode
  readonly open: number
}

interface Pair {
  readonly client: Net.Socket
  readonly upstream: Net.Socket | undefined
}

interface MutableStats {
  accepted: number
  forwarded: number
  reset: number
  blackHoled: number
  dropped: number
  refusals: number
}

const emptyStats = (): MutableStats => ({ accepted: 0, forwarded: 0, reset: 0, blackHoled: 0, dropped: 0, refusals: 0 })

/** @internal */
export interface TcpFaultServerOptions {
  readonly upstreamHost: string
  readonly upstreamPort: number
}

/** @internal */
export class TcpFaultServer {
  readonly #options: TcpFaultServerOptions
  readonly #pairs = new Set<Pair>()
  /** Writes held back while black-holing established connections; flushed when the mode changes. */
  #held: Array<() => void> = []
  #server: Net.Server | undefined
  #port = 0
  #mode: Mode = "forward"
  #timer: ReturnType<typeof setTimeout> | undefined
  #stats: MutableStats = emptyStats()
  #closed = false

  private constructor(options: TcpFaultServerOptions) {
    this.#options = options
  }

  static async start(options: TcpFaultServerOptions): Promise<TcpFaultServer> {
    const proxy = new TcpFaultServer(options)
    await proxy.#listen(0)
    return proxy
  }

  get port(): number {
    return this.#port
  }

  get mode(): Mode {
    return this.#mode
  }

  stats(): ServerStats {
    return { ...this.#stats, mode: this.#mode, open: this.#pairs.size }
  }

  resetStats(): void {
    this.#stats = emptyStats()
  }

  /**
   * Switches to `mode`; with `steps` following, each runs for its duration in turn and the proxy forwards again after
   * the last. Any schedule still running is replaced.
   */
  async schedule(steps: ReadonlyArray<readonly [Mode, number]>): Promise<void> {
    this.#clearTimer()
    const [first, ...rest] = steps
    if (first === undefined) return this.#apply("forward")
    await this.#apply(first[0])
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.schedule(rest).catch(() => {})
    }, first[1])
  }

  async set(mode: Mode): Promise<void> {
    this.#clearTimer()
    await this.#apply(mode)
  }

  /** Destroys every established connection on both sides; with `reset` the client gets an RST, else a FIN. */
  drop(how: "reset" | "close"): number {
    const pairs = [...this.#pairs]
    for (const pair of pairs) {
      if (how === "reset") pair.client.resetAndDestroy()
      else pair.client.destroy()
      if (pair.upstream !== undefined) pair.upstream.destroy()
      this.#pairs.delete(pair)
    }
    this.#stats.dropped += pairs.length
    return pairs.length
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#clearTimer()
    this.drop("close")
    await this.#unlisten()
  }

  // -------------------------------------------------------------------------------------------------------------------

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
  }

  async #apply(mode: Mode): Promise<void> {
    if (this.#closed) return
    const previous = this.#mode
    this.#mode = mode
    if (mode !== "blackHole") {
      const held = this.#held
      this.#held = []
      for (const release of held) release()
    }
    if (mode === "refuse" && previous !== "refuse") {
      this.#stats.refusals += 1
      await this.#unlisten()
    } else if (mode !== "refuse" && this.#server === undefined) {
      await this.#listen(this.#port)
    }
  }

  #listen(port: number): Promise<void> {
    const server = Net.createServer({ noDelay: true }, (socket) => this.#accept(socket))
    return new Promise((resolve, reject) => {
      server.once("error", reject)
      // The same port again after refusing: clients keep the endpoint they were given.
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject)
        this.#server = server
        this.#port = (server.address() as Net.AddressInfo).port
        resolve()
      })
    })
  }

  #unlisten(): Promise<void> {
    const server = this.#server
    this.#server = undefined
    if (server === undefined) return Promise.resolve()
    // Stops accepting at once; the callback would wait for established connections, which stay up.
    return new Promise((resolve) => {
      server.close()
      resolve()
    })
  }

  #accept(client: Net.Socket): void {
    this.#stats.accepted += 1
    client.on("error", () => {})
    switch (this.#mode) {
      case "refuse":
      case "reset": {
        // "refuse" only when a connection raced the listener's closing.
        this.#stats.reset += 1
        client.resetAndDestroy()
        return
      }
      case "blackHole": {
        this.#stats.blackHoled += 1
        const pair: Pair = { client, upstream: undefined }
        this.#pairs.add(pair)
        client.resume()
        client.once("close", () => this.#pairs.delete(pair))
        return
      }
      case "forward":
        return this.#forward(client)
    }
  }

  #forward(client: Net.Socket): void {
    this.#stats.forwarded += 1
    const upstream = Net.connect({ host: this.#options.upstreamHost, port: this.#options.upstreamPort, noDelay: true })
    const pair: Pair = { client, upstream }
    this.#pairs.add(pair)
    upstream.on("error", () => client.resetAndDestroy())
    client.once("close", () => {
      this.#pairs.delete(pair)
      upstream.destroy()
    })
    upstream.once("close", () => {
      this.#pairs.delete(pair)
      client.destroy()
    })
    this.#pipe(client, upstream)
    this.#pipe(upstream, client)
  }

  /**
   * Copies `from` to `to` with backpressure. While black-holing, established connections stall (as in a partition
   * TCP outlives) and deliver what they held once the proxy forwards again.
   */
  #pipe(from: Net.Socket, to: Net.Socket): void {
    from.on("data", (chunk: Buffer) => {
      if (this.#mode === "blackHole") {
        from.pause()
        this.#held.push(() => {
          if (!to.destroyed) to.write(chunk)
          if (!from.destroyed) from.resume()
        })
        return
      }
      if (!to.write(chunk)) {
        from.pause()
        to.once("drain", () => from.resume())
      }
    })
    from.once("end", () => {
      if (this.#mode === "blackHole") this.#held.push(() => to.end())
      else to.end()
    })
  }
}
