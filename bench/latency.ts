/**
 * End-to-end latency: put → handler, p50 and p99, for polling and for enhanced fan-out, each with
 * the library (`Consumer.consumeWith`) and a raw SDK loop reading the same records of the same
 * stream at the same time (raw `GetRecords` polling with the same poll interval; raw
 * `SubscribeToShard`). The difference is the library's own overhead, reported as a ratio and in
 * milliseconds.
 *
 *   npm run bench:latency
 *
 * Records are put at a steady rate (`BENCH_RATE` per second, default 200, for `BENCH_SECONDS`,
 * default 20) with their send time in the data, after a warm-up whose records are not counted.
 * Runs against the embedded kinesis-mock, whose behaviour dominates the numbers: it answers
 * `GetRecords` in a few milliseconds and sends a `SubscribeToShard` event about once a second.
 * Prints a table and writes bench/results/latency.json.
 */
import {
  DescribeStreamConsumerCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  RegisterStreamConsumerCommand,
  SubscribeToShardCommand
} from "@aws-sdk/client-kinesis"
import { Consumer, type ConsumerRecord, type DiagnosticEvent, LeaseRepository } from "@effect-kinesis/consumer"
import { Client, Serde } from "@effect-kinesis/core"
import { KinesisEmulator, StreamFixtures } from "@effect-kinesis/testing"
import { Duration, Effect, Fiber } from "effect"
import { performance } from "node:perf_hooks"
import * as Results from "./results.ts"

const SHARDS = 2
const RATE = Number(process.env.BENCH_RATE ?? 200)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20)
const WARMUP_SECONDS = 3
const POLL_INTERVAL_MILLIS = Number(process.env.BENCH_POLL_INTERVAL ?? 200)
// Records per PutRecords call: at 200/s, a call every 20 ms.
const PER_PUT = 4
const RECORD_BYTES = 100

const now = () => performance.timeOrigin + performance.now()

// Data: the send time (float64, ms since the epoch), the record's index, padding.
const encode = (index: number, sentAt: number): Uint8Array => {
  const data = new Uint8Array(RECORD_BYTES)
  const view = new DataView(data.buffer)
  view.setFloat64(0, sentAt)
  view.setUint32(8, index)
  return data
}

/** Latencies of the records past the warm-up, by index (a record seen twice counts once). */
interface Recorder {
  readonly name: string
  readonly latencies: Map<number, number>
  readonly seen: (data: Uint8Array) => void
}

const makeRecorder = (name: string, firstCounted: { value: number }): Recorder => {
  const latencies = new Map<number, number>()
  return {
    name,
    latencies,
    seen: (data) => {
      const receivedAt = now()
      const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
      const index = view.getUint32(8)
      if (index < firstCounted.value || latencies.has(index)) return
      latencies.set(index, receivedAt - view.getFloat64(0))
    }
  }
}

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!

const summary = (recorder: Recorder, expected: number) => {
  const values = [...recorder.latencies.values()].sort((a, b) => a - b)
  const round = (x: number) => Number(x.toFixed(1))
  return {
    name: recorder.name,
    records: values.length,
    missing: expected - values.length,
    p50Ms: round(percentile(values, 50)),
    p90Ms: round(percentile(values, 90)),
    p99Ms: round(percentile(values, 99)),
    meanMs: round(values.reduce((a, b) => a + b, 0) / values.length),
    maxMs: round(values.at(-1) ?? NaN)
  }
}

// Puts `RATE` records a second, each call on a fixed schedule (not after the previous answer), so
// a slow answer does not slow the rate. Returns the number of records put.
const produce = (stream: string, from: number, seconds: number) =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    const calls = Math.round((seconds * RATE) / PER_PUT)
    const spacing = (1000 * PER_PUT) / RATE
    const start = now()
    const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
    for (let call = 0; call < calls; call++) {
      const wait = start + call * spacing - now()
      if (wait > 0) yield* Effect.sleep(Duration.millis(wait))
      const sentAt = now()
      const records = Array.from({ length: PER_PUT }, (_, k) => {
        const index = from + call * PER_PUT + k
        return { PartitionKey: `key-${index % 64}`, Data: encode(index, sentAt) }
      })
      fibers.push(yield* Effect.forkChild(client.putRecords(stream, records)))
    }
    yield* Fiber.joinAll(fibers)
    return calls * PER_PUT
  })

// The polling baseline: per shard, GetRecords in a loop from LATEST, the next call right away
// while the shard is behind and after the poll interval once it is caught up — the library's rule
// (which also spaces calls 200 ms apart, its 5 calls a second).
const rawPolling = (stream: StreamFixtures.TestStream, recorder: Recorder, ready: () => void) =>
  Effect.gen(function*() {
    const sdk = (yield* Client.Client).sdk
    let started = 0
    yield* Effect.forEach(stream.shards, (shard) =>
      Effect.promise(async (signal) => {
        let iterator = (await sdk.send(
          new GetShardIteratorCommand({
            StreamName: stream.streamName,
            ShardId: shard.shardId,
            ShardIteratorType: "LATEST"
          })
        )).ShardIterator
        let first = true
        while (iterator !== undefined && !signal.aborted) {
          const sentAt = performance.now()
          const out = await sdk.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 10_000 }))
          if (first && ++started === stream.shards.length) ready()
          first = false
          for (const record of out.Records ?? []) recorder.seen(record.Data!)
          iterator = out.NextShardIterator
          const behind = (out.MillisBehindLatest ?? 0) > 0
          const delay = Math.max(behind ? 0 : POLL_INTERVAL_MILLIS, sentAt + 200 - performance.now())
          if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay))
        }
      }), { concurrency: "unbounded", discard: true })
  })

// The fan-out baseline: one SDK subscription per shard from LATEST, records handled as each event
// arrives.
const rawFanOut = (stream: StreamFixtures.TestStream, consumerARN: string, recorder: Recorder, ready: () => void) =>
  Effect.gen(function*() {
    const sdk = (yield* Client.Client).sdk
    let started = 0
    yield* Effect.forEach(stream.shards, (shard) =>
      Effect.promise(async (signal) => {
        const out = await sdk.send(
          new SubscribeToShardCommand({
            ConsumerARN: consumerARN,
            ShardId: shard.shardId,
            StartingPosition: { Type: "LATEST" }
          }),
          { abortSignal: signal }
        )
        let first = true
        try {
          for await (const event of out.EventStream!) {
            if (first && ++started === stream.shards.length) ready()
            first = false
            for (const record of event.SubscribeToShardEvent?.Records ?? []) recorder.seen(record.Data!)
          }
        } catch (error) {
          if (!signal.aborted) throw error
        }
      }), { concurrency: "unbounded", discard: true })
  })

const registerConsumer = (stream: StreamFixtures.TestStream, name: string) =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    const arn = yield* client.streamArn(stream.streamName)
    const registered = yield* Effect.promise(() =>
      client.sdk.send(new RegisterStreamConsumerCommand({ StreamARN: arn, ConsumerName: name }))
    )
    const consumerARN = registered.Consumer!.ConsumerARN!
    for (;;) {
      const described = yield* Effect.promise(() =>
        client.sdk.send(new DescribeStreamConsumerCommand({ ConsumerARN: consumerARN }))
      )
      if (described.ConsumerDescription?.ConsumerStatus === "ACTIVE") return consumerARN
      yield* Effect.sleep("100 millis")
    }
  })

// Runs the library and the raw loop side by side on a fresh stream; returns both summaries.
const compare = (mode: "polling" | "enhanced fan-out") =>
  Effect.gen(function*() {
    const stream = yield* StreamFixtures.stream({ shardCount: SHARDS, prefix: "latency" })
    const firstCounted = { value: Number.MAX_SAFE_INTEGER }
    const library = makeRecorder(`Consumer.consumeWith, ${mode}`, firstCounted)
    const raw = makeRecorder(mode === "polling" ? "raw GetRecords loop" : "raw SubscribeToShard", firstCounted)

    // Ready once every shard has answered both readers once: records put later reach both.
    const polled = new Set<string>()
    let rawReady = false
    const onDiagnostic = (event: DiagnosticEvent.DiagnosticEvent) =>
      Effect.sync(() => {
        if (event._tag === "PollComplete") polled.add(event.shardId)
      })
    // With polling, the library's own delay is also measured inside: from the SDK handing over
    // the parsed GetRecords answer (stamped by a middleware on the library's own client) to the
    // handler, per record.
    const answeredAt = new Map<string, number>()
    const internal: Array<number> = []
    const handler = (record: ConsumerRecord.ConsumerRecord<Uint8Array>) =>
      Effect.sync(() => {
        library.seen(record.data)
        const answered = answeredAt.get(record.sequenceNumber)
        if (
          answered !== undefined &&
          new DataView(record.data.buffer, record.data.byteOffset).getUint32(8) >= firstCounted.value
        ) {
          internal.push(now() - answered)
        }
      })
    const emulator = yield* KinesisEmulator.KinesisEmulator
    const stampAnswers = Effect.map(Effect.service(Client.Client), (client) =>
      client.sdk.middlewareStack.add(
        (next) => async (args) => {
          const out = await next(args)
          const records = (out.output as { Records?: Array<{ SequenceNumber?: string }> } | undefined)?.Records
          if (records !== undefined) {
            const at = now()
            for (const record of records) answeredAt.set(record.SequenceNumber!, at)
          }
          return out
        },
        { step: "initialize", name: "benchAnsweredAt" }
      ))
    const consumer = yield* Effect.andThen(
      stampAnswers,
      Consumer.consumeWith(handler, {
        stream: stream.streamName,
        applicationName: `latency-${mode === "polling" ? "polling" : "fanout"}`,
        workerId: "bench",
        deserializer: Serde.bytes,
        initialPosition: "LATEST",
        fetch: { pollInterval: Duration.millis(POLL_INTERVAL_MILLIS) },
        enhancedFanOut: mode === "polling" ? undefined : { registrationPollInterval: "100 millis" },
        onDiagnostic
      })
    ).pipe(
      Effect.provide(Consumer.layer),
      Effect.provide(LeaseRepository.layerMemory),
      // Its own client: the raw loop's answers are not stamped.
      Effect.provide(Client.layer(emulator.clientConfig)),
      Effect.forkChild
    )
    const rawFiber = yield* Effect.forkChild(
      mode === "polling"
        ? rawPolling(stream, raw, () => (rawReady = true))
        : Effect.flatMap(
          registerConsumer(stream, "latency-raw"),
          (arn) => rawFanOut(stream, arn, raw, () => (rawReady = true))
        )
    )
    const waitedFrom = now()
    while (!(rawReady && polled.size === SHARDS)) {
      if (now() - waitedFrom > 60_000) return yield* Effect.die(new Error(`${mode}: readers not ready in 60 s`))
      const exit = consumer.pollUnsafe() ?? rawFiber.pollUnsafe()
      if (exit !== undefined) return yield* Effect.die(new Error(`${mode}: a reader stopped: ${JSON.stringify(exit)}`))
      yield* Effect.sleep("50 millis")
    }

    // Warm-up records are read but not counted (JIT, sockets, the emulator's first answers).
    const warmup = yield* produce(stream.streamName, 0, WARMUP_SECONDS)
    firstCounted.value = warmup
    const counted = yield* produce(stream.streamName, warmup, SECONDS)
    // Until both have every record, or a few seconds after the last put.
    const last = now()
    while (
      (library.latencies.size < counted || raw.latencies.size < counted) && now() - last < 10_000
    ) yield* Effect.sleep("50 millis")
    yield* Fiber.interrupt(consumer)
    yield* Fiber.interrupt(rawFiber)
    internal.sort((a, b) => a - b)
    const inside = internal.length === 0 ? undefined : {
      records: internal.length,
      p50Ms: Number(percentile(internal, 50).toFixed(2)),
      p99Ms: Number(percentile(internal, 99).toFixed(2)),
      maxMs: Number(internal.at(-1)!.toFixed(2))
    }
    return [summary(library, counted), summary(raw, counted), inside] as const
  })

const program = Effect.gen(function*() {
  const rows = []
  const overhead: Record<string, unknown> = {}
  for (const mode of ["polling", "enhanced fan-out"] as const) {
    const [library, raw, inside] = yield* compare(mode)
    rows.push(library, raw)
    overhead[mode] = {
      ...(inside === undefined ? {} : {
        answerToHandlerP50Ms: inside.p50Ms,
        answerToHandlerP99Ms: inside.p99Ms,
        answerToHandlerMaxMs: inside.maxMs
      }),
      p50Ratio: Number((library.p50Ms / raw.p50Ms).toFixed(3)),
      p99Ratio: Number((library.p99Ms / raw.p99Ms).toFixed(3)),
      p50Ms: Number((library.p50Ms - raw.p50Ms).toFixed(1)),
      p99Ms: Number((library.p99Ms - raw.p99Ms).toFixed(1)),
      meanMs: Number((library.meanMs - raw.meanMs).toFixed(1))
    }
  }
  console.table(rows)
  console.log("library over raw (ratio, and added milliseconds):")
  console.table(overhead)

  Results.write("latency", {
    workload: {
      emulator: "kinesis-mock (kinesis-local)",
      shards: SHARDS,
      recordsPerSecond: RATE,
      seconds: SECONDS,
      warmupSeconds: WARMUP_SECONDS,
      recordsPerPutRecords: PER_PUT,
      recordBytes: RECORD_BYTES,
      pollIntervalMillis: POLL_INTERVAL_MILLIS
    },
    results: rows,
    libraryOverRaw: overhead
  })
})

await Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Results.KinesisLive)))
