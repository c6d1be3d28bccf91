/**
 * The producer of the chaos run, as its own process: records with unique ids and a per-key counter over a few hundred
 * keys, at a paced rate, through the runner's Kinesis fault proxy. Every acknowledgement — id, key, counter, shard,
 * sequence number, sub-sequence number, time — is appended to a JSONL file as it arrives; failed records are written
 * with the error's tag. It exits 0 once every record has settled, 1 if the producer itself failed.
 */
import { Client, Serde } from "@effect-kinesis/core"
import { Producer } from "@effect-kinesis/producer"
import { Cause, Effect, Exit } from "effect"
import { openSync, writeSync } from "node:fs"
import type { ProducerConfig } from "./protocol.ts"

const config = JSON.parse(process.argv[2] ?? "{}") as ProducerConfig

process.stdin.on("end", () => process.kill(process.pid, "SIGKILL"))
process.stdin.on("error", () => process.kill(process.pid, "SIGKILL"))
process.stdin.resume()

const acks = openSync(config.acksFile, "a")

// mulberry32: keys drawn from the run's seed, so that a replay writes the same records.
let state = config.seed >>> 0
const random = () => {
  state = (state + 0x6d2b79f5) >>> 0
  let t = state
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

let acked = 0
let failed = 0

const program = Effect.gen(function*() {
  const producer = yield* Producer.make({
    stream: config.stream,
    serde: Serde.string,
    settings: { aggregate: true, lingerTime: "100 millis" }
  })
  const counters = new Map<string, number>()
  const started = Date.now()
  let inFlight = 0
  let id = 0
  while (Date.now() - started < config.durationMillis) {
    const due = Math.floor(((Date.now() - started) / 1000) * config.rate)
    for (; id < due; id++) {
      const k = `key-${Math.floor(random() * config.keys)}`
      const n = (counters.get(k) ?? 0) + 1
      counters.set(k, n)
      const record = { partitionKey: k, data: JSON.stringify({ id, k, n }) }
      const result = yield* producer.produceAsync(record)
      const current = id
      inFlight++
      yield* result.pipe(
        Effect.matchEffect({
          onSuccess: (ack) =>
            Effect.sync(() => {
              acked++
              writeSync(
                acks,
                `{"id":${current},"k":"${k}","n":${n},"s":"${ack.shardId}","q":"${ack.sequenceNumber}",`
                  + `"u":${ack.subSequenceNumber},"t":${Date.now()}}\n`
              )
            }),
          onFailure: (error) =>
            Effect.sync(() => {
              failed++
              writeSync(acks, `{"id":${current},"k":"${k}","n":${n},"fail":"${error._tag}","t":${Date.now()}}\n`)
            })
        }),
        Effect.ensuring(Effect.sync(() => inFlight--)),
        Effect.forkChild
      )
    }
    yield* Effect.sleep("20 millis")
  }
  // Every record settles within the producer's record TTL; this only waits for the last ones.
  while (inFlight > 0) yield* Effect.sleep("50 millis")
  return id
})

const exit = await Effect.runPromiseExit(
  program.pipe(
    Effect.scoped,
    Effect.provide(
      Client.layer({
        endpoint: config.kinesisEndpoint,
        region: config.region,
        credentials: config.credentials,
        httpHandler: "http1"
      })
    )
  )
)
if (Exit.isFailure(exit)) {
  process.stderr.write(`producer failed:\n${Cause.pretty(exit.cause)}\n`)
  process.exit(1)
}
process.stdout.write(JSON.stringify({ offered: exit.value, acked, failed }) + "\n")
process.exit(0)
