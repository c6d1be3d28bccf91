/**
 * The whole library in one process: a producer (KPL aggregation on) writes numbered records to a
 * 4-shard stream while two consumer workers share it through a DynamoDB lease table. Midway one
 * shard is split and one worker is stopped gracefully, so you can watch its leases being handed
 * over and the child shards being picked up once their parent is read to its end. At the end every
 * record id is accounted for.
 *
 *   npm run demo                                  # embedded kinesis-mock and dynalite
 *   npm run demo -- --records 20000 --shards 2
 *   KINESIS_ENDPOINT=http://localhost:4567 npm run demo   # an emulator you run yourself
 *   npm run demo -- --aws                         # real AWS (default credential chain; costs money)
 *
 * Flags: --records N (default 100000), --shards N (default 4), --rate N records/s (default 5000;
 * 0 = as fast as possible), --keys N partition keys (default 3000), --idle-timeout S (default 60),
 * --metrics cloudwatch|emf: the producer's and the consumers' metrics (KPL/KCL names) published every
 * 5 s, with PutMetricData to a fake CloudWatch endpoint the demo starts (a summary of what it
 * received is printed at the end), or as Embedded Metric Format lines written to a file the demo names.
 *
 * The last line is `produced=… consumed=… unique=… lost=… duplicates=… copies=…`: duplicates are
 * stream records delivered more than once (the consumer's replays), copies are records the producer
 * wrote twice (a retried write that had landed), each delivered once. The exit code is 0 only when
 * nothing acknowledged by Kinesis was lost (duplicates are allowed: delivery is at-least-once).
 */
import { DeleteTableCommand } from "@aws-sdk/client-dynamodb"
import { CloudWatchMetrics, EmbeddedMetrics } from "@effect-kinesis/cloudwatch"
import { Consumer, type ConsumerRecord, type DiagnosticEvent } from "@effect-kinesis/consumer"
import { AdminClient, Client, ExtendedSequenceNumber, Serde } from "@effect-kinesis/core"
import { DynamoDBClient, DynamoDBLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { Producer } from "@effect-kinesis/producer"
import { CloudWatchEndpoint, DynamoEmulator, KinesisEmulator } from "@effect-kinesis/testing"
import { Cause, Effect, Exit, Fiber, Layer, Logger, Stream } from "effect"
import { randomUUID } from "node:crypto"
import { appendFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"

// --- options ---------------------------------------------------------------------------------------

const { values: flags } = parseArgs({
  options: {
    records: { type: "string", default: "100000" },
    shards: { type: "string", default: "4" },
    rate: { type: "string", default: "5000" },
    keys: { type: "string", default: "3000" },
    "idle-timeout": { type: "string", default: "60" },
    metrics: { type: "string" },
    aws: { type: "boolean", default: false }
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
const RECORDS = integer("records", flags.records, 1)
const SHARDS = integer("shards", flags.shards, 1)
const RATE = integer("rate", flags.rate, 0)
const KEYS = integer("keys", flags.keys, 1)
const IDLE_TIMEOUT_MS = integer("idle-timeout", flags["idle-timeout"], 1) * 1000
const METRICS = flags.metrics
if (METRICS !== undefined && METRICS !== "cloudwatch" && METRICS !== "emf") {
  console.error(`--metrics must be cloudwatch or emf, got ${METRICS}`)
  process.exit(2)
}
const PAYLOAD_BYTES = 100
const CHUNK = 500

// Where Kinesis and DynamoDB come from. Real AWS needs an explicit --aws, so that a profile left in
// the environment never makes a demo run create (and pay for) a stream by accident.
const kinesisExternal = process.env.KINESIS_ENDPOINT !== undefined || flags.aws
const dynamoExternal = process.env.DYNAMODB_ENDPOINT !== undefined || flags.aws

const runId = randomUUID().slice(0, 8)
const STREAM = `demo-${runId}`
const APPLICATION = `demo-${runId}`
const WORKERS = ["worker-a", "worker-b"] as const

// --- what the screen shows ---------------------------------------------------------------------------

interface ShardView {
  owner: string
  consumed: number
  lagMs: number | undefined
  state: "open" | "closed" | "ended"
  parents: string
}

const startedAt = performance.now()
const elapsed = () => ((performance.now() - startedAt) / 1000).toFixed(1).padStart(5) + "s"
const shards = new Map<string, ShardView>()
const shardView = (shardId: string): ShardView => {
  let view = shards.get(shardId)
  if (view === undefined) {
    view = { owner: "-", consumed: 0, lagMs: undefined, state: "open", parents: "" }
    shards.set(shardId, view)
  }
  return view
}
const short = (shardId: string) => shardId.replace(/^shardId-0*/, "#").replace(/^#$/, "#0")
const events: Array<string> = []
let phase = "starting"
let submitted = 0
let produced = 0
let produceFailed = 0
let kinesisRecordsPut = 0
let resent = 0
let consumed = 0
let unique = 0
let lastConsumedAt = performance.now()
const rateWindow: Array<readonly [number, number]> = []

// One slot per record id: how often it was consumed (saturating) and whether Kinesis acknowledged it.
const seen = new Uint8Array(RECORDS)
const acked = new Uint8Array(RECORDS)
// Where each id was first consumed (sequence/subsequence number). Consumed again at the same
// position is a duplicate (the consumer delivered a stream record twice); at another position it
// is a copy: the producer wrote the record twice (a retry of a write that had landed).
const firstAt: Array<string | undefined> = new Array(RECORDS)
const copiesAt = new Map<number, Set<string>>()
let duplicated = 0
let copies = 0

const tty = process.stdout.isTTY === true
const note = (line: string) => {
  events.push(`${elapsed()}  ${line}`)
  if (events.length > 8) events.shift()
  // Without a terminal every event is a log line of its own.
  if (!tty) console.log(`${elapsed()}  ${line}`)
}

const consumeRate = (): number => {
  const now = performance.now()
  rateWindow.push([now, consumed])
  // Over the last ~3 s, or since the previous call when calls are further apart.
  while (rateWindow.length > 2 && now - rateWindow[1]![0] >= 3000) rateWindow.shift()
  const [t0, c0] = rateWindow[0]!
  return now - t0 < 1 ? 0 : Math.round((consumed - c0) / ((now - t0) / 1000))
}

const render = (): Array<string> => {
  const lines = [
    `effect-kinesis demo — stream ${STREAM}, ${RECORDS.toLocaleString("en")} records, ${KEYS} keys  [${phase}]`,
    "",
    "  shard  parent  state   owner      consumed     lag"
  ]
  for (const [id, view] of [...shards].sort(([a], [b]) => a.localeCompare(b))) {
    const lag = view.lagMs === undefined ? "-" : `${view.lagMs} ms`
    lines.push(
      `  ${short(id).padEnd(6)} ${view.parents.padEnd(7)} ${view.state.padEnd(7)} ${view.owner.padEnd(10)} `
        + `${String(view.consumed).padStart(8)} ${lag.padStart(9)}`
    )
  }
  const perAggregate = kinesisRecordsPut === 0 ? "-" : (produced / kinesisRecordsPut).toFixed(0)
  lines.push(
    "",
    `  produced ${produced} / ${RECORDS} (${kinesisRecordsPut} Kinesis records, ~${perAggregate} per aggregate)`
      + (resent > 0 ? `, ${resent} re-sent` : "")
      + (produceFailed > 0 ? `, ${produceFailed} FAILED` : ""),
    `  consumed ${consumed} (unique ${unique}), ${consumeRate()} records/s`,
    "",
    ...events.map((e) => `  ${e}`)
  )
  return lines
}

let drawn = 0
const draw = () => {
  const lines = render()
  // Move to the first line drawn last time, clear to the end of the screen, draw again.
  process.stdout.write((drawn > 0 ? `\x1b[${drawn}F\x1b[J` : "") + lines.join("\n") + "\n")
  drawn = lines.length
}
const progressLine = () =>
  console.log(
    `${elapsed()}  [${phase}] produced=${produced}/${RECORDS} consumed=${consumed} unique=${unique} `
      + `rate=${consumeRate()}/s shards: `
      + [...shards].sort(([a], [b]) => a.localeCompare(b)).map(([id, v]) =>
        `${short(id)}:${v.state === "ended" ? "ended" : v.owner}:${v.consumed}`
      ).join(" ")
  )

// --- consumers ---------------------------------------------------------------------------------------

const onDiagnostic = (event: DiagnosticEvent.DiagnosticEvent) =>
  Effect.sync(() => {
    switch (event._tag) {
      case "PollComplete":
        shardView(event.shardId).lagMs = event.millisBehindLatest
        break
      case "LeaseAcquired": {
        shardView(event.shardId).owner = event.workerId
        const from = event.previousOwner === undefined ? "" : ` from ${event.previousOwner}`
        const at = ExtendedSequenceNumber.isSentinel(event.checkpoint)
          ? event.checkpoint.sequenceNumber
          : `…${event.checkpoint.sequenceNumber.slice(-6)}`
        note(`${event.workerId} took ${short(event.shardId)}${from} at ${at}`)
        break
      }
      case "LeaseReleased":
        if (shardView(event.shardId).owner === event.workerId) shardView(event.shardId).owner = "-"
        note(`${event.workerId} released ${short(event.shardId)}`)
        break
      case "LeaseLost":
        if (shardView(event.shardId).owner === event.workerId) shardView(event.shardId).owner = "-"
        note(`${event.workerId} lost ${short(event.shardId)} (${event.reason})`)
        break
      case "ShardEnded": {
        const view = shardView(event.shardId)
        view.state = "ended"
        view.owner = "-"
        note(`${event.workerId} read ${short(event.shardId)} to its end → ${event.childShardIds.map(short).join(", ")}`)
        break
      }
    }
  })

const handle = (record: ConsumerRecord.ConsumerRecord<string>) =>
  Effect.sync(() => {
    const id = Number(record.data.slice(3, record.data.indexOf(";")))
    if (!Number.isSafeInteger(id) || id < 0 || id >= RECORDS) throw new Error(`unexpected record ${record.data}`)
    const at = `${record.sequenceNumber}/${record.subSequenceNumber}`
    if (seen[id] === 0) {
      unique++
      firstAt[id] = at
    } else if (firstAt[id] === at || copiesAt.get(id)?.has(at) === true) duplicated++
    else {
      copies++
      copiesAt.set(id, (copiesAt.get(id) ?? new Set()).add(at))
    }
    if (seen[id]! < 255) seen[id]!++
    consumed++
    lastConsumedAt = performance.now()
    shardView(record.shardId).consumed++
  })

const worker = (workerId: string) =>
  Consumer.consumeWith(handle, {
    stream: STREAM,
    applicationName: APPLICATION,
    workerId,
    deserializer: Serde.string,
    fetch: { pollInterval: "250 millis" },
    // Shorter than the KCL's 10 s take round, so the two workers even out within the demo.
    lease: { takeInterval: "2 seconds" },
    checkpoint: { interval: "1 second" },
    onDiagnostic
  }).pipe(
    // Each worker has its own lease store instance on the shared table, as two processes would.
    Effect.provide(Consumer.layer.pipe(Layer.provide(DynamoDBLeaseRepository.layer({ applicationName: APPLICATION })))),
    Effect.onExit((exit) =>
      Effect.sync(() =>
        note(
          Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause)
            ? `${workerId} stopped`
            : `${workerId} FAILED: ${Cause.pretty(exit.cause).split("\n")[0]}`
        )
      )
    )
  )

// --- the run -----------------------------------------------------------------------------------------

const waitUntil = (condition: () => boolean, timeoutMs: number) =>
  Effect.gen(function*() {
    const deadline = performance.now() + timeoutMs
    while (!condition() && performance.now() < deadline) yield* Effect.sleep("100 millis")
    return condition()
  })

const payload = (id: number) => {
  const head = `id=${id};`
  return head + "x".repeat(Math.max(0, PAYLOAD_BYTES - head.length))
}

const program = Effect.gen(function*() {
  const admin = yield* AdminClient.AdminClient
  const client = yield* Client.Client

  phase = "creating stream"
  yield* admin.createStream(STREAM, { shardCount: SHARDS })
  if (kinesisExternal) yield* Effect.addFinalizer(() => Effect.ignore(admin.deleteStream(STREAM)))
  note(`created ${STREAM} with ${SHARDS} shards`)

  // The lease table, created once before the workers start (each worker's store then finds it).
  yield* DynamoDBLeaseRepository.make({ applicationName: APPLICATION })
  if (dynamoExternal) {
    const { sdk } = yield* DynamoDBClient.DynamoDBClient
    yield* Effect.addFinalizer(() =>
      Effect.ignore(Effect.tryPromise(() => sdk.send(new DeleteTableCommand({ TableName: APPLICATION }))))
    )
  }

  const refreshShards = Stream.runCollect(client.listShards(STREAM)).pipe(
    Effect.tap((listed) =>
      Effect.sync(() => {
        for (const shard of listed) {
          const view = shardView(shard.ShardId!)
          view.parents = [shard.ParentShardId, shard.AdjacentParentShardId].filter((p) => p !== undefined).map(
            (p) => short(p!)
          ).join("+")
          if (shard.SequenceNumberRange?.EndingSequenceNumber !== undefined && view.state === "open") {
            view.state = "closed"
          }
        }
      })
    ),
    Effect.ignore
  )
  yield* refreshShards
  yield* refreshShards.pipe(Effect.andThen(Effect.sleep("1 second")), Effect.forever, Effect.forkScoped)
  yield* (tty ? Effect.sync(draw) : Effect.sync(progressLine)).pipe(
    Effect.andThen(Effect.sleep(tty ? "250 millis" : "5 seconds")),
    Effect.forever,
    Effect.forkScoped
  )

  phase = "starting workers"
  const fibers = new Map<string, Fiber.Fiber<void, unknown>>()
  for (const workerId of WORKERS) fibers.set(workerId, yield* Effect.forkScoped(worker(workerId)))
  // Start producing once both workers hold shards, so the hand-off later has something to hand off.
  const balanced = () => WORKERS.every((w) => [...shards.values()].some((v) => v.owner === w)) || SHARDS === 1
  yield* waitUntil(balanced, 30_000)

  phase = "producing"
  const producer = yield* Producer.make({
    stream: STREAM,
    serializer: Serde.string,
    settings: { aggregate: true, metricsInterval: "500 millis" },
    onMetrics: (metrics) =>
      Effect.sync(() => {
        kinesisRecordsPut += metrics.kinesisRecordsPut
        resent += metrics.retried
      })
  })

  // Midway: split one shard, then stop one worker gracefully (it checkpoints and releases its leases).
  let midway: Fiber.Fiber<void, unknown> | undefined
  const reshardAndHandOff = Effect.gen(function*() {
    const open = [...shards].filter(([, v]) => v.state === "open").map(([id]) => id).sort()
    const target = open.find((id) => shards.get(id)?.owner === "worker-a") ?? open[0]!
    note(`splitting ${short(target)}`)
    yield* admin.splitShard(STREAM, target)
    yield* refreshShards
    note(`split ${short(target)}; stopping worker-b gracefully`)
    yield* Fiber.interrupt(fibers.get("worker-b")!)
  })

  const chunks = Math.ceil(RECORDS / CHUNK)
  const produceStart = performance.now()
  yield* Effect.forEach(
    Array.from({ length: chunks }, (_, i) => i),
    (i) =>
      Effect.gen(function*() {
        const from = i * CHUNK
        const to = Math.min(RECORDS, from + CHUNK)
        if (RATE > 0) {
          const due = produceStart + (from / RATE) * 1000 - performance.now()
          if (due > 0) yield* Effect.sleep(due)
        }
        submitted = Math.max(submitted, to)
        if (midway === undefined && submitted >= RECORDS / 2) {
          midway = yield* Effect.forkScoped(reshardAndHandOff)
        }
        const records = Array.from({ length: to - from }, (_, j) => ({
          partitionKey: `user-${(from + j) % KEYS}`,
          data: payload(from + j)
        }))
        const outcome = yield* Effect.exit(producer.produceChunk(records))
        if (Exit.isSuccess(outcome)) {
          for (let id = from; id < to; id++) acked[id] = 1
          produced += to - from
        } else {
          // produceChunk reports the first failure only; the records are counted as not acknowledged,
          // whether or not some of them were written.
          produceFailed += to - from
          note(`a chunk of ${to - from} records failed: ${Cause.pretty(outcome.cause).split("\n")[0]}`)
        }
      }),
    { concurrency: 32, discard: true }
  )
  note(`produced ${produced} records in ${((performance.now() - produceStart) / 1000).toFixed(1)} s`)
  if (midway !== undefined) {
    const outcome = yield* Fiber.await(midway)
    if (Exit.isFailure(outcome)) note(`resharding/hand-off failed: ${Cause.pretty(outcome.cause).split("\n")[0]}`)
  }

  phase = "draining"
  const allSeen = () => {
    if (unique < produced) return false
    for (let id = 0; id < RECORDS; id++) if (acked[id] === 1 && seen[id] === 0) return false
    return true
  }
  while (!allSeen() && performance.now() - lastConsumedAt < IDLE_TIMEOUT_MS) yield* Effect.sleep("200 millis")
  if (!allSeen()) note(`no progress for ${IDLE_TIMEOUT_MS / 1000} s; giving up`)
  // With few records everything may be consumed before the hand-off shows; wait (briefly) until the
  // remaining worker holds every open shard and the split parent has been read to its end.
  const settled = () =>
    [...shards.values()].every((v) => v.state === "ended" || (v.state === "open" && v.owner === "worker-a"))
  if (!(yield* waitUntil(settled, 30_000))) note("the hand-off did not complete within 30 s")

  phase = "stopping"
  for (const fiber of fibers.values()) yield* Fiber.interrupt(fiber)
  phase = "done"
  if (tty) draw()
  else progressLine()
})

const tally = () => {
  let lost = 0
  for (let id = 0; id < RECORDS; id++) if (acked[id] === 1 && seen[id] === 0) lost++
  return { lost, duplicates: duplicated }
}

// --- environments ------------------------------------------------------------------------------------

const KinesisLive: Layer.Layer<Client.Client | AdminClient.AdminClient, unknown> = kinesisExternal
  ? AdminClient.layer.pipe(Layer.provideMerge(Client.layerConfig))
  : KinesisEmulator.layerClient.pipe(Layer.provide(KinesisEmulator.layer()))

const DynamoLive: Layer.Layer<DynamoDBClient.DynamoDBClient, unknown> = dynamoExternal
  ? DynamoDBClient.layerConfig
  : Layer.unwrap(Effect.map(Effect.service(DynamoEmulator.DynamoEmulator), (d) => DynamoDBClient.layer(d.clientConfig)))
    .pipe(Layer.provide(DynamoEmulator.layer()))

// The consumer's own logs would scroll the live view away; keep warnings and errors as events.
const EventLogger = Logger.layer([
  Logger.make((options) => {
    if (options.logLevel === "Warn" || options.logLevel === "Error" || options.logLevel === "Fatal") {
      note(`${options.logLevel.toLowerCase()}: ${Logger.formatSimple.log(options).slice(0, 160)}`)
    }
  })
])

// --- metrics -----------------------------------------------------------------------------------------

// Short intervals, so that a demo run publishes several (CloudWatch itself would get one a minute).
const METRICS_INTERVAL = "5 seconds"
const emfFile = join(tmpdir(), `effect-kinesis-demo-${runId}.emf.jsonl`)
let metricsSummary: string | undefined

// The collector is provided around the whole program, so the producer and both workers record into
// it; the publisher's layer closes (sending the last interval) before the summary is read.
const withMetrics = <A, E, R>(self: Effect.Effect<A, E, R>) => {
  if (METRICS === "emf") {
    writeFileSync(emfFile, "")
    return self.pipe(
      Effect.provide(
        EmbeddedMetrics.layer({ interval: METRICS_INTERVAL, write: (line) => appendFileSync(emfFile, line + "\n") })
      ),
      Effect.ensuring(Effect.sync(() => {
        metricsSummary = `metrics: Embedded Metric Format lines in ${emfFile}`
      }))
    )
  }
  if (METRICS === "cloudwatch") {
    return Effect.scoped(Effect.gen(function*() {
      const endpoint = yield* CloudWatchEndpoint.make()
      const exit = yield* Effect.exit(
        Effect.provide(self, CloudWatchMetrics.layer({ ...endpoint.clientConfig, interval: METRICS_INTERVAL }))
      )
      const calls = yield* endpoint.calls
      const datums = calls.flatMap((call) => call.datums)
      const names = new Set(datums.map((d) => `${d.namespace}/${d.metricName}`))
      const rejected = (yield* endpoint.rejections).length
      // One headline metric of each side: the KPL's records put (its dimensionless total) and the KCL's records
      // processed (summed over shards), to set beside produced= and consumed= below.
      const total = (name: string, namespace: string, where: (d: CloudWatchEndpoint.Datum) => boolean) =>
        datums.filter((d) => d.metricName === name && d.namespace === namespace && where(d))
          .reduce((n, d) => n + (d.statisticValues?.sum ?? d.value ?? 0), 0)
      metricsSummary =
        `metrics: fake CloudWatch received ${calls.length} PutMetricData calls, ${datums.length} datums, `
        + `${names.size} metrics in ${new Set(calls.map((c) => c.namespace)).size} namespaces; `
        + `KinesisProducerLibrary/UserRecordsPut=${
          total("UserRecordsPut", "KinesisProducerLibrary", (d) => d.dimensions.length === 0)
        } ${APPLICATION}/RecordsProcessed=${total("RecordsProcessed", APPLICATION, () => true)}`
        + (rejected > 0 ? `, REJECTED ${rejected} requests` : "")
      return yield* exit
    }))
  }
  return self
}

console.log(
  `Kinesis: ${kinesisExternal ? process.env.KINESIS_ENDPOINT ?? "AWS" : "embedded kinesis-mock"}; `
    + `DynamoDB: ${dynamoExternal ? process.env.DYNAMODB_ENDPOINT ?? "AWS" : "embedded dynalite"}`
)
const exit = await Effect.runPromiseExit(
  program.pipe(Effect.scoped, withMetrics, Effect.provide(Layer.mergeAll(KinesisLive, DynamoLive, EventLogger)))
)
const seconds = ((performance.now() - startedAt) / 1000).toFixed(1)
const { duplicates, lost } = tally()
if (metricsSummary !== undefined) console.log(metricsSummary)
if (Exit.isFailure(exit)) {
  console.error(Cause.pretty(exit.cause))
  console.log(
    `produced=${produced} consumed=${consumed} unique=${unique} lost=${lost} duplicates=${duplicates} copies=${copies}`
  )
  process.exit(1)
}
console.log("")
console.log(`finished in ${seconds} s; Kinesis records written: ${kinesisRecordsPut}`)
if (resent > 0) {
  // After the split, aggregates routed to the parent's range land on a child shard; the producer
  // sends their user records again (the KCL would drop them), so both copies may be consumed.
  console.log(`${resent} user records were sent again by the producer (retries, re-sent aggregates after the split)`)
}
if (produceFailed > 0) {
  console.log(`${produceFailed} records were not acknowledged by Kinesis (the producer failed them)`)
}
console.log(
  lost === 0
    ? `every acknowledged record was consumed${
      duplicates > 0 ? ` (${duplicates} delivered twice: at-least-once)` : ""
    }${copies > 0 ? `; ${copies} copies written by the producer's retries were consumed too` : ""}`
    : `${lost} acknowledged records were never consumed`
)
console.log(
  `produced=${produced} consumed=${consumed} unique=${unique} lost=${lost} duplicates=${duplicates} copies=${copies}`
)
process.exit(lost === 0 && produceFailed === 0 ? 0 : 1)
