import { HashKey } from "@effect-kinesis/core"
import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { hash } from "node:crypto"
import type * as PartitionKeyRange from "../src/internal/partitionKeyRange.ts"

// An internal module (the package does not export it): loaded by path, which the compiler leaves
// as is, where a static import across the src and test projects does not compile.
const { makeRangeCheck, md5Words }: typeof PartitionKeyRange = await import(
  new URL("../src/internal/partitionKeyRange.ts", import.meta.url).href
)

const hex = (words: Uint32Array) => [...words].map((w) => w.toString(16).padStart(8, "0")).join("")

// The ranges of a stream of four shards, as Kinesis splits the key space evenly.
const quarter = (HashKey.MAX + 1n) / 4n
const ranges = [0, 1, 2, 3].map((i) => ({ start: quarter * BigInt(i), end: quarter * BigInt(i + 1) - 1n }))

const expected = (key: string, range: { start: bigint; end: bigint }) => {
  const hashKey = HashKey.fromPartitionKey(key)
  return hashKey >= range.start && hashKey <= range.end
}

describe("the consumer's partition key range check", () => {
  it("computes MD5 as node:crypto does, over the UTF-8 bytes of any key, across block boundaries", () => {
    // Lengths around the padding boundaries (55/56 and 119/120 bytes) and the 256-character limit.
    for (let n = 0; n <= 256; n++) {
      for (const unit of ["k", "é", "日", "😀"]) {
        const key = unit.repeat(n).slice(0, 256)
        assert.strictEqual(hex(md5Words(key)), hash("md5", key, "hex"), JSON.stringify(key))
      }
    }
    // Lone surrogates are encoded as U+FFFD, as Kinesis' SDKs and node:crypto do.
    for (const key of ["\ud800", "a\udc00b", "\u0000", "\u007f\u0080\u07ff\u0800\uffff"]) {
      assert.strictEqual(hex(md5Words(key)), hash("md5", key, "hex"), JSON.stringify(key))
    }
    fc.assert(
      fc.property(
        fc.string({ unit: "binary", maxLength: 256 }),
        (key) => hex(md5Words(key)) === hash("md5", key, "hex")
      ),
      { numRuns: 2000 }
    )
  })

  it("answers as MD5 and the range do, per shard, whether keys repeat (cached) or not (cache off, tried again)", () => {
    const checks = ranges.map((range) => makeRangeCheck(range.start, range.end))
    const seen = { cachingOn: false, cachingOff: false, reenabled: false }
    const verify = (key: string) => {
      let owners = 0
      checks.forEach((check, i) => {
        const inside = check.contains(key)
        assert.strictEqual(inside, expected(key, ranges[i]!), `${key} in shard ${i}`)
        if (inside) owners++
      })
      // Each key belongs to exactly one shard: no answer leaks from one shard's cache to another's.
      assert.strictEqual(owners, 1, key)
    }
    // Repeating keys: the cache stays on and answers from memory.
    for (let i = 0; i < 20_000; i++) verify(`user-${i % 500}`)
    seen.cachingOn = checks.every((check) => check.caching())
    // Keys that never repeat: the cache switches off.
    for (let i = 0; i < 10_000; i++) verify(`order-${i}`)
    seen.cachingOff = checks.every((check) => !check.caching())
    // Repeating again: tried again after its idle windows, and kept.
    for (let i = 0; i < 80_000; i++) verify(`user-${i % 500}`)
    seen.reenabled = checks.every((check) => check.caching())
    assert.deepStrictEqual(seen, { cachingOn: true, cachingOff: true, reenabled: true })
  })

  it("bounds a range's ends inclusively, word by word", () => {
    const key = "user-1"
    const hashKey = HashKey.fromPartitionKey(key)
    assert.isTrue(makeRangeCheck(hashKey, hashKey).contains(key))
    assert.isFalse(makeRangeCheck(hashKey + 1n, HashKey.MAX).contains(key))
    assert.isFalse(makeRangeCheck(HashKey.MIN, hashKey - 1n).contains(key))
    // Bounds that differ from the key only in the lowest 32-bit word.
    assert.isTrue(makeRangeCheck(hashKey & ~0xffffffffn, hashKey | 0xffffffffn).contains(key))
  })
})
