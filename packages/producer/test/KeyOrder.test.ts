import { Aggregation, HashKey, ShardMap } from "@effect-kinesis/core"
import { ProducerSettings } from "@effect-kinesis/producer"
import { assert, describe, it } from "@effect/vitest"
import { Context, Result } from "effect"
import type * as EngineModule from "../src/internal/engine.ts"
import type * as EntryModule from "../src/internal/entry.ts"
import type * as RecorderModule from "../src/internal/recorder.ts"

// Internal modules (the package does not export them): loaded by path, which the compiler leaves
// as is, where a static import across the src and test projects does not compile.
const { Aggregate, Engine }: typeof EngineModule = await import(
  new URL("../src/internal/engine.ts", import.meta.url).href
)
const { Entry, HashKeyRoute }: typeof EntryModule = await import(
  new URL("../src/internal/entry.ts", import.meta.url).href
)
const { Recorder }: typeof RecorderModule = await import(
  new URL("../src/internal/recorder.ts", import.meta.url).href
)

const shardMap = Result.getOrThrow(ShardMap.fromShards([{
  ShardId: "shardId-000000000000",
  HashKeyRange: { StartingHashKey: "0", EndingHashKey: ((1n << 128n) - 1n).toString() },
  SequenceNumberRange: { StartingSequenceNumber: "0" }
}]))

/**
 * The engine alone, driven by hand: `sent` holds the requests it launched, `answer` settles one
 * with a per-record outcome, `outcomes` what each record settled with.
 */
const harness = (settings: Partial<ProducerSettings.ProducerSettings>) => {
  const engine = new Engine(
    ProducerSettings.resolve({ rateLimit: false, retryBaseDelay: 1, retryMaxDelay: 1, ...settings }),
    shardMap,
    new Recorder("s", Context.empty() as Context.Context<never>, () => 0),
    0
  )
  const sent: Array<EngineModule.Batch> = []
  engine.launch = (batch) => sent.push(batch)
  const outcomes = new Map<string, string>()
  const offer = (
    partitionKey: string,
    data: string,
    now = 0,
    route = new HashKeyRoute(HashKey.fromPartitionKey(partitionKey), Aggregation.partitionKeyBytes(partitionKey))
  ) => {
    const bytes = new TextEncoder().encode(data)
    const entry = new Entry(
      partitionKey,
      bytes,
      bytes.length + route.partitionKeyBytes,
      route,
      (_, error) => outcomes.set(data, error === undefined ? "stored" : error._tag),
      data
    )
    assert.isTrue(engine.tryAccept(entry, now))
  }
  /** User records of a request, in order. */
  const contents = (batch: EngineModule.Batch) =>
    batch.parts.flatMap((part) => part instanceof Aggregate ? part.entries : [part]).map((e) => e.ref as string)
  /** Answers `batch`: the records `refuse` names are throttled, the others stored. */
  const answer = (batch: EngineModule.Batch, now: number, refuse: ReadonlyArray<string> = []) =>
    engine.onResponse(
      batch,
      {
        Records: batch.parts.map((part) => {
          const first = (part instanceof Aggregate ? part.entries[0]! : part).ref as string
          return refuse.includes(first)
            ? { ErrorCode: "ProvisionedThroughputExceededException", ErrorMessage: "slow down" }
            : { ShardId: "shardId-000000000000", SequenceNumber: "1" }
        })
      },
      undefined,
      now
    )
  return { engine, sent, outcomes, offer, contents, answer }
}

describe("per-key order in the engine", () => {
  it("a key has one record in flight; a refused one goes again before the key's later records; idle keys are forgotten", () => {
    const { answer, contents, engine, offer, outcomes, sent } = harness({})
    for (let i = 0; i < 3; i++) offer("k", `k${i}`)
    offer("other", "o0")
    engine.step(0)
    // Two requests could go (16 may be in flight), yet k's second record waits for the answer.
    assert.deepStrictEqual(sent.flatMap(contents), ["k0", "o0"])
    answer(sent[0]!, 1, ["k0"])
    engine.step(10)
    assert.deepStrictEqual(contents(sent[1]!), ["k0"])
    answer(sent[1]!, 11)
    engine.step(12)
    assert.deepStrictEqual(contents(sent[2]!), ["k1"])
    answer(sent[2]!, 13)
    engine.step(14)
    assert.deepStrictEqual(contents(sent[3]!), ["k2"])
    answer(sent[3]!, 15)
    assert.deepStrictEqual([...outcomes.values()], ["stored", "stored", "stored", "stored"])
    assert.strictEqual(engine.buffered, 0)
    assert.strictEqual(engine.keys!.size, 0)
  })

  it("idle keys are kept for their next records, and swept out when many keys pass", () => {
    const { answer, contents, engine, offer, outcomes, sent } = harness({})
    // Records of one key share a route, as the producer's key cache gives them.
    const route = new HashKeyRoute(HashKey.fromPartitionKey("k"), Aggregation.partitionKeyBytes("k"))
    const round = (keys: ReadonlyArray<string>, tag: string, at: number) => {
      for (const key of keys) offer(key, `${key}-${tag}`, at, key === "k" ? route : undefined)
      engine.step(at)
      const batch = sent[sent.length - 1]!
      answer(batch, at + 1)
      return contents(batch)
    }
    assert.deepStrictEqual(round(["k"], "a", 0), ["k-a"])
    // Many other keys, one record each, pass through: more than are kept idle.
    const others = Array.from({ length: 20_000 }, (_, i) => `other-${i}`)
    for (let i = 0; i < others.length; i += 500) round(others.slice(i, i + 500), "x", 10 + i)
    const internal = engine.keys as unknown as { keys: Map<string, unknown> }
    assert.isAtMost(internal.keys.size, 16_385)
    assert.strictEqual(engine.keys!.size, 0)
    // k's state was swept while its route still remembers it: two records of k still go one by one.
    offer("k", "k-b", 30_000, route)
    offer("k", "k-c", 30_000, route)
    engine.step(30_000)
    assert.deepStrictEqual(contents(sent[sent.length - 1]!), ["k-b"])
    answer(sent[sent.length - 1]!, 30_001)
    engine.step(30_002)
    assert.deepStrictEqual(contents(sent[sent.length - 1]!), ["k-c"])
    answer(sent[sent.length - 1]!, 30_003)
    assert.strictEqual(outcomes.get("k-c"), "stored")
    assert.strictEqual(engine.buffered, 0)
    assert.strictEqual(engine.keys!.size, 0)
  })

  it("a hot key rides in one aggregate, in order, while its previous aggregate is in flight the next waits", () => {
    const { answer, contents, engine, offer, sent } = harness({ aggregate: true })
    for (let i = 0; i < 100; i++) offer("hot", `h${i}`)
    engine.step(0)
    assert.strictEqual(sent.length, 1)
    assert.deepStrictEqual(contents(sent[0]!), Array.from({ length: 100 }, (_, i) => `h${i}`))
    for (let i = 100; i < 150; i++) offer("hot", `h${i}`)
    offer("cold", "c0")
    engine.step(1)
    // Only the other key could go: the hot key's new records wait for the answer.
    assert.deepStrictEqual(sent.slice(1).flatMap(contents), ["c0"])
    answer(sent[1]!, 2)
    answer(sent[0]!, 2, ["h0"])
    engine.step(10)
    // The refused aggregate goes again first, the later records with it, in order.
    assert.deepStrictEqual(sent.slice(2).flatMap(contents), Array.from({ length: 150 }, (_, i) => `h${i}`))
    for (const batch of sent.slice(2)) answer(batch, 11)
    assert.strictEqual(engine.buffered, 0)
    assert.strictEqual(engine.keys!.size, 0)
  })

  it("a record that fails for good is reported, and the key's later records follow it", () => {
    const { answer, contents, engine, offer, outcomes, sent } = harness({ maxAttempts: 1 })
    offer("k", "k0")
    offer("k", "k1")
    engine.step(0)
    answer(sent[0]!, 1, ["k0"])
    engine.step(2)
    assert.deepStrictEqual(contents(sent[1]!), ["k1"])
    answer(sent[1]!, 3)
    assert.deepStrictEqual(Object.fromEntries(outcomes), { k0: "PutFailed", k1: "stored" })
    assert.strictEqual(engine.keys!.size, 0)
  })

  it("records waiting behind their key's record in flight expire on time, and the key is forgotten", () => {
    const { answer, engine, offer, outcomes, sent } = harness({ recordTtl: 100 })
    offer("k", "k0")
    offer("k", "k1")
    engine.step(0)
    engine.step(200)
    assert.strictEqual(outcomes.get("k1"), "RecordExpired")
    answer(sent[0]!, 201)
    assert.strictEqual(outcomes.get("k0"), "stored")
    assert.strictEqual(engine.keys!.size, 0)
  })

  it("with ordering: \"unordered\" a key's records go out together, as before", () => {
    const { contents, engine, offer, sent } = harness({ ordering: "unordered" })
    for (let i = 0; i < 3; i++) offer("k", `k${i}`)
    engine.step(0)
    assert.deepStrictEqual(sent.flatMap(contents), ["k0", "k1", "k2"])
  })
})
