import { assert, describe, it } from "@effect/vitest"
import { analyze, type Disruption, type Incarnation, type Input } from "./analyze.ts"
import type { AckLine, ProcessedLine } from "./protocol.ts"

// The chaos run's verdicts rest on these checks: each is shown to pass on a clean run and to fail
// on the one thing it is there to catch.

/** A record stored at `s`/`q`.`u`, acknowledged at `t`: id, key and the key's counter. */
const ack = (id: number, k: string, n: number, s: string, q: number, t: number, u = 0): AckLine => ({
  id,
  k,
  n,
  s,
  q: String(q),
  u,
  t
})

/** `record` processed at `t`. */
const processed = (record: AckLine, t: number): ProcessedLine => ({ ...record, t })

const incarnation = (
  label: string,
  lines: ReadonlyArray<ProcessedLine>,
  options: Partial<Omit<Incarnation, "label" | "lines">> = {}
): Incarnation => ({
  label,
  workerId: label.split("#")[0]!,
  lines,
  started: 0,
  ended: undefined,
  ending: "other",
  lost: new Map(),
  ...options
})

// A split of shard 0 at 10 s: keys "a" and "b" go on in the children.
const shards = [
  { shardId: "shardId-0", parents: [] },
  { shardId: "shardId-1", parents: ["shardId-0"] },
  { shardId: "shardId-2", parents: ["shardId-0"] }
]
const acks = [
  ack(1, "a", 1, "shardId-0", 100, 1_000),
  ack(2, "b", 1, "shardId-0", 200, 2_000),
  ack(3, "a", 2, "shardId-0", 300, 3_000),
  ack(4, "a", 3, "shardId-1", 100, 11_000),
  ack(5, "b", 2, "shardId-2", 100, 12_000)
]
const split: Disruption = { kind: "split", from: 10_000, to: 10_500 }

const input = (overrides: Partial<Input> = {}): Input => ({
  acks,
  incarnations: [incarnation("w0#1", acks.map((a) => processed(a, a.t + 200)))],
  shards,
  disruptions: [split],
  targetMillis: 8_000,
  allowanceMillis: 1_000,
  runEnd: 20_000,
  ...overrides
})

const check = (result: ReturnType<typeof analyze>, name: string) => {
  const found = result.checks.find((c) => c.name === name)
  assert.isDefined(found, name)
  return found!
}

describe("chaos analysis", () => {
  it("a clean run passes every check, with no duplicates", () => {
    const result = analyze(input())
    for (const c of result.checks) assert.isTrue(c.ok, `${c.name}: ${c.summary}`)
    assert.include(result.figures.join("\n"), "processed 5 records, 5 distinct; duplicates 0")
  })

  it("an acknowledged record nobody processed fails the run", () => {
    const lines = acks.filter((a) => a.id !== 3).map((a) => processed(a, a.t + 200))
    const c = check(analyze(input({ incarnations: [incarnation("w0#1", lines)] })), "acknowledged records processed")
    assert.isFalse(c.ok)
    assert.strictEqual(c.summary, "4/5 acknowledged records processed, 1 never")
    assert.deepStrictEqual(c.details, ["by shard: shardId-0=1", "first ids: 3"])
  })

  it("a record processed before one of its key stored earlier fails per-key order, across a split too", () => {
    // Id 3 (a#2) first processed before id 1 (a#1): one inversion in a shard.
    const swapped = acks.map((a) => processed(a, a.id === 3 ? 500 : a.t + 200))
    const inShard = check(analyze(input({ incarnations: [incarnation("w0#1", swapped)] })), "per-key order")
    assert.isFalse(inShard.ok)
    assert.match(inShard.summary, /^1 records first processed before/)
    // Id 4 (a#3, in the child) first processed before id 3 (a#2, in the parent): the lineage orders them.
    const early = acks.map((a) => processed(a, a.id === 4 ? 3_100 : a.t + 200))
    const acrossSplit = check(analyze(input({ incarnations: [incarnation("w0#1", early)] })), "per-key order")
    assert.isFalse(acrossSplit.ok)
    assert.match(acrossSplit.summary, /^1 records first processed before/)
  })

  it("a child shard started before its parent's last record fails", () => {
    // The child's first record is processed before the parent's last (id 3).
    const lines = acks.map((a) => processed(a, a.id === 5 ? 3_100 : a.t + 200))
    const c = check(analyze(input({ incarnations: [incarnation("w0#1", lines)] })), "children after parents")
    assert.isFalse(c.ok)
    assert.deepStrictEqual(c.details, ["shardId-2 started 100 ms before the last record of its parent shardId-0"])
  })

  it("a shard left waiting longer than the target fails, unless no worker ran then", () => {
    // Ids 4 and 5 wait from their acknowledgements (11 s and 12 s) to 21.5 s: 10.5 s and 9.5 s against
    // a target of 8 s plus 1 s.
    const late = acks.map((a) => processed(a, a.id >= 4 ? 21_500 : a.t + 200))
    const over = check(
      analyze(input({ incarnations: [incarnation("w0#1", late)], runEnd: 25_000 })),
      "resume gap"
    )
    assert.isFalse(over.ok)
    assert.match(over.summary, /; 2 over target$/)
    // A longer stretch (29 s, past even the target under churn, 17 s) while no worker ran is not the
    // consumer's doing: every worker stopped at 11 s, one started again at 40 s.
    const before = acks.filter((a) => a.id < 4).map((a) => processed(a, a.t + 200))
    const after = acks.filter((a) => a.id >= 4).map((a) => processed(a, 40_500))
    const nobody = check(
      analyze(input({
        incarnations: [
          incarnation("w0#1", before, { ended: 11_000, ending: "stopped" }),
          incarnation("w0#2", after, { started: 40_000 })
        ],
        disruptions: [split, { kind: "stop-all", from: 11_000, to: 40_000 }],
        runEnd: 45_000
      })),
      "resume gap"
    )
    assert.isTrue(nobody.ok, nobody.summary)
  })

  describe("records processed twice", () => {
    // Id 2 processed by w0#1 at 2.2 s, then again by w1#1 at 5 s.
    const twice = (first: Partial<Omit<Incarnation, "label" | "lines">>, secondLabel = "w1#1") => {
      const firstLines = acks.map((a) => processed(a, a.t + 200))
      const again = processed(acks[1]!, 5_000)
      const incarnations = secondLabel === "w0#1"
        ? [incarnation("w0#1", [...firstLines, again], first)]
        : [incarnation("w0#1", firstLines, first), incarnation(secondLabel, [again], { started: 4_000 })]
      const result = analyze(input({ incarnations }))
      return { result, check: check(result, "duplicates only after SIGKILLs"), figures: result.figures.join("\n") }
    }

    it("after a SIGKILL: allowed", () => {
      const { check, figures } = twice({ ended: 3_000, ending: "killed" })
      assert.isTrue(check.ok, check.summary)
      assert.include(figures, "duplicates 1 (1 after their first processor was SIGKILLed")
    })

    it("after a graceful stop: fails", () => {
      const { check } = twice({ ended: 3_000, ending: "stopped" })
      assert.isFalse(check.ok)
      assert.match(check.summary, /^1 records processed again/)
    })

    it("while the first processor still ran (its lease taken): fails", () => {
      const { check, figures } = twice({})
      assert.isFalse(check.ok)
      assert.include(figures, "1 while it still ran (lease taken)")
    })

    it("by the same process: fails", () => {
      const { check, figures } = twice({}, "w0#1")
      assert.isFalse(check.ok)
      assert.include(figures, "1 twice by one process")
    })

    it("after its lease expired while DynamoDB failed: allowed and reported", () => {
      const lost = new Map([["shardId-0", [{ t: 2_500, reason: "expired" }]]])
      const { check } = twice({ ended: 3_000, ending: "stopped", lost })
      assert.isTrue(check.ok, check.summary)
      assert.match(check.summary, /\(1 after a lease expired while DynamoDB failed, allowed\)$/)
    })

    it("a lease taken from it after it processed the record, before it stopped: fails", () => {
      const lost = new Map([["shardId-0", [{ t: 2_500, reason: "taken by w1" }]]])
      const { check } = twice({ ended: 3_000, ending: "stopped", lost })
      assert.isFalse(check.ok)
    })

    it("a record the producer stored twice: allowed", () => {
      // The same id at a second position, processed there too.
      const copy = ack(2, "b", 1, "shardId-0", 250, 2_100)
      const lines = [...acks, copy].map((a) => processed(a, a.t + 200))
      const result = analyze(input({ acks: [...acks, copy], incarnations: [incarnation("w0#1", lines)] }))
      const c = check(result, "duplicates only after SIGKILLs")
      assert.isTrue(c.ok, c.summary)
      assert.include(
        result.figures.join("\n"),
        "1 copies the producer stored twice); 1 ids stored at more than one position"
      )
    })
  })
})
