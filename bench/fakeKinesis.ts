/**
 * What the producer benchmarks share: a loopback server that acknowledges PutRecords without
 * storing (in a child process: `startFakeServer`), the records written, the raw AWS SDK loop they
 * are compared with, and the measurement.
 *
 * The server answers with synthetic sequence numbers and a fixed list of 256 shards, so that
 * neither an emulator nor the server's CPU is measured.
 */
import {
  KinesisClient,
  ListShardsCommand,
  PutRecordsCommand,
  type PutRecordsRequestEntry
} from "@aws-sdk/client-kinesis"
import { NodeHttpHandler } from "@smithy/node-http-handler"
import { spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { Agent, createServer } from "node:http"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"

export const SHARDS = 256
const SHARD_BITS = 8n
export const STREAM = "bench"
export const RECORD_BYTES = 100
export const BATCH = 500
export const IN_FLIGHT = 16
export const credentials = { accessKeyId: "bench", secretAccessKey: "bench" }

// ---------------------------------------------------------------------------------------------------
// The fake-ack server (child process)

const runFakeServer = () => {
  const span = (1n << 128n) / BigInt(SHARDS)
  const shardId = (i: number) => `shardId-${String(i).padStart(12, "0")}`
  const shards = Array.from({ length: SHARDS }, (_, i) => ({
    ShardId: shardId(i),
    HashKeyRange: {
      StartingHashKey: (span * BigInt(i)).toString(),
      EndingHashKey: (i === SHARDS - 1 ? (1n << 128n) - 1n : span * BigInt(i + 1) - 1n).toString()
    },
    SequenceNumberRange: { StartingSequenceNumber: "1" }
  }))
  let sequence = 10n ** 20n
  // What the bench reads through `serverStats`: Kinesis records and their bytes (data plus
  // partition key, as Kinesis counts them) per shard, to show how near the busiest shard came to
  // its limit.
  const shardRecords = new Array<number>(SHARDS).fill(0)
  const shardBytes = new Array<number>(SHARDS).fill(0)
  // And the most records any shard got within one second (a sliding window over the arrival of
  // requests), since the last stats call that asked to start over.
  const arrivals = Array.from({ length: SHARDS }, () => ({ log: [] as Array<number>, head: 0, records: 0 }))
  let busiestSecond = 0
  const requestRecords = new Array<number>(SHARDS).fill(0)
  const arrived = (now: number, touched: Array<number>) => {
    for (const shard of touched) {
      const a = arrivals[shard]!
      a.log.push(now, requestRecords[shard]!)
      a.records += requestRecords[shard]!
      requestRecords[shard] = 0
      while (a.log[a.head]! <= now - 1000) {
        a.records -= a.log[a.head + 1]!
        a.head += 2
      }
      if (a.head > 20_000) {
        a.log = a.log.slice(a.head)
        a.head = 0
      }
      busiestSecond = Math.max(busiestSecond, a.records)
    }
  }
  const server = createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      const target = String(req.headers["x-amz-target"] ?? "")
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8"))
      let out: unknown
      if (target.endsWith(".PutRecords")) {
        const touched: Array<number> = []
        const records = (body.Records as Array<{ PartitionKey: string; ExplicitHashKey?: string; Data: string }>)
          .map((r) => {
            const hash = r.ExplicitHashKey !== undefined
              ? BigInt(r.ExplicitHashKey)
              : BigInt("0x" + createHash("md5").update(r.PartitionKey).digest("hex"))
            const shard = Number(hash >> (128n - SHARD_BITS))
            const bytes = Buffer.byteLength(r.Data, "base64") + Buffer.byteLength(r.PartitionKey)
            shardRecords[shard]!++
            shardBytes[shard]! += bytes
            if (requestRecords[shard] === 0) touched.push(shard)
            requestRecords[shard]!++
            return { SequenceNumber: (sequence++).toString(), ShardId: shardId(shard) }
          })
        arrived(performance.now(), touched)
        out = { FailedRecordCount: 0, Records: records }
      } else if (target.endsWith(".BenchStats")) {
        const cpu = process.cpuUsage()
        out = { cpuMicros: cpu.user + cpu.system, atMs: performance.now(), shardRecords, shardBytes, busiestSecond }
        if (body.startOver === true) busiestSecond = 0
      } else if (target.endsWith(".ListShards")) {
        out = { Shards: shards }
      } else if (target.endsWith(".DescribeStreamSummary")) {
        // The producer reads the stream's largest record once at start.
        out = {
          StreamDescriptionSummary: {
            StreamName: STREAM,
            StreamARN: `arn:aws:kinesis:us-east-1:000000000000:stream/${STREAM}`,
            StreamStatus: "ACTIVE",
            StreamModeDetails: { StreamMode: "PROVISIONED" },
            OpenShardCount: SHARDS,
            RetentionPeriodHours: 24,
            StreamCreationTimestamp: 0,
            EnhancedMonitoring: [],
            MaxRecordSizeInKiB: 1024
          }
        }
      } else {
        res.writeHead(400, { "content-type": "application/x-amz-json-1.1" })
        res.end(JSON.stringify({ __type: "InvalidArgumentException", message: `unsupported ${target}` }))
        return
      }
      res.writeHead(200, { "content-type": "application/x-amz-json-1.1" })
      res.end(JSON.stringify(out))
    })
  })
  server.keepAliveTimeout = 60_000
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    process.stdout.write(`PORT ${typeof address === "object" && address !== null ? address.port : 0}\n`)
  })
}

export const startFakeServer = (): Promise<{ endpoint: string; stop: () => void }> =>
  startServerProcess(fileURLToPath(import.meta.url))

/**
 * Runs `script` (with `args`) as a child process the way this process runs, and resolves once it
 * prints `PORT <n>`: the loopback endpoint of the server it started.
 */
export const startServerProcess = (
  script: string,
  ...args: ReadonlyArray<string>
): Promise<{ endpoint: string; stop: () => void }> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, script, ...args], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    child.on("error", reject)
    child.stdout.setEncoding("utf8")
    child.stdout.on("data", (text: string) => {
      const match = /PORT (\d+)/.exec(text)
      if (match !== null) resolve({ endpoint: `http://127.0.0.1:${match[1]}`, stop: () => child.kill("SIGKILL") })
    })
  })

/** Whether the bench runs from its TypeScript sources, rather than compiled into `build/bench-ts`. */
const fromSources = import.meta.url.endsWith(".ts")

/** Another bench script of this folder, as a child process run the way this one runs. */
export const benchScript = (name: string): string =>
  fileURLToPath(new URL(`./${name}${fromSources ? ".ts" : ".js"}`, import.meta.url))

/**
 * Runs the bench script `name` (with `args`, and `env` added to this process's environment) in a
 * fresh child process the way this process runs, and resolves with the JSON it prints on stdout.
 */
export const jsonFromChild = <A>(
  name: string,
  args: ReadonlyArray<string>,
  env: Record<string, string> = {}
): Promise<A> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, benchScript(name), ...args], {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, ...env }
    })
    let out = ""
    child.stdout.setEncoding("utf8")
    child.stdout.on("data", (text: string) => out += text)
    child.on("error", reject)
    child.on("exit", (code) =>
      code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`${name} ${args.join(" ")} exited ${code}`)))
  })

/** `bench/results`, also when running compiled. */
export const resultsDir = (): string =>
  fileURLToPath(new URL(fromSources ? "./results" : "../../bench/results", import.meta.url))

// ---------------------------------------------------------------------------------------------------
// Inputs

// A few thousand partition keys (customers, devices…), as in the demo: real workloads repeat keys.
export const KEYS = Number(process.env["BENCH_KEYS"] ?? 5000)
const keys = Array.from({ length: KEYS }, (_, i) => `key-${i}-${(i * 2654435761) % 1_000_003}`)
const payloads = Array.from({ length: 4096 }, () => new Uint8Array(randomBytes(RECORD_BYTES)))
export const record = (i: number) => ({ partitionKey: keys[i % keys.length]!, data: payloads[i % payloads.length]! })

export interface Measured {
  readonly records: number
  readonly wallMs: number
  readonly cpuMs: number
  /**
   * Share of the wall time the event loop was busy (`performance.eventLoopUtilization`): near 1,
   * the process is bound by its own main thread; well below, it waits (for the server, a limiter).
   */
  readonly eventLoopBusy?: number
  /** The fake server's CPU time meanwhile (when `measure` was given the server). */
  readonly serverCpuMs?: number
  /**
   * The busiest shard's Kinesis records and bytes per second meanwhile, as shares of the shard
   * limits (1000 records/s, 1 MiB/s): the larger of the two.
   */
  readonly busiestShardShare?: number
}

/** What the fake server counted so far (see `runFakeServer`). */
export interface ServerStats {
  readonly cpuMicros: number
  /** The server's clock when it counted (ms): rates over its own interval, not the caller's. */
  readonly atMs: number
  readonly shardRecords: ReadonlyArray<number>
  readonly shardBytes: ReadonlyArray<number>
  /**
   * The most records one shard got within any one second (by the arrival of requests) since the
   * stats call before that asked to start over (or since the server started).
   */
  readonly busiestSecond: number
}

/** `startOver`: `busiestSecond` counts anew after this call. */
export const serverStats = async (endpoint: string, startOver = false): Promise<ServerStats> => {
  const response = await fetch(endpoint, {
    method: "POST",
    headers: { "x-amz-target": "Kinesis_20131202.BenchStats", "content-type": "application/x-amz-json-1.1" },
    body: JSON.stringify({ startOver })
  })
  return await response.json() as ServerStats
}

export const measure = async (
  records: number,
  run: () => Promise<void>,
  server?: { readonly endpoint: string }
): Promise<Measured> => {
  const before = server === undefined ? undefined : await serverStats(server.endpoint)
  const cpuStart = process.cpuUsage()
  const eluStart = performance.eventLoopUtilization()
  const wallStart = performance.now()
  await run()
  const wallMs = performance.now() - wallStart
  const elu = performance.eventLoopUtilization(eluStart)
  const cpu = process.cpuUsage(cpuStart)
  const measured = { records, wallMs, cpuMs: (cpu.user + cpu.system) / 1000, eventLoopBusy: elu.utilization }
  if (before === undefined) return measured
  const after = await serverStats(server!.endpoint)
  let busiest = 0
  for (let i = 0; i < after.shardRecords.length; i++) {
    const seconds = wallMs / 1000
    const recordShare = (after.shardRecords[i]! - before.shardRecords[i]!) / seconds / 1000
    const byteShare = (after.shardBytes[i]! - before.shardBytes[i]!) / seconds / 1_048_576
    busiest = Math.max(busiest, recordShare, byteShare)
  }
  return { ...measured, serverCpuMs: (after.cpuMicros - before.cpuMicros) / 1000, busiestShardShare: busiest }
}

// ---------------------------------------------------------------------------------------------------
// The baseline

/** A plain AWS SDK loop: PutRecords of `BATCH` records, `IN_FLIGHT` requests at a time. */
export const rawSdkLoop = (endpoint: string, total: number) => {
  const client = new KinesisClient({
    endpoint,
    region: "us-east-1",
    credentials,
    maxAttempts: 1,
    requestHandler: new NodeHttpHandler({ httpAgent: new Agent({ keepAlive: true, maxSockets: 50 }) })
  })
  let next = 0
  // The producer lists the shards before writing; so does this loop, because a second operation
  // makes the SDK's (shared) serde code polymorphic, which alone costs ~0.4 µs per PutRecords
  // record. Without it the comparison would charge a JIT effect to the producer.
  const listed = client.send(new ListShardsCommand({ StreamName: STREAM }))
  const worker = async () => {
    await listed
    while (next < total) {
      const start = next
      const end = Math.min(total, start + BATCH)
      next = end
      const entries: Array<PutRecordsRequestEntry> = []
      for (let i = start; i < end; i++) {
        const r = record(i)
        entries.push({ PartitionKey: r.partitionKey, Data: r.data })
      }
      const out = await client.send(new PutRecordsCommand({ StreamName: STREAM, Records: entries }))
      if ((out.FailedRecordCount ?? 0) > 0) throw new Error("unexpected failed records")
    }
  }
  return Promise.all(Array.from({ length: IN_FLIGHT }, worker)).then(() => client.destroy())
}

if (import.meta.main) runFakeServer()
