import type { Shard } from "@aws-sdk/client-kinesis"
import { HashKey, ShardMap } from "@effect-kinesis/core"
import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import * as fc from "fast-check"

const MAX = HashKey.MAX
const HALF = 1n << 127n

interface Range {
  readonly id: string
  readonly start: bigint
  readonly end: bigint
}

const shard = (
  id: string,
  start: bigint | string,
  end: bigint | string,
  extra: { readonly closed?: boolean; readonly parent?: string; readonly adjacentParent?: string } = {}
): Shard => ({
  ShardId: id,
  HashKeyRange: { StartingHashKey: start.toString(), EndingHashKey: end.toString() },
  SequenceNumberRange: {
    StartingSequenceNumber: "49590338271490256608559692538361571095921575989136588898",
    ...(extra.closed ? { EndingSequenceNumber: "49590338271490256608559692540925702759324208523137515618" } : {})
  },
  ...(extra.parent !== undefined ? { ParentShardId: extra.parent } : {}),
  ...(extra.adjacentParent !== undefined ? { AdjacentParentShardId: extra.adjacentParent } : {})
})

const open = (r: Range) => shard(r.id, r.start, r.end)

const build = (shards: Iterable<Shard>): ShardMap.ShardMap => {
  const result = ShardMap.fromShards(shards)
  if (Result.isFailure(result)) throw new Error(`expected a shard map, got ${result.failure.message}`)
  return result.success
}

const failure = (shards: Iterable<Shard>): ShardMap.ShardMapInvalid => {
  const result = ShardMap.fromShards(shards)
  if (Result.isSuccess(result)) throw new Error("expected ShardMapInvalid")
  return result.failure
}

// Open shards tiling [0, MAX]: random sorted split points, so shards of one key and shards at both ends occur.
const tiling: fc.Arbitrary<ReadonlyArray<Range>> = fc
  .uniqueArray(fc.bigInt({ min: 1n, max: MAX }), { maxLength: 40 })
  .map((points) => {
    const starts = [0n, ...points.sort((a, b) => (a < b ? -1 : 1))]
    return starts.map((start, i) => ({
      id: `shardId-${String(i).padStart(12, "0")}`,
      start,
      end: i + 1 < starts.length ? starts[i + 1]! - 1n : MAX
    }))
  })

// Closed shards anywhere in the hash space; they must never influence routing.
const closedShards = fc.array(
  fc.tuple(fc.bigInt({ min: 0n, max: MAX }), fc.bigInt({ min: 0n, max: MAX })),
  { maxLength: 10 }
).map((bounds) =>
  bounds.map(([a, b], i) => shard(`shardId-closed-${i}`, a < b ? a : b, a < b ? b : a, { closed: true }))
)

// A ListShards answer: the tiling plus closed shards, in any order.
const listing = fc.tuple(tiling, closedShards).chain(([ranges, closed]) => {
  const all = [...ranges.map(open), ...closed]
  return fc.shuffledSubarray(all, { minLength: all.length }).map((shards) => ({ ranges, closed, shards }))
})

const boundaries = (ranges: ReadonlyArray<Range>): Array<bigint> =>
  ranges.flatMap((r) => [r.start, r.end, r.start + (r.end - r.start) / 2n])

describe("ShardMap", () => {
  describe("lookups", () => {
    it("maps every hash key to exactly one open shard whose range contains it", () => {
      fc.assert(
        fc.property(listing, fc.array(fc.bigInt({ min: 0n, max: MAX }), { maxLength: 20 }), (
          { ranges, shards },
          randomKeys
        ) => {
          const map = build(shards)
          for (const key of [0n, MAX, ...boundaries(ranges), ...randomKeys]) {
            const containing = ranges.filter((r) => r.start <= key && key <= r.end)
            expect(containing).toHaveLength(1)
            const found = ShardMap.shardForHashKey(map, key)
            expect(found?.shardId).toBe(containing[0]!.id)
            expect(found !== undefined && ShardMap.ShardInfo.containsHashKey(found, key)).toBe(true)
          }
        }),
        { numRuns: 300 }
      )
    })

    it("keeps only open shards, in hash key order", () => {
      fc.assert(
        fc.property(listing, ({ closed, ranges, shards }) => {
          const map = build(shards)
          expect(ShardMap.size(map)).toBe(ranges.length)
          expect(ShardMap.shardIds(map)).toEqual(ranges.map((r) => r.id))
          expect(map.shards.map((s) => [s.startingHashKey, s.endingHashKey])).toEqual(
            ranges.map((r) => [r.start, r.end])
          )
          for (const r of ranges) {
            expect(ShardMap.has(map, r.id)).toBe(true)
            expect(ShardMap.get(map, r.id)?.endingHashKey).toBe(r.end)
          }
          for (const c of closed) {
            expect(ShardMap.has(map, c.ShardId!)).toBe(false)
            expect(ShardMap.get(map, c.ShardId!)).toBeUndefined()
          }
        })
      )
    })

    it("finds no shard for keys outside the hash space", () => {
      const map = build([shard("shardId-000000000000", 0n, MAX)])
      expect(ShardMap.shardForHashKey(map, -1n)).toBeUndefined()
      expect(ShardMap.shardForHashKey(map, MAX + 1n)).toBeUndefined()
      expect(ShardMap.shardForHashKey(map, 0n)?.shardId).toBe("shardId-000000000000")
      expect(ShardMap.shardForHashKey(map, MAX)?.shardId).toBe("shardId-000000000000")
    })

    it("routes a record by the MD5 of its partition key unless an explicit hash key is given", () => {
      // A stream after one split: the parent is closed, its two children each own half the hash space.
      const map = build([
        shard("shardId-000000000000", 0n, MAX, { closed: true }),
        shard("shardId-000000000001", 0n, HALF - 1n, { parent: "shardId-000000000000" }),
        shard("shardId-000000000002", HALF, MAX, { parent: "shardId-000000000000" })
      ])
      // MD5("abc") = 0x9001…7f72 ≥ 2^127; MD5("a") = 0x0cc1…2661 < 2^127.
      expect(ShardMap.shardForRecord(map, "abc")?.shardId).toBe("shardId-000000000002")
      expect(ShardMap.shardForRecord(map, "a")?.shardId).toBe("shardId-000000000001")
      expect(ShardMap.shardForRecord(map, "abc", "0")?.shardId).toBe("shardId-000000000001")
      expect(ShardMap.shardForRecord(map, "a", HALF.toString())?.shardId).toBe("shardId-000000000002")
      expect(ShardMap.shardForRecord(map, "a", (HALF - 1n).toString())?.shardId).toBe("shardId-000000000001")
    })

    it("finds no shard for a record whose explicit hash key Kinesis would reject", () => {
      const map = build([shard("shardId-000000000000", 0n, MAX)])
      for (const invalid of ["", "01", "-1", "abc", (MAX + 1n).toString()]) {
        expect(ShardMap.shardForRecord(map, "pk", invalid), invalid).toBeUndefined()
      }
    })

    it("agrees with hashing the partition key and looking the hash key up", () => {
      fc.assert(
        fc.property(tiling, fc.string({ unit: "grapheme", minLength: 1, maxLength: 64 }), (ranges, pk) => {
          const map = build(ranges.map(open))
          expect(ShardMap.shardForRecord(map, pk)).toBe(ShardMap.shardForHashKey(map, HashKey.fromPartitionKey(pk)))
        })
      )
    })

    it("gives each shard an explicit hash key that routes to exactly that shard", () => {
      fc.assert(
        fc.property(tiling, (ranges) => {
          const map = build(ranges.map(open))
          for (const info of map.shards) {
            const explicitHashKey = ShardMap.ShardInfo.explicitHashKey(info)
            expect(HashKey.parseExplicit(explicitHashKey)).toBe(info.startingHashKey)
            expect(ShardMap.shardForRecord(map, "any partition key", explicitHashKey)).toBe(info)
          }
        })
      )
    })
  })

  describe("validation", () => {
    it("rejects a listing with no open shards", () => {
      expect(failure([]).reason).toBe("NoOpenShards")
      expect(failure([shard("shardId-000000000000", 0n, MAX, { closed: true })]).reason).toBe("NoOpenShards")
    })

    it("rejects gaps: a missing shard, a shrunk range, or a hole a closed shard used to cover", () => {
      fc.assert(
        fc.property(
          tiling.filter((ranges) => ranges.length >= 2),
          fc.nat(),
          fc.constantFrom("drop", "close", "shrinkStart", "shrinkEnd"),
          fc.bigInt({ min: 1n, max: MAX }),
          (ranges, n, how, amount) => {
            const i = n % ranges.length
            const r = ranges[i]!
            const others = ranges.filter((_, j) => j !== i).map(open)
            const width = r.end - r.start
            const shards = how === "drop"
              ? others
              : how === "close"
              ? [...others, shard(r.id, r.start, r.end, { closed: true })]
              : width === 0n
              ? others
              : how === "shrinkStart"
              ? [...others, shard(r.id, r.start + 1n + (amount % width), r.end)]
              : [...others, shard(r.id, r.start, r.end - 1n - (amount % width))]
            const error = failure(shards)
            expect(error._tag).toBe("ShardMapInvalid")
            expect(error.reason).toBe("Gap")
          }
        )
      )
    })

    it("rejects gaps at either end of the hash space", () => {
      expect(failure([shard("shardId-000000000000", 1n, MAX)]).reason).toBe("Gap")
      expect(failure([shard("shardId-000000000000", 0n, MAX - 1n)]).reason).toBe("Gap")
    })

    it("rejects overlaps: a widened range or a shard listed twice", () => {
      fc.assert(
        fc.property(
          tiling.filter((ranges) => ranges.length >= 2),
          fc.nat(),
          fc.constantFrom("widenEnd", "widenStart", "duplicate"),
          fc.bigInt({ min: 0n, max: MAX }),
          (ranges, n, how, amount) => {
            const i = n % (ranges.length - 1) // a shard with a right neighbour
            const r = ranges[i]!
            const next = ranges[i + 1]!
            const others = ranges.filter((_, j) => j !== i && j !== i + 1).map(open)
            const shards = how === "widenEnd"
              ? [...others, shard(r.id, r.start, r.end + 1n + (amount % (next.end - r.end))), open(next)]
              : how === "widenStart"
              ? [...others, open(r), shard(next.id, next.start - 1n - (amount % (next.start - r.start)), next.end)]
              : [...others, open(r), open(next), shard(`${next.id}-again`, next.start, next.end)]
            expect(failure(shards).reason).toBe("Overlap")
          }
        )
      )
    })

    it("rejects malformed shards", () => {
      const whole = shard("shardId-000000000000", 0n, MAX)
      const malformed: ReadonlyArray<Shard> = [
        { ...whole, ShardId: undefined },
        { ...whole, HashKeyRange: undefined },
        { ...whole, HashKeyRange: { StartingHashKey: "00", EndingHashKey: MAX.toString() } },
        { ...whole, HashKeyRange: { StartingHashKey: "0", EndingHashKey: (MAX + 1n).toString() } },
        { ...whole, HashKeyRange: { StartingHashKey: "0", EndingHashKey: undefined } },
        shard("shardId-000000000000", 10n, 9n)
      ]
      for (const s of malformed) {
        expect(failure([s]).reason).toBe("InvalidShard")
        expect(Result.isFailure(ShardMap.ShardInfo.fromShard(s))).toBe(true)
      }
    })
  })

  describe("ShardInfo", () => {
    it("converts open and closed shards with their lineage", () => {
      const merged = ShardMap.ShardInfo.fromShard(
        shard("shardId-000000000003", 0n, MAX, {
          parent: "shardId-000000000001",
          adjacentParent: "shardId-000000000002"
        })
      )
      expect(merged).toStrictEqual(Result.succeed({
        shardId: "shardId-000000000003",
        startingHashKey: 0n,
        endingHashKey: MAX,
        parentShardId: "shardId-000000000001",
        adjacentParentShardId: "shardId-000000000002"
      }))
      const closed = ShardMap.ShardInfo.fromShard(shard("shardId-000000000001", 0n, HALF - 1n, { closed: true }))
      expect(closed).toStrictEqual(Result.succeed({
        shardId: "shardId-000000000001",
        startingHashKey: 0n,
        endingHashKey: HALF - 1n,
        endingSequenceNumber: "49590338271490256608559692540925702759324208523137515618"
      }))
    })

    it("contains exactly the keys of its inclusive range", () => {
      const info: ShardMap.ShardInfo = { shardId: "shardId-000000000000", startingHashKey: 10n, endingHashKey: 20n }
      expect([9n, 10n, 15n, 20n, 21n].map((k) => ShardMap.ShardInfo.containsHashKey(info, k))).toEqual([
        false,
        true,
        true,
        true,
        false
      ])
    })
  })
})
