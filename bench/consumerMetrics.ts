/**
 * What the consumer's KCL metrics cost: CPU per user record of `Consumer.consumeWith` with a
 * `MetricsCollector` at `detailed` (drained every second, as a publisher does) against no
 * collector, runs alternating in one process.
 *
 *   node --conditions=@effect-kinesis/source bench/consumerMetrics.ts
 *
 * Kinesis is a loopback fake in a child process that answers `GetRecords` at once with
 * KPL-aggregated 100-byte records, so that the consumer's own CPU is what is measured: against
 * the emulator a run waits on kinesis-mock most of the time, and the idle CPU of that wait (timers,
 * polls) varies more between runs than metrics cost. Writes bench/results/consumer-metrics.json.
 */
import { Consumer, LeaseRepository } from "@effect-kinesis/consumer"
import { Aggregation, Client, Serde } from "@effect-kinesis/core"
import { Deferred, Effect, Fiber } from "effect"
import { randomBytes } from "node:crypto"
import { mkdirSync, writeFileSync } from "node:fs"
import { createServer } from "node:http"
import { cpus } from "node:os"
import { fileURLToPath } from "node:url"
import { withDrainedCollector } from "./drainedCollector.ts"
import { startServerProcess } from "./fakeKinesis.ts"

const SHARDS = 2
/** GetRecords answers with records per shard; then the shard is caught up (empty answers). */
const BATCHES_PER_SHARD = Number(process.env.BENCH_BATCHES ?? 20)
const AGGREGATES_PER_BATCH = 20
const RECORD_BYTES = 100
const RUNS = Number(process.env.BENCH_RUNS ?? 9)

// ---------------------------------------------------------------------------------------------------
// The fake Kinesis (child process): ListShards, GetShardIterator, GetRecords.

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
  // One aggregate's data per shard, routed inside the shard's range (else the consumer drops it).
  const aggregateOf = (i: number) => {
    const aggregator = Aggregation.makeAggregator({
      explicitHashKey: shards[i]!.HashKeyRange.StartingHashKey,
      maxBytes: 51_200
    })
    let n = 0
    while (
      aggregator.add({
        partitionKey: `user-${n++}`,
        explicitHashKey: shards[i]!.HashKeyRange.StartingHashKey,
        data: new Uint8Array(randomBytes(RECORD_BYTES))
      })
    ) {
      // fills it up to the KPL's 50 KB
    }
    const built = aggregator.build()!
    return {
      data: Buffer.from(built.data).toString("base64"),
      partitionKey: built.partitionKey,
      users: aggregator.count
    }
  }
  const aggregates = shards.map((_, i) => aggregateOf(i))
  let sequence = 10n ** 20n
  const server = createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      const target = String(req.headers["x-amz-target"] ?? "")
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8"))
      let out: unknown
      if (target.endsWith(".ListShards")) {
        out = { Shards: shards }
      } else if (target.endsWith(".GetShardIterator")) {
        out = { ShardIterator: `${shards.findIndex((s) => s.ShardId === body.ShardId)}:0` }
      } else if (target.endsWith(".GetRecords")) {
        const [shard, batch] = String(body.ShardIterator).split(":").map(Number) as [number, number]
        const aggregate = aggregates[shard]!
        const records = batch < BATCHES_PER_SHARD
          ? Array.from({ length: AGGREGATES_PER_BATCH }, () => ({
            SequenceNumber: (sequence++).toString(),
            ApproximateArrivalTimestamp: Date.now() / 1000,
            Data: aggregate.data,
            PartitionKey: aggregate.partitionKey
          }))
          : []
        out = {
          Records: records,
          NextShardIterator: `${shard}:${Math.min(batch + 1, BATCHES_PER_SHARD)}`,
          MillisBehindLatest: batch < BATCHES_PER_SHARD - 1 ? 1000 : 0
        }
      } else if (target.endsWith(".Users")) {
        out = { users: aggregates.reduce((n, a) => n + a.users, 0) / SHARDS }
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

const startFakeServer = () => startServerProcess(fileURLToPath(import.meta.url), "server")

// ---------------------------------------------------------------------------------------------------
// The measurement

const median = (values: ReadonlyArray<number>): number =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

// Every record of every shard through a handler, staged and checkpointed in batches; stops once all
// were handled.
const consume = (expected: number, run: string) =>
  Effect.gen(function*() {
    let count = 0
    const done = yield* Deferred.make<void>()
    const fiber = yield* Consumer.consumeWith(
      () =>
        Effect.suspend(() => {
          if (++count === expected) return Deferred.succeed(done, undefined)
          return Effect.void
        }),
      {
        stream: "bench",
        applicationName: `bench-${run}`,
        workerId: "bench",
        deserializer: Serde.bytes,
        fetch: { pollInterval: "50 millis", maxCallsPerSecond: 1000 }
      }
    ).pipe(
      Effect.provide(Consumer.layer),
      Effect.provide(LeaseRepository.layerMemory),
      Effect.forkChild
    )
    yield* Deferred.await(done)
    yield* Fiber.interrupt(fiber)
  })

const withMetrics = <A, E, R>(self: Effect.Effect<A, E, R>) => withDrainedCollector(self)

const cpuOf = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = process.cpuUsage()
    yield* self
    const cpu = process.cpuUsage(start)
    return (cpu.user + cpu.system) / 1000
  })

const main = async () => {
  const server = await startFakeServer()
  const config = {
    endpoint: server.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "b", secretAccessKey: "b" },
    httpHandler: "http1" as const
  }
  const usersPerAggregate = (await (await fetch(server.endpoint, {
    method: "POST",
    headers: { "x-amz-target": "Kinesis_20131202.Users" },
    body: "{}"
  })).json() as { users: number }).users
  const expected = SHARDS * BATCHES_PER_SHARD * AGGREGATES_PER_BATCH * usersPerAggregate
  console.log(
    `${expected} user records of ${RECORD_BYTES} B per run (${usersPerAggregate} per aggregate), ${RUNS} runs of each`
  )
  const program = Effect.gen(function*() {
    yield* consume(expected, "warm")
    yield* withMetrics(consume(expected, "warm-m"))
    const off: Array<number> = []
    const on: Array<number> = []
    for (let run = 0; run < RUNS; run++) {
      // Alternating which goes first, so that neither always runs on a warmer or busier machine.
      if (run % 2 === 0) {
        off.push(yield* cpuOf(consume(expected, `off-${run}`)))
        on.push(yield* cpuOf(withMetrics(consume(expected, `on-${run}`))))
      } else {
        on.push(yield* cpuOf(withMetrics(consume(expected, `on-${run}`))))
        off.push(yield* cpuOf(consume(expected, `off-${run}`)))
      }
    }
    return { off, on }
  })
  const { off, on } = await Effect.runPromise(program.pipe(Effect.provide(Client.layer(config))))
  server.stop()
  const perRecord = (ms: number) => Number(((ms * 1000) / expected).toFixed(3))
  const pairs = off.map((cpu, i) => on[i]! / cpu)
  const result = {
    offMicrosPerRecord: perRecord(median(off)),
    detailedMicrosPerRecord: perRecord(median(on)),
    ratioOfMedians: Number((median(on) / median(off)).toFixed(3)),
    ratioOfTotals: Number((on.reduce((a, b) => a + b, 0) / off.reduce((a, b) => a + b, 0)).toFixed(3)),
    medianOfPairRatios: Number(median(pairs).toFixed(3))
  }
  console.table([result])
  console.log(`pairs: ${pairs.map((r) => r.toFixed(3)).join(" ")} (target: ratio ≤ 1.05)`)
  const dir = fileURLToPath(new URL("./results", import.meta.url))
  mkdirSync(dir, { recursive: true })
  writeFileSync(
    `${dir}/consumer-metrics.json`,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        environment: { node: process.version, cpu: cpus()[0]?.model ?? "unknown", cores: cpus().length },
        workload: {
          fake: "loopback GetRecords",
          shards: SHARDS,
          batchesPerShard: BATCHES_PER_SHARD,
          aggregatesPerBatch: AGGREGATES_PER_BATCH,
          userRecordsPerRun: expected,
          recordBytes: RECORD_BYTES,
          runs: RUNS
        },
        cpuMsOff: off,
        cpuMsDetailed: on,
        ...result
      },
      null,
      2
    ) + "\n"
  )
}

if (process.argv[2] === "server") runFakeServer()
else await main()
