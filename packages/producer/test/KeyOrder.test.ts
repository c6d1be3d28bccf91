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

/** Two shards, each half of the hash key range. */
const halves = Result.getOrThrow(ShardMap.fromShards([{
  ShardId: "shardId-000000000000",
  HashKeyRange: { StartingHashKey: "0", EndingHashKey: ((1n << 127n) - 1n).toString() },
  SequenceNumberRange: { StartingSequenceNumber: "0" }
}, {
  ShardId: "shardId-000000000001",
  HashKeyRange: { StartingHashKey: (1n << 127n).toString(), EndingHashKey: ((1n << 128n) - 1n).toString() },
  SequenceNumberRange: { StartingSequenceNumber: "0" }
}]))

/** A partition key whose hash key lies in the lower (`0`) or upper (`1`) half of the range. */
const keyIn = (half: 0 | 1, prefix: string): string => {
  for (let i = 0;; i++) {
    const key = `${prefix}${i}`
    if (Number(HashKey.fromPartitionKey(key) >> 127n) === half) return key
  }
}

/**
 * The engine alone, driven by hand: `sent` holds the requests it launched, `answer` settles one
 * with a per-record outcome, `outcomes` what each record settled with.
 */
const harness = (settings: Partial<ProducerSettings.ProducerSettings>, shards = shardMap) => {
  const engine = new Engine(
    ProducerSettings.resolve({ rateLimit: false, retryBaseDelay: 1, retryMaxDelay: 1, ...settings }),
    shards,
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
            : { ShardId: part.shard!.info.shardId, SequenceNumber: "1" }
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

  it("a hot key rides in one aggregate, in order; its shard's next aggregate waits for the answer", () => {
    const { answer, contents, engine, offer, sent } = harness({ aggregate: true })
    for (let i = 0; i < 100; i++) offer("hot", `h${i}`)
    engine.step(0)
    assert.strictEqual(sent.length, 1)
    assert.deepStrictEqual(contents(sent[0]!), Array.from({ length: 100 }, (_, i) => `h${i}`))
    for (let i = 100; i < 150; i++) offer("hot", `h${i}`)
    offer("cold", "c0")
    engine.step(1)
    // The shard has an aggregate out: its next one waits for the answer.
    assert.strictEqual(sent.length, 1)
    answer(sent[0]!, 2, ["h0"])
    engine.step(10)
    // The refused aggregate goes again first, the later records with it, in order, then the other key.
    assert.deepStrictEqual(
      sent.slice(1).flatMap(contents),
      [...Array.from({ length: 150 }, (_, i) => `h${i}`), "c0"]
    )
    for (const batch of sent.slice(1)) answer(batch, 11)
    assert.strictEqual(engine.buffered, 0)
    assert.strictEqual(engine.keys!.size, 0)
  })

  it("only the shard with an aggregate out waits; a whole aggregate's worth, and everything at close, goes at once", () => {
    const { answer, contents, engine, offer, outcomes, sent } = harness(
      { aggregate: true, maxAggregateBytes: 1000 },
      halves
    )
    const a = keyIn(0, "a")
    const b = keyIn(1, "b")
    const a2 = keyIn(0, "a-other")
    offer(a, "a0")
    engine.step(0)
    assert.deepStrictEqual(sent.flatMap(contents), ["a0"])
    offer(a, "a1")
    offer(a2, "x0")
    offer(b, "b0")
    engine.step(1)
    // Shard 0 waits for the answer; shard 1 has nothing out.
    assert.deepStrictEqual(sent.slice(1).flatMap(contents), ["b0"])
    // More than an aggregate's worth for shard 0 (records of about 40 bytes against 1,000): it goes
    // at once. a's record stays behind a's record out; an aggregate takes the other key's first
    // records, its later ones wait for that aggregate (one aggregate out per key).
    const xs = Array.from({ length: 30 }, (_, i) => `x${i + 1}-${"y".repeat(30)}`)
    for (const x of xs) offer(a2, x)
    engine.step(2)
    assert.strictEqual(sent.length, 3)
    assert.deepStrictEqual(contents(sent[2]!), ["x0", ...xs.slice(0, 24)])
    answer(sent[0]!, 3)
    engine.step(4)
    // Shard 0 still has the third request's aggregate out: the waiting records wait for it too.
    assert.strictEqual(sent.length, 3)
    answer(sent[2]!, 5)
    engine.step(6)
    assert.deepStrictEqual(sent.slice(3).flatMap(contents), ["a1", ...xs.slice(24)])
    // Close sends what would wait for its shard's answer (a key with no record out).
    offer(keyIn(0, "late"), "late")
    engine.close()
    engine.step(7)
    assert.deepStrictEqual(sent.slice(4).flatMap(contents), ["late"])
    for (const batch of [sent[1]!, ...sent.slice(3)]) answer(batch, 8)
    assert.strictEqual(engine.buffered, 0)
    assert.isTrue([...outcomes.values()].every((o) => o === "stored"))
  })

  it("an aggregate rejected as invalid is split in order, and its shard goes on afterwards", () => {
    const { answer, contents, engine, offer, outcomes, sent } = harness({ aggregate: true })
    for (let i = 0; i < 4; i++) offer("p", `p${i}`)
    offer("q", "q0")
    engine.step(0)
    assert.deepStrictEqual(sent.flatMap(contents), ["p0", "p1", "p2", "p3", "q0"])
    engine.onResponse(
      sent[0]!,
      undefined,
      { code: "InvalidArgument", message: "invalid", retryable: false, cause: undefined },
      1
    )
    engine.step(2)
    // The first half again; of the rest, p's records wait behind it, the other key's go.
    assert.deepStrictEqual(sent.slice(1).map(contents), [["p0", "p1"], ["q0"]])
    answer(sent[1]!, 3)
    answer(sent[2]!, 3)
    engine.step(4)
    assert.deepStrictEqual(sent.slice(3).flatMap(contents), ["p2", "p3"])
    answer(sent[3]!, 5)
    // Nothing of the shard is out any more: a new record goes at once.
    offer("n", "n0", 6)
    engine.step(6)
    assert.deepStrictEqual(sent.slice(4).flatMap(contents), ["n0"])
    answer(sent[4]!, 7)
    assert.strictEqual(engine.buffered, 0)
    assert.deepStrictEqual(new Set(outcomes.values()), new Set(["stored"]))
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
