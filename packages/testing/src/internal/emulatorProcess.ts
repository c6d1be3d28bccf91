/**
 * Starting, watching and stopping an emulator child process.
 *
 * Timing here uses plain timers rather than the Effect `Clock`: the layers are often built under `@effect/vitest`'s
 * `TestClock`, where an `Effect.sleep` would wait for a clock nobody advances.
 *
 * @internal
 */
import { Effect, type Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import * as Net from "node:net"
import { fileURLToPath } from "node:url"
import { EmulatorStartError } from "../Emulator.ts"

/** @internal */
export interface LaunchSpec {
  /** Shown in errors and output, e.g. `kinesis-local`. */
  readonly name: string
  /** The ports to listen on; `undefined` entries get a free loopback port. */
  readonly ports: ReadonlyArray<number | undefined>
  /** Node arguments (script first) and environment for the given ports. */
  readonly command: (ports: ReadonlyArray<number>) => {
    readonly args: ReadonlyArray<string>
    readonly env: Readonly<Record<string, string>>
  }
  /** Resolves true once the emulator answers on the given ports. Must not reject. */
  readonly probe: (ports: ReadonlyArray<number>, signal: AbortSignal) => Promise<boolean>
  readonly startupTimeoutMillis: number
  readonly stopGraceMillis: number
  readonly outputLines: number
}

/** @internal */
export interface Running {
  readonly ports: ReadonlyArray<number>
  readonly pid: number
  readonly supervisorPid: number
  readonly output: () => string
}

const MAX_LINE = 16 * 1024

/**
 * Keeps the last `capacity` lines of a process's stdout and stderr, interleaved in arrival order.
 *
 * @internal
 */
export class OutputBuffer {
  readonly #capacity: number
  readonly #lines: Array<string> = []
  readonly #partial = new Map<string, string>()

  constructor(capacity: number) {
    this.#capacity = Math.max(1, capacity)
  }

  push(source: string, chunk: string): void {
    const text = (this.#partial.get(source) ?? "") + chunk
    const parts = text.split(/\r?\n/)
    // A line that never ends must not grow without bound either.
    this.#partial.set(source, (parts.pop() ?? "").slice(-MAX_LINE))
    for (const line of parts) this.#add(line.length > MAX_LINE ? line.slice(0, MAX_LINE) + "…" : line)
  }

  note(line: string): void {
    this.#add(line)
  }

  text(): string {
    const pending = [...this.#partial.values()].filter((line) => line.length > 0)
    return [...this.#lines, ...pending].join("\n")
  }

  #add(line: string): void {
    this.#lines.push(line)
    if (this.#lines.length > this.#capacity) this.#lines.splice(0, this.#lines.length - this.#capacity)
  }
}

interface ExitInfo {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

interface Launched {
  readonly child: ChildProcess
  readonly output: OutputBuffer
  readonly exited: Promise<ExitInfo>
  readonly emulatorPid: Promise<number | undefined>
  exit: ExitInfo | undefined
  pid: number | undefined
  stopped: Promise<void> | undefined
}

// Run from sources (tests, Node's type stripping) the supervisor is a .ts file; from the build, a .js file.
const supervisorPath = fileURLToPath(
  new URL(import.meta.url.endsWith(".ts") ? "./supervisor.ts" : "./supervisor.js", import.meta.url)
)

// The last line of defence for a parent that exits normally without closing the layer's scope (e.g. a test runner
// calling process.exit). A SIGKILLed parent runs no hooks; the supervisor handles that.
const live = new Set<Launched>()
let exitHookInstalled = false
const installExitHook = () => {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on("exit", () => {
    for (const launched of live) {
      signalPid(launched.pid, "SIGKILL")
      signalPid(launched.child.pid, "SIGKILL")
    }
  })
}

const signalPid = (pid: number | undefined, signal: NodeJS.Signals): void => {
  if (pid === undefined) return
  try {
    process.kill(pid, signal)
  } catch {
    // already gone
  }
}

/**
 * Whether a process with this pid is running. A zombie (exited, not yet reaped — orphans wait for init to reap them,
 * which some container inits do late or never) counts as gone. EPERM means it runs but is not ours.
 *
 * @internal
 */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ..." — the state follows the last ")".
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  } catch {
    return true
  }
}

const delay = (millis: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, millis)
    signal?.addEventListener("abort", () => {
      clearTimeout(timer)
      resolve()
    }, { once: true })
  })

const withinMillis = <A>(promise: Promise<A>, millis: number): Promise<A | undefined> =>
  new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), millis)
    void promise.then((value) => {
      clearTimeout(timer)
      resolve(value)
    })
  })

/**
 * Free loopback ports: listen on port 0, read the port, close. All are held open together so they differ; a race
 * with another process remains possible and is handled by retrying the launch.
 *
 * @internal
 */
export const freePorts = (count: number): Promise<ReadonlyArray<number>> =>
  new Promise((resolve, reject) => {
    const servers: Array<Net.Server> = []
    const ports: Array<number> = []
    const closeAll = () => Promise.all(servers.map((server) => new Promise((done) => server.close(done))))
    const next = () => {
      if (ports.length === count) {
        void closeAll().then(() => resolve(ports))
        return
      }
      const server = Net.createServer()
      servers.push(server)
      server.once("error", (error) => void closeAll().then(() => reject(error)))
      server.listen(0, "127.0.0.1", () => {
        ports.push((server.address() as Net.AddressInfo).port)
        next()
      })
    }
    next()
  })

const launch = (spec: LaunchSpec, ports: ReadonlyArray<number>): Launched => {
  const { args, env } = spec.command(ports)
  const output = new OutputBuffer(spec.outputLines)
  const child = spawn(
    process.execPath,
    [supervisorPath, String(spec.stopGraceMillis), process.execPath, ...args],
    { stdio: ["pipe", "pipe", "pipe", "pipe"], env: { ...process.env, ...env } }
  )
  let resolvePid: (pid: number | undefined) => void = () => {}
  const emulatorPid = new Promise<number | undefined>((resolve) => (resolvePid = resolve))
  const launched: Launched = {
    child,
    output,
    exit: undefined,
    pid: undefined,
    stopped: undefined,
    emulatorPid,
    exited: new Promise<ExitInfo>((resolve) => {
      child.once("exit", (code, signal) => {
        launched.exit = { code, signal }
        live.delete(launched)
        resolvePid(undefined)
        resolve(launched.exit)
      })
    })
  }
  child.once("error", (error) => output.note(`[${spec.name}] cannot start: ${error.message}`))
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => output.push("stdout", chunk))
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => output.push("stderr", chunk))
  const pidPipe = child.stdio[3]
  if (pidPipe !== null && pidPipe !== undefined && "setEncoding" in pidPipe) {
    let text = ""
    pidPipe.setEncoding("utf8")
    pidPipe.on("data", (chunk: string) => {
      text += chunk
      const line = text.split("\n")[0]
      if (text.includes("\n") && line !== undefined) {
        launched.pid = Number(line)
        resolvePid(launched.pid)
      }
    })
    pidPipe.on("end", () => resolvePid(launched.pid))
  }
  // The supervisor's stdin is never written; it closes when this process dies, which is the signal to stop. It must
  // not keep this process alive, nor must the output pipes: the layer's scope decides the emulator's lifetime.
  child.stdin?.on("error", () => {})
  child.unref()
  for (const stream of child.stdio) {
    if (stream !== null && stream !== undefined && "unref" in stream && typeof stream.unref === "function") {
      stream.unref()
    }
  }
  installExitHook()
  live.add(launched)
  return launched
}

const stop = (launched: Launched, graceMillis: number): Promise<void> =>
  launched.stopped ??= (async () => {
    if (launched.exit === undefined) {
      launched.child.kill("SIGTERM")
      // The supervisor escalates to SIGKILL after the grace period; allow it that long, plus slack.
      const exited = await withinMillis(launched.exited, graceMillis + 2_000)
      if (exited === undefined) {
        signalPid(launched.pid, "SIGKILL")
        launched.child.kill("SIGKILL")
        await withinMillis(launched.exited, 2_000)
      }
    }
    // A supervisor that died abnormally may have left the emulator behind.
    if (launched.pid !== undefined && isAlive(launched.pid)) {
      signalPid(launched.pid, "SIGKILL")
      for (let i = 0; i < 40 && isAlive(launched.pid); i++) await delay(50)
    }
    live.delete(launched)
  })()

type Outcome =
  | { readonly _tag: "Ready"; readonly pid: number }
  | { readonly _tag: "Exited"; readonly exit: ExitInfo }
  | { readonly _tag: "TimedOut" }

const waitReady = async (
  spec: LaunchSpec,
  launched: Launched,
  ports: ReadonlyArray<number>,
  signal: AbortSignal
): Promise<Outcome> => {
  const deadline = Date.now() + spec.startupTimeoutMillis
  while (!signal.aborted) {
    if (launched.exit !== undefined) return { _tag: "Exited", exit: launched.exit }
    if (await spec.probe(ports, signal)) {
      const pid = await withinMillis(launched.emulatorPid, 1_000)
      if (pid !== undefined && launched.exit === undefined) return { _tag: "Ready", pid }
      // Something answered, but not our emulator (its supervisor is gone): someone else holds the port.
      if (launched.exit !== undefined) return { _tag: "Exited", exit: launched.exit }
    }
    if (Date.now() >= deadline) return { _tag: "TimedOut" }
    await Promise.race([delay(50, signal), launched.exited])
  }
  return { _tag: "TimedOut" }
}

const describeExit = (exit: ExitInfo): string =>
  exit.signal !== null ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`

const addressInUse = (output: string): boolean => /EADDRINUSE|address already in use/i.test(output)

/**
 * Starts the emulator under a supervisor and waits until it answers; stops it (SIGTERM, then SIGKILL after the
 * grace period) when the scope closes. With automatically chosen ports, a launch that loses a port race is retried
 * on fresh ports.
 *
 * @internal
 */
export const start = (spec: LaunchSpec): Effect.Effect<Running, EmulatorStartError, Scope.Scope> => {
  // A port race can only be lost on ports chosen here; with a pinned port, retrying would just fail again.
  const pinned = spec.ports.filter((port) => port !== undefined).length
  const attempt = (remaining: number): Effect.Effect<Running, EmulatorStartError, Scope.Scope> =>
    Effect.gen(function*() {
      const free = yield* Effect.tryPromise({
        try: () => freePorts(spec.ports.filter((port) => port === undefined).length),
        catch: (cause) =>
          new EmulatorStartError({
            emulator: spec.name,
            message: `${spec.name}: cannot find free loopback ports: ${String(cause)}`,
            output: ""
          })
      })
      let nextFree = 0
      const ports = spec.ports.map((port) => port ?? free[nextFree++] ?? 0)
      const launched = yield* Effect.acquireRelease(
        Effect.sync(() => launch(spec, ports)),
        (launched) => Effect.promise(() => stop(launched, spec.stopGraceMillis))
      )
      const outcome = yield* Effect.promise((signal) => waitReady(spec, launched, ports, signal))
      if (outcome._tag === "Ready") {
        return {
          ports,
          pid: outcome.pid,
          supervisorPid: launched.child.pid ?? -1,
          output: () => launched.output.text()
        } satisfies Running
      }
      yield* Effect.promise(() => stop(launched, spec.stopGraceMillis))
      const output = launched.output.text()
      if (outcome._tag === "Exited" && pinned === 0 && remaining > 0 && addressInUse(output)) {
        return yield* attempt(remaining - 1)
      }
      const reason = outcome._tag === "Exited"
        ? `${describeExit(outcome.exit)} before answering on port ${ports.join("/")}`
        : `did not answer on port ${ports.join("/")} within ${spec.startupTimeoutMillis} ms`
      return yield* new EmulatorStartError({
        emulator: spec.name,
        message: `${spec.name} ${reason}\n--- last output ---\n${output}`,
        output
      })
    })
  return attempt(3)
}
