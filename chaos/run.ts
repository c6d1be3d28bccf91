/**
 * The chaos run: the library under real failure, across processes.
 *
 *   npm run chaos -- --short            # ~2.5 min: one cycle of the schedule (what CI runs)
 *   npm run chaos                       # ~11 min: six cycles
 *   npm run chaos -- --seed 1234        # replay a schedule
 *   npm run chaos -- --coordination leader   # the same with leader-based lease assignment
 *   flags: --duration S (producing time), --workers N (3), --rate N records/s (150), --keys N (300), --out DIR
 *
 * kinesis-local and dynalite run as child processes (under the testing package's supervisor), each behind a fault
 * proxy. A producer process writes records with unique ids and per-key counters; N worker processes consume them
 * with `consumeWith` on one DynamoDB lease table. On a seeded schedule the runner SIGKILLs workers and restarts them
 * (with the same or a new worker id), stops one and then all of them gracefully, splits and merges shards, and turns
 * faults on Kinesis and on DynamoDB on and off. At the end it checks, and exits 1 if any check fails:
 *
 * - every acknowledged record was processed;
 * - per key, records were first processed in the order Kinesis stored them (sequence numbers within a shard,
 *   parents before children);
 * - no child shard was processed before its parents' last record;
 * - no lease still names a worker after that worker stopped gracefully;
 * - no shard waited longer than expiry + takeInterval for a worker after one kill or stop, twice that under churn;
 * - no worker exited unless told to;
 * - records came again only after a SIGKILL, as the producer's copies, or after a lease expired while DynamoDB
 *   failed (not after a graceful stop, a lease taken from a live worker, or twice in one process).
 *
 * Everything the processes wrote stays in the output directory (default build/chaos/<time>).
 */
import { ScanCommand } from "@aws-sdk/client-dynamodb"
import { AdminClient, Client } from "@effect-kinesis/core"
import { DynamoDbClient, DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { DynamoEmulator, DynamoFaultProxy, FaultProxy, KinesisEmulator } from "@effect-kinesis/testing"
import { Context, Effect, Layer, Stream } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { closeSync, createWriteStream, mkdirSync, openSync, readSync, statSync } from "node:fs"
import * as Path from "node:path"
import { parseArgs } from "node:util"
import { analyze, type Check, type Disruption, type Incarnation, type ShardInfo } from "./analyze.ts"
import type { AckLine, ProcessedLine, ProducerConfig, WorkerConfig } from "./protocol.ts"

// --- options ---------------------------------------------------------------------------------------------------------

const { values: flags } = parseArgs({
  options: {
    short: { type: "boolean", default: false },
    seed: { type: "string" },
    duration: { type: "string" },
    workers: { type: "string", default: "3" },
    rate: { type: "string", default: "150" },
    keys: { type: "string", default: "300" },
    out: { type: "string" },
    coordination: { type: "string", default: "workers" }
  }
})
const integer = (name: string, value: string, min: number): number => {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < min) {
    console.error(`--${name} must be an integer ≥ ${min}, got ${value}`)
    process.exit(2)
  }
  return n
}
const CYCLE_MS = 90_000
const PRODUCE_MS = integer("duration", flags.duration ?? (flags.short ? "90" : "540"), 30) * 1000
const WORKERS = integer("workers", flags.workers, 2)
const RATE = integer("rate", flags.rate, 1)
const KEYS = integer("keys", flags.keys, 1)
const SEED = flags.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : integer("seed", flags.seed, 0)
const DRAIN_MS = flags.short ? 40_000 : 120_000
if (flags.coordination !== "workers" && flags.coordination !== "leader") {
  console.error(`--coordination must be workers or leader, got ${flags.coordination}`)
  process.exit(2)
}
const LEADER = flags.coordination === "leader"
const GRACEFUL_STOP_MS = 30_000
const SHARDS = 4
const root = Path.resolve(import.meta.dirname, "..")
const OUT = Path.resolve(flags.out ?? Path.join(root, "build", "chaos", new Date().toISOString().replace(/[:.]/g, "-")))
mkdirSync(OUT, { recursive: true })

// Fast enough to see several failovers in a short run. Target of a resume after one kill: expiry + takeInterval.
const LEASE = {
  expiry: "4 seconds",
  renewInterval: "1 second",
  takeInterval: "2 seconds",
  scanInterval: "500 millis",
  shardSyncInterval: "5 seconds",
  coordination: LEADER ? "leader" : "workers"
} as const
// In leader mode a killed worker's leases wait for the leader: its next read of the table (every two expiries) sees
// them standing still, the one an expiry later gives them out, and their new owner finds them within an expiry; a
// killed leader's, for its lock (two expiries after its last refresh, seen within two more) and the new leader's two
// reads: seven expiries in all.
const TARGET_MS = LEADER ? 7 * 4_000 : 4_000 + 2_000
const POLL_MS = 250

// mulberry32
let rngState = SEED >>> 0
const random = () => {
  rngState = (rngState + 0x6d2b79f5) >>> 0
  let t = rngState
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const between = (min: number, max: number) => min + Math.floor(random() * (max - min + 1))
const pick = <A>(items: ReadonlyArray<A>): A | undefined => items[Math.floor(random() * items.length)]

const t0 = Date.now()
const at = () => Date.now() - t0
const log = (line: string) => console.log(`${(at() / 1000).toFixed(1).padStart(6)}s  ${line}`)
const sleep = (millis: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, millis)))

// --- JSONL files -------------------------------------------------------------------------------------------------------

/** Reads the complete lines appended to a file since the last call. */
class Tail<A> {
  readonly #path: string
  #offset = 0
  #rest = ""
  readonly lines: Array<A> = []
  constructor(path: string) {
    this.#path = path
  }
  read(): ReadonlyArray<A> {
    let size: number
    try {
      size = statSync(this.#path).size
    } catch {
      return this.lines
    }
    if (size <= this.#offset) return this.lines
    const fd = openSync(this.#path, "r")
    try {
      const buffer = Buffer.alloc(size - this.#offset)
      const read = readSync(fd, buffer, 0, buffer.length, this.#offset)
      this.#offset += read
      const text = this.#rest + buffer.subarray(0, read).toString("utf8")
      const parts = text.split("\n")
      this.#rest = parts.pop() ?? ""
      for (const part of parts) {
        // A process killed mid-write can leave a torn line; it was never complete, so never acted upon.
        try {
          this.lines.push(JSON.parse(part) as A)
        } catch {
          // skipped
        }
      }
    } finally {
      closeSync(fd)
    }
    return this.lines
  }
}

// --- processes ---------------------------------------------------------------------------------------------------------

interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly at: number
}

interface Proc {
  readonly child: ChildProcess
  readonly exited: Promise<Exit>
  exit: Exit | undefined
  output: string
}

const children = new Set<ChildProcess>()

const launch = (script: string, config: unknown, name: string): Proc => {
  const child = spawn(
    process.execPath,
    ["--conditions=@effect-kinesis/source", Path.join(import.meta.dirname, script), JSON.stringify(config)],
    // stdin stays open and unwritten: it closes when this process dies, and the child then kills itself.
    { cwd: root, stdio: ["pipe", "pipe", "pipe"] }
  )
  children.add(child)
  const proc: Proc = {
    child,
    exit: undefined,
    output: "",
    exited: new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        children.delete(child)
        proc.exit = { code, signal, at: at() }
        resolve(proc.exit)
      })
    })
  }
  // Whole, in the output directory (the logs say what the events do not: a hand-off asked or called off, a retry).
  const file = createWriteStream(Path.join(OUT, `output-${name.replace(/[^\w.-]/g, "_")}.log`))
  child.once("close", () => file.end())
  const keep = (chunk: Buffer) => {
    file.write(chunk)
    proc.output = (proc.output + chunk.toString("utf8")).slice(-8_000)
  }
  child.stdout?.on("data", keep)
  child.stderr?.on("data", keep)
  child.once("error", (error) => log(`${name}: cannot start: ${error.message}`))
  return proc
}

const killAll = () => {
  for (const child of children) child.kill("SIGKILL")
}
process.on("exit", killAll)
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    log(`${signal}: stopping everything`)
    killAll()
    process.exit(130)
  })
}

interface WorkerRun {
  readonly label: string
  readonly workerId: string
  readonly slot: number
  readonly proc: Proc
  readonly records: Tail<ProcessedLine>
  readonly events: Tail<{ readonly e: string; readonly t: number }>
  killed: boolean
  stopRequested: boolean
  stopTimedOut: boolean
}

// --- the run ------------------------------------------------------------------------------------------------------------

const program = Effect.gen(function*() {
  console.log(
    `chaos: seed ${SEED}, ${flags.short ? "short" : "long"} run, producing ${PRODUCE_MS / 1000} s at ${RATE} records/s `
      + `over ${KEYS} keys, ${WORKERS} workers, ${SHARDS} shards${LEADER ? ", leader-based assignment" : ""}; `
      + `lease expiry ${LEASE.expiry}, take every `
      + `${LEASE.takeInterval}, poll every ${POLL_MS} ms → resume target ${TARGET_MS} ms + ${POLL_MS} (${
        2 * TARGET_MS
      } `
      + `+ ${POLL_MS} ms under churn); output ${OUT}`
  )
  const kinesis = yield* KinesisEmulator.make()
  const dynamo = yield* DynamoEmulator.make()
  const kinesisProxy = yield* FaultProxy.make().pipe(Effect.provideService(KinesisEmulator.KinesisEmulator, kinesis))
  const dynamoProxy = yield* DynamoFaultProxy.make().pipe(
    Effect.provideService(DynamoEmulator.DynamoEmulator, dynamo)
  )
  const admin = yield* Layer.build(
    KinesisEmulator.layerClient.pipe(Layer.provide(Layer.succeed(KinesisEmulator.KinesisEmulator, kinesis)))
  )
  const sdkDynamo = yield* Effect.acquireRelease(
    Effect.sync(() => DynamoDbClient.makeSdkClient(dynamo.clientConfig)),
    (sdk) => Effect.sync(() => sdk.destroy())
  )
  const runId = SEED.toString(36)
  const STREAM = `chaos-${runId}`
  const APPLICATION = `chaos-${runId}`
  const runAdmin = <A, E>(f: (admin: AdminClient.AdminClient["Service"]) => Effect.Effect<A, E>) =>
    Effect.runPromise(f(Context.get(admin, AdminClient.AdminClient)))
  const listShards = () => Effect.runPromise(Stream.runCollect(Context.get(admin, Client.Client).listShards(STREAM)))

  yield* Context.get(admin, AdminClient.AdminClient).createStream(STREAM, { shardCount: SHARDS })
  // The lease table exists before the workers start, as it would in a deployment.
  // In leader mode, with its owner index: the workers look up their own lease keys in it.
  yield* DynamoDbLeaseRepository.make({
    applicationName: APPLICATION,
    ...(LEADER ? { leaseOwnerIndex: "create" } : {})
  }).pipe(
    Effect.provide(DynamoDbClient.layer(dynamo.clientConfig))
  )
  log(`kinesis-local, dynalite and their fault proxies up; stream ${STREAM} has ${SHARDS} shards`)

  yield* Effect.promise(() =>
    orchestrate({ kinesisProxy, dynamoProxy, runAdmin, listShards, sdkDynamo, STREAM, APPLICATION })
  )
}).pipe(Effect.scoped)

interface Env {
  readonly kinesisProxy: FaultProxy.FaultProxy["Service"]
  readonly dynamoProxy: DynamoFaultProxy.DynamoFaultProxy["Service"]
  readonly runAdmin: <A, E>(f: (admin: AdminClient.AdminClient["Service"]) => Effect.Effect<A, E>) => Promise<A>
  readonly listShards: () => Promise<ReadonlyArray<import("@aws-sdk/client-kinesis").Shard>>
  readonly sdkDynamo: DynamoDbClient.DynamoDbClient["Service"]["sdk"]
  readonly STREAM: string
  readonly APPLICATION: string
}

const orchestrate = async (env: Env): Promise<void> => {
  const { kinesisProxy, dynamoProxy, STREAM, APPLICATION } = env
  const credentials = { accessKeyId: "local", secretAccessKey: "local" }
  const region = "us-east-1"
  const runs: Array<WorkerRun> = []
  const slots: Array<WorkerRun | undefined> = Array.from({ length: WORKERS }, () => undefined)
  const disruptions: Array<Disruption> = []
  const unexpected: Array<string> = []
  const leftovers: Array<string> = []
  const inherited: Array<string> = []
  const timeline: Array<string> = []
  let incarnations = 0
  const note = (line: string) => {
    timeline.push(`+${(at() / 1000).toFixed(1)}s ${line}`)
    log(line)
  }

  const startWorker = (slot: number, workerId: string) => {
    const label = `${workerId}#${++incarnations}`
    const recordsFile = Path.join(OUT, `records-${incarnations}-${workerId}.jsonl`)
    const eventsFile = Path.join(OUT, `events-${incarnations}-${workerId}.jsonl`)
    const config: WorkerConfig = {
      workerId,
      stream: STREAM,
      applicationName: APPLICATION,
      kinesisEndpoint: kinesisProxy.endpoint,
      dynamoEndpoint: dynamoProxy.endpoint,
      region,
      credentials,
      recordsFile,
      eventsFile,
      pollInterval: POLL_MS,
      checkpointInterval: "1 second",
      checkpointBatchSize: 200,
      lease: LEASE
    }
    const run: WorkerRun = {
      label,
      workerId,
      slot,
      proc: launch("worker.ts", config, label),
      records: new Tail(recordsFile),
      events: new Tail(eventsFile),
      killed: false,
      stopRequested: false,
      stopTimedOut: false
    }
    runs.push(run)
    slots[slot] = run
    void run.proc.exited.then((exit) => {
      if (slots[slot] === run) slots[slot] = undefined
      const expected = run.killed ? exit.signal === "SIGKILL" : run.stopRequested && exit.code === 0
      if (!expected && !run.stopTimedOut) {
        const how = exit.signal !== null ? `killed by ${exit.signal}` : `exit code ${exit.code}`
        unexpected.push(`${label}: ${how}\n${run.proc.output.trim().split("\n").slice(-15).join("\n")}`)
        note(`UNEXPECTED: ${label} ended (${how})`)
      }
    })
    return run
  }

  const nextId = (slot: number, previous: string) => (random() < 0.5 ? previous : `w${slot}-${incarnations + 1}`)

  const leasesOwnedBy = async (workerIds: ReadonlySet<string>): Promise<Array<{ shard: string; owner: string }>> => {
    const found: Array<{ shard: string; owner: string }> = []
    let start: Record<string, unknown> | undefined
    do {
      const page = await env.sdkDynamo.send(
        new ScanCommand({ TableName: APPLICATION, ConsistentRead: true, ExclusiveStartKey: start as never })
      )
      for (const item of page.Items ?? []) {
        const owner = item.leaseOwner?.S
        if (owner !== undefined && workerIds.has(owner)) found.push({ shard: item.leaseKey?.S ?? "?", owner })
      }
      start = page.LastEvaluatedKey
    } while (start !== undefined)
    return found
  }

  /** SIGTERM, wait for the exit, then look for leases still naming the workers. */
  const stopGracefully = async (stopping: ReadonlyArray<WorkerRun>) => {
    // A process that has not yet installed its SIGTERM handler would just die: wait until it has (a few seconds).
    for (let i = 0; i < 200 && stopping.some((run) => !booted(run)); i++) await sleep(100)
    for (const run of stopping) {
      run.stopRequested = true
      run.proc.child.kill("SIGTERM")
    }
    await Promise.all(stopping.map(async (run) => {
      const exit = await Promise.race([run.proc.exited, sleep(GRACEFUL_STOP_MS).then(() => undefined)])
      if (exit === undefined) {
        run.stopTimedOut = true
        unexpected.push(`${run.label}: still running ${GRACEFUL_STOP_MS / 1000} s after SIGTERM (SIGKILLed)`)
        note(`UNEXPECTED: ${run.label} did not stop within ${GRACEFUL_STOP_MS / 1000} s`)
        run.proc.child.kill("SIGKILL")
        await run.proc.exited
      }
    }))
    const owned = await leasesOwnedBy(new Set(stopping.filter((run) => !run.stopTimedOut).map((run) => run.workerId)))
    for (const lease of owned) {
      const line = `after stopping ${stopping.map((r) => r.label).join(", ")}: ${lease.shard} owned by ${lease.owner}`
      const holder = lastTaker(lease.shard)
      if (holder !== undefined && holder.killed && !stopping.includes(holder) && holder.workerId === lease.owner) {
        // Taken last by an earlier process with the same worker id, SIGKILLed; the restarted one was stopped before
        // it ever held the lease. Peers take it on expiry (the resume-gap check covers the wait).
        inherited.push(`${line} (last taken by ${holder.label}, SIGKILLed)`)
        note(`lease left by a SIGKILLed process of a stopped worker id: ${lease.shard} owned by ${lease.owner}`)
      } else {
        leftovers.push(line)
        note(`leases left owned by stopped workers: ${lease.shard} owned by ${lease.owner}`)
      }
    }
  }

  /** The process whose LeaseAcquired event for this shard is the latest. */
  const lastTaker = (shard: string): WorkerRun | undefined => {
    let latest: { run: WorkerRun; t: number } | undefined
    for (const run of runs) {
      for (const e of run.events.read() as ReadonlyArray<{ e: string; t: number; s?: string }>) {
        if (e.e === "LeaseAcquired" && e.s === shard && (latest === undefined || e.t > latest.t)) {
          latest = { run, t: e.t }
        }
      }
    }
    return latest?.run
  }

  const booted = (run: WorkerRun) => run.proc.exit !== undefined || run.events.read().some((e) => e.e === "boot")

  const running = () => slots.filter((run): run is WorkerRun => run !== undefined && !run.stopRequested && !run.killed)

  // --- actions ---
  const kill = async () => {
    const run = pick(running())
    if (run === undefined) return
    const started = at()
    run.killed = true
    run.proc.child.kill("SIGKILL")
    note(`SIGKILL ${run.label}`)
    await run.proc.exited
    await sleep(between(1_000, 3_000))
    const restarted = startWorker(run.slot, nextId(run.slot, run.workerId))
    disruptions.push({ kind: "kill", from: started, to: at() })
    note(`restarted slot ${run.slot} as ${restarted.label}`)
  }
  const stopOne = async () => {
    const run = pick(running())
    if (run === undefined) return
    const started = at()
    note(`SIGTERM ${run.label}`)
    await stopGracefully([run])
    note(`${run.label} stopped (exit ${run.proc.exit?.code})`)
    await sleep(between(1_000, 2_000))
    const restarted = startWorker(run.slot, nextId(run.slot, run.workerId))
    disruptions.push({ kind: "stop", from: started, to: at() })
    note(`restarted slot ${run.slot} as ${restarted.label}`)
  }
  const stopAll = async () => {
    const all = running()
    const started = at()
    note(`SIGTERM all workers: ${all.map((r) => r.label).join(", ")}`)
    await stopGracefully(all)
    note(`all stopped`)
    await sleep(2_000)
    for (const run of all) startWorker(run.slot, nextId(run.slot, run.workerId))
    disruptions.push({ kind: "stop-all", from: started, to: at() })
    note(`restarted ${all.length} workers`)
  }
  const openShards = async () =>
    (await env.listShards())
      .filter((shard) => shard.SequenceNumberRange?.EndingSequenceNumber === undefined)
      .sort((a, b) => (BigInt(a.HashKeyRange!.StartingHashKey!) < BigInt(b.HashKeyRange!.StartingHashKey!) ? -1 : 1))
  const split = async () => {
    const started = at()
    const shard = pick(await openShards())
    if (shard === undefined) return
    await env.runAdmin((admin) => admin.splitShard(STREAM, shard.ShardId!))
    disruptions.push({ kind: "split", from: started, to: at() + 10_000 })
    note(`split ${shard.ShardId}`)
  }
  const merge = async () => {
    const started = at()
    const open = await openShards()
    const pairs = open.slice(1).map((shard, i) => [open[i]!, shard] as const).filter(([a, b]) =>
      BigInt(a.HashKeyRange!.EndingHashKey!) + 1n === BigInt(b.HashKeyRange!.StartingHashKey!)
    )
    const pair = pick(pairs)
    if (pair === undefined) return
    await env.runAdmin((admin) => admin.mergeShards(STREAM, pair[0].ShardId!, pair[1].ShardId!))
    disruptions.push({ kind: "merge", from: started, to: at() + 10_000 })
    note(`merged ${pair[0].ShardId} and ${pair[1].ShardId}`)
  }
  const kinesisFaults = {
    getRecordsThrottleRate: 0.2,
    throttleRate: 0.05,
    serverErrorRate: 0.05,
    serverErrorAfterForwardRate: 0.03,
    dropRate: 0.03,
    dropAfterForwardRate: 0.02,
    latency: 20,
    latencyJitter: 80
  } as const
  const dynamoFaults = {
    throttleRate: 0.1,
    serverErrorRate: 0.05,
    serverErrorAfterForwardRate: 0.1,
    dropRate: 0.03,
    dropAfterForwardRate: 0.05,
    latency: 10,
    latencyJitter: 60
  } as const
  const faultPeriod = async (target: "kinesis" | "dynamo" | "both", millis: number, scale: number) => {
    const started = at()
    const scaled = <A extends Record<string, number>>(settings: A): A =>
      Object.fromEntries(
        Object.entries(settings).map(([k, v]) => [k, k.startsWith("latency") ? v : v * scale])
      ) as A
    if (target !== "dynamo") await Effect.runPromise(kinesisProxy.update(scaled(kinesisFaults)))
    if (target !== "kinesis") await Effect.runPromise(dynamoProxy.update(scaled(dynamoFaults)))
    note(`${target} faults on for ${(millis / 1000).toFixed(0)} s (x${scale})`)
    await sleep(millis)
    if (target !== "dynamo") await Effect.runPromise(kinesisProxy.update(FaultProxy.defaultSettings))
    if (target !== "kinesis") await Effect.runPromise(dynamoProxy.update(DynamoFaultProxy.defaultSettings))
    if (target !== "dynamo") disruptions.push({ kind: "kinesis-faults", from: started, to: at() })
    if (target !== "kinesis") disruptions.push({ kind: "dynamo-faults", from: started, to: at() })
    note(`${target} faults off`)
  }

  // --- the schedule: per 90 s cycle, each step at a jittered fraction of the cycle ---
  interface Step {
    readonly at: number
    readonly name: string
    readonly run: () => Promise<void>
  }
  const steps: Array<Step> = []
  const cycles = Math.max(1, Math.round(PRODUCE_MS / CYCLE_MS))
  const cycle = PRODUCE_MS / cycles
  for (let c = 0; c < cycles; c++) {
    const when = (fraction: number) => Math.round(c * cycle + cycle * fraction + between(-1_000, 1_000))
    steps.push(
      // Isolated: nothing else happens within two targets, so the single-kill target applies.
      { at: when(0.06), name: "SIGKILL one worker", run: kill },
      { at: when(0.22), name: "Kinesis faults", run: () => faultPeriod("kinesis", cycle * 0.1, 1) },
      { at: when(0.24), name: "SIGKILL one worker", run: kill },
      { at: when(0.32), name: "DynamoDB faults", run: () => faultPeriod("dynamo", cycle * 0.22, 1) },
      { at: when(0.34), name: "split", run: split },
      // Stops while DynamoDB answers fail or get lost, and while peers take the leases of a killed worker.
      { at: when(0.38), name: "graceful stop of one worker", run: stopOne },
      { at: when(0.44), name: "SIGKILL one worker", run: kill },
      { at: when(0.49), name: "graceful stop of all workers", run: stopAll },
      { at: when(0.60), name: "merge", run: merge },
      { at: when(0.65), name: "SIGKILL (churn)", run: kill },
      { at: when(0.68), name: "SIGKILL (churn)", run: kill },
      { at: when(0.72), name: "Kinesis and DynamoDB faults", run: () => faultPeriod("both", cycle * 0.08, 0.5) },
      { at: when(0.76), name: "graceful stop of one worker", run: stopOne },
      // Isolated again: the last faults and stop are more than two targets earlier.
      { at: when(0.94), name: "SIGKILL one worker", run: kill }
    )
  }
  steps.sort((a, b) => a.at - b.at)
  console.log(`schedule (ms after the producer starts, ${cycles} cycle${cycles > 1 ? "s" : ""}):`)
  for (const step of steps) console.log(`  ${String(step.at).padStart(7)}  ${step.name}`)

  // --- go ---
  for (let slot = 0; slot < WORKERS; slot++) startWorker(slot, `w${slot}`)
  const acksFile = Path.join(OUT, "acks.jsonl")
  const producerConfig: ProducerConfig = {
    stream: STREAM,
    kinesisEndpoint: kinesisProxy.endpoint,
    region,
    credentials,
    acksFile,
    rate: RATE,
    durationMillis: PRODUCE_MS,
    keys: KEYS,
    seed: SEED
  }
  const acks = new Tail<AckLine & { readonly fail?: string }>(acksFile)
  const producerStart = Date.now()
  const producer = launch("producer.ts", producerConfig, "producer")
  note(`producer and ${WORKERS} workers started`)

  const pending = new Set<Promise<void>>()
  let busy = false
  for (const step of steps) {
    await sleep(producerStart + step.at - Date.now())
    // Steps that change membership wait for one another, so that each acts on running workers.
    const exclusive = step.run !== split && step.run !== merge && !step.name.includes("faults")
    if (exclusive && busy) {
      note(`skipped "${step.name}": the previous membership change is still under way`)
      continue
    }
    if (exclusive) busy = true
    const promise = step.run().catch((error: unknown) => note(`step "${step.name}" failed: ${String(error)}`)).finally(
      () => {
        if (exclusive) busy = false
        pending.delete(promise)
      }
    )
    pending.add(promise)
  }
  const producerExit = await producer.exited
  if (producerExit.code !== 0) {
    unexpected.push(`producer: exit ${producerExit.code ?? producerExit.signal}\n${producer.output.slice(-2_000)}`)
  }
  note(`producer done: ${producer.output.trim().split("\n").at(-1)}`)
  await Promise.all(pending)

  // --- drain ---
  const drainStart = Date.now()
  const missing = () => {
    const processed = new Set<number>()
    for (const run of runs) for (const line of run.records.read()) processed.add(line.id)
    let count = 0
    for (const ack of acks.read()) if (ack.fail === undefined && !processed.has(ack.id)) count++
    return count
  }
  let left = missing()
  while (left > 0 && Date.now() - drainStart < DRAIN_MS) {
    await sleep(1_000)
    left = missing()
  }
  note(
    left === 0
      ? `drained in ${((Date.now() - drainStart) / 1000).toFixed(1)} s`
      : `drain timed out: ${left} acknowledged records not processed`
  )
  const runEnd = at()

  const stillRunning = slots.filter((run): run is WorkerRun => run !== undefined)
  note(`final graceful stop of ${stillRunning.map((r) => r.label).join(", ")}`)
  await stopGracefully(stillRunning)
  const finalOwned = (await leasesOwnedBy(new Set(runs.map((run) => run.workerId)))).map((lease) =>
    `${lease.shard} owned by ${lease.owner}`
  )

  // --- checks ---
  const shards: Array<ShardInfo> = (await env.listShards()).map((shard) => ({
    shardId: shard.ShardId!,
    parents: [shard.ParentShardId, shard.AdjacentParentShardId].filter((p): p is string => p !== undefined)
  }))
  const okAcks = acks.read().filter((ack) => ack.fail === undefined)
  const failedAcks = acks.read().length - okAcks.length
  const incarnationsOut: Array<Incarnation> = runs.map((run) => {
    const events = run.events.read()
    const start = events.find((e) => e.e === "start")
    const lost = new Map<string, Array<{ t: number; reason: string }>>()
    for (const e of events as ReadonlyArray<{ e: string; t: number; s?: string; reason?: string }>) {
      if (e.e !== "LeaseLost" || e.s === undefined) continue
      const loss = { t: e.t - t0, reason: e.reason ?? "unknown" }
      const losses = lost.get(e.s)
      if (losses === undefined) lost.set(e.s, [loss])
      else losses.push(loss)
    }
    return {
      label: run.label,
      workerId: run.workerId,
      lines: run.records.read(),
      started: start === undefined ? undefined : start.t - t0,
      ended: run.proc.exit?.at,
      ending: run.killed ? "killed" : run.stopRequested ? "stopped" : "other",
      lost
    }
  })
  // Times in the files are wall-clock; the analysis works in ms since the runner started.
  const rebase = <A extends { readonly t: number }>(line: A): A => ({ ...line, t: line.t - t0 })
  const result = analyze({
    acks: okAcks.map(rebase),
    incarnations: incarnationsOut.map((i) => ({ ...i, lines: i.lines.map(rebase) })),
    shards,
    disruptions,
    targetMillis: TARGET_MS,
    allowanceMillis: POLL_MS,
    runEnd
  })
  const checks: Array<Check> = [
    ...result.checks,
    {
      name: "leases released by stopped workers",
      ok: leftovers.length === 0 && finalOwned.length === 0,
      summary: `${leftovers.length} leases named a gracefully stopped worker right after it exited; `
        + `${finalOwned.length} owned after the final stop`
        + (inherited.length > 0
          ? ` (not counted: ${inherited.length} left by a SIGKILLed process of the same id)`
          : ""),
      details: [
        ...leftovers,
        ...finalOwned.map((lease) => `after the final stop: ${lease}`),
        ...inherited.map((lease) => `not counted: ${lease}`)
      ]
    },
    {
      name: "no unexpected exits",
      ok: unexpected.length === 0,
      summary: `${unexpected.length} processes ended without being told to`,
      details: unexpected
    }
  ]

  const kills = runs.filter((run) => run.killed).length
  const stops = runs.filter((run) => run.stopRequested).length
  const processedTotal = incarnationsOut.reduce((n, i) => n + i.lines.length, 0)
  const kinesisStats = await Effect.runPromise(kinesisProxy.stats)
  const dynamoStats = await Effect.runPromise(dynamoProxy.stats)
  console.log("")
  console.log(`=== chaos report (seed ${SEED}) ===`)
  console.log(`timeline:\n  ${timeline.join("\n  ")}`)
  console.log(
    `produced: ${okAcks.length} acknowledged, ${failedAcks} failed in the producer, over ${PRODUCE_MS / 1000} s `
      + `(${(okAcks.length / (PRODUCE_MS / 1000)).toFixed(0)} records/s)`
  )
  console.log(
    `workers: ${runs.length} processes, ${kills} SIGKILLed, ${stops} stopped gracefully; `
      + `throughput ${(processedTotal / (runEnd / 1000)).toFixed(0)} records/s processed over the run`
  )
  for (const figure of result.figures) console.log(figure)
  console.log(
    `shards: ${shards.length} (${shards.filter((s) => s.parents.length > 0).length} children); `
      + `Kinesis proxy: ${kinesisStats.injectedServerErrors} 5xx, ${kinesisStats.droppedConnections} drops, `
      + `${kinesisStats.throttledRecords} throttled records, ${kinesisStats.throttledGetRecords} throttled GetRecords; `
      + `DynamoDB proxy: ${dynamoStats.throttled} throttled, ${dynamoStats.injectedServerErrors} 5xx before, `
      + `${dynamoStats.serverErrorsAfterForward} 5xx after the write, ${dynamoStats.droppedConnections} drops before, `
      + `${dynamoStats.droppedAfterForward} after`
  )
  const leaseEvents = new Map<string, number>()
  for (const run of runs) {
    for (const e of run.events.read()) leaseEvents.set(e.e, (leaseEvents.get(e.e) ?? 0) + 1)
  }
  console.log(`lease events: ${[...leaseEvents].map(([e, n]) => `${e}=${n}`).join(" ")}`)
  console.log(`total time ${(at() / 1000).toFixed(0)} s`)
  console.log("")
  for (const check of checks) {
    console.log(`${check.ok ? "PASS" : "FAIL"}  ${check.name}: ${check.summary}`)
    for (const detail of check.details) console.log(`        ${detail.split("\n").join("\n        ")}`)
  }
  const failed = checks.filter((check) => !check.ok)
  console.log("")
  console.log(
    failed.length === 0
      ? `chaos: all ${checks.length} checks passed`
      : `chaos: ${failed.length} of ${checks.length} checks FAILED`
  )
  process.exitCode = failed.length === 0 ? 0 : 1
}

await Effect.runPromise(program).catch((error: unknown) => {
  console.error("chaos run failed:", error)
  process.exitCode = 1
})
killAll()
process.exit(process.exitCode ?? 0)
