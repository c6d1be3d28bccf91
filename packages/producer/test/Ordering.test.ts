import type { GetRecordsOutput } from "@aws-sdk/client-kinesis"
import { Aggregation, Client, Serde } from "@effect-kinesis/core"
import { Producer } from "@effect-kinesis/producer"
import type { ProducerSettings } from "@effect-kinesis/producer"
import { FaultProxy, KinesisEmulator, StreamFixtures } from "@effect-kinesis/testing"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Result, Stream } from "effect"

const TestLayer = FaultProxy.layer().pipe(Layer.provideMerge(KinesisEmulator.layer()))

const direct = Layer.unwrap(Effect.map(KinesisEmulator.KinesisEmulator, (e) => Client.layer(e.clientConfig)))
const viaProxy = Layer.unwrap(Effect.map(FaultProxy.FaultProxy, (p) => Client.layer(p.clientConfig)))

const KEYS = 200
/** Offers are paced in ticks of this length. */
const TICK_MS = 50

/**
 * The records to produce: keys drawn at random (a fixed seed), so that some keys get records
 * close together; each record's data is its key and its position among its key's records.
 */
const input = (count: number): Array<Producer.ProducerRecord<string>> => {
  const counters = new Array<number>(KEYS).fill(0)
  let seed = 42
  return Array.from({ length: count }, () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648
    const key = seed % KEYS
    return { partitionKey: `key-${key}`, data: `key-${key}#${counters[key]!++}` }
  })
}

/** Each shard's user records (deaggregated) in the order Kinesis stored them. */
const readShards = (stream: string) =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    const shards = yield* Stream.runCollect(client.listShards(stream))
    const out: Array<Array<string>> = []
    for (const shard of shards) {
      const stored: Array<string> = []
      let iterator: string | undefined = yield* client.getShardIterator(stream, {
        shardId: shard.ShardId!,
        type: "TRIM_HORIZON"
      })
      while (iterator !== undefined) {
        const response: GetRecordsOutput = yield* client.getRecords({ ShardIterator: iterator, Limit: 10_000 })
        for (const record of response.Records ?? []) {
          const users = Aggregation.deaggregate({ partitionKey: record.PartitionKey!, data: record.Data! })
          for (const user of Result.getOrThrow(users)) stored.push(new TextDecoder().decode(user.data))
        }
        if ((response.Records ?? []).length === 0 && (response.MillisBehindLatest ?? 0) === 0) break
        iterator = response.NextShardIterator
      }
      out.push(stored)
    }
    return out
  }).pipe(Effect.provide(direct))

interface Outcome {
  /** Distinct records stored. */
  readonly stored: number
  /** Records whose first stored copy comes after the first stored copy of a later record of their key. */
  readonly inversions: number
  readonly duplicates: number
}

/** Every key maps to one shard, so storage order within a shard is the order a reader sees. */
const inversions = (shards: ReadonlyArray<ReadonlyArray<string>>): Outcome => {
  const seen = new Set<string>()
  const highest = new Map<string, number>()
  let inverted = 0
  let duplicates = 0
  for (const shard of shards) {
    for (const data of shard) {
      if (seen.has(data)) {
        duplicates++
        continue
      }
      seen.add(data)
      const [key, n] = data.split("#") as [string, string]
      const counter = Number(n)
      const top = highest.get(key) ?? -1
      if (counter < top) inverted++
      else highest.set(key, counter)
    }
  }
  return { stored: seen.size, inversions: inverted, duplicates }
}

/** Offers the records at `perSecond`, then closes the producer (which flushes everything). */
const producePaced = (
  stream: string,
  records: ReadonlyArray<Producer.ProducerRecord<string>>,
  perSecond: number,
  settings: Partial<ProducerSettings.ProducerSettings>
) =>
  Effect.gen(function*() {
    const failures: Array<string> = []
    yield* Effect.scoped(Effect.gen(function*() {
      const producer = yield* Producer.make({
        stream,
        serde: Serde.string,
        settings,
        onError: (failure) => Effect.sync(() => failures.push(`${failure.record.data}: ${failure.error._tag}`))
      })
      const start = Date.now()
      const perTick = perSecond * TICK_MS / 1000
      for (let i = 0; i < records.length; i += perTick) {
        yield* producer.offerAll(records.slice(i, i + perTick))
        const next = start + ((i / perTick) + 1) * TICK_MS
        const wait = next - Date.now()
        if (wait > 0) yield* Effect.sleep(wait)
      }
    })).pipe(Effect.provide(viaProxy))
    return failures
  })

const latency: Partial<FaultProxy.FaultSettings> = {
  latency: 0,
  latencyJitter: "50 millis",
  faultOperations: ["PutRecords"]
}
const faults: Partial<FaultProxy.FaultSettings> = {
  ...latency,
  throttleRate: 0.05,
  // Half before the write (nothing stored), half after it (stored, answered with an error).
  serverErrorRate: 0.01,
  serverErrorAfterForwardRate: 0.01,
  serverError: "random"
}

layer(TestLayer, { timeout: 90_000, excludeTestServices: true })("Producer per-key order", (it) => {
  // kinesis-local stores at most a few hundred plain records per second on a busy 2-core machine
  // (it answers later than the request timeout at 1,000/s, with or without per-key order), so
  // without aggregation the test offers fewer records, slower, over the same 200 keys.
  const cases = [
    ["random latency", latency, false, 5_000, 250],
    ["random latency, 5% throttling and 2% 5xx", faults, false, 5_000, 250],
    ["aggregated, random latency", latency, true, 20_000, 1000],
    ["aggregated, random latency, 5% throttling and 2% 5xx", faults, true, 20_000, 1000]
  ] as const
  for (const [name, proxySettings, aggregate, count, perSecond] of cases) {
    it.effect(
      `default settings, ${name}: ${count} records over 200 keys at ${perSecond}/s are all stored, each key's in the order offered`,
      () =>
        Effect.gen(function*() {
          const proxy = yield* FaultProxy.FaultProxy
          yield* proxy.reset
          // kinesis-local slows down as a shard fills (see EMULATORS.md): many small shards keep it fast.
          const stream = yield* StreamFixtures.stream({ shardCount: 32 })
          yield* proxy.update(proxySettings)
          const records = input(count)
          const failures = yield* producePaced(stream.streamName, records, perSecond, { aggregate })
          const stats = yield* proxy.stats
          yield* proxy.reset
          const outcome = inversions(yield* readShards(stream.streamName))
          console.log(
            `${name}: ${outcome.inversions} inversions, ${outcome.stored} stored, ${outcome.duplicates} duplicates; ` +
              `proxy: ${stats.requests["PutRecords"] ?? 0} PutRecords, ${stats.throttledRecords} throttled, ` +
              `${stats.injectedServerErrors} 5xx`
          )
          if (proxySettings === faults) {
            assert.isAbove(stats.throttledRecords, 0)
            assert.isAbove(stats.injectedServerErrors, 0)
          }
          assert.deepStrictEqual(failures, [])
          assert.strictEqual(outcome.stored, count)
          assert.strictEqual(outcome.inversions, 0)
        })
    )
  }
})
