import { Aggregation } from "@effect-kinesis/core"
import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import * as fc from "fast-check"
import { createHash } from "node:crypto"

const MAGIC = [0xf3, 0x89, 0x9a, 0xc2]
const SHARD_KEY = "170141183460469231731687303715884105728"

/** Magic ‖ message ‖ MD5(message): the KPL framing, built independently of the library. */
const frame = (message: ReadonlyArray<number>): Uint8Array => {
  const md5 = createHash("md5").update(Uint8Array.from(message)).digest()
  return Uint8Array.from([...MAGIC, ...message, ...md5])
}

const bytesOf = (s: string): Array<number> => [...Buffer.from(s, "utf8")]

const utf8Bytes = (s: string): number => Buffer.byteLength(s, "utf8")

const kinesisSize = (record: Aggregation.KinesisRecord): number => record.data.length + utf8Bytes(record.partitionKey)

const decodeOrThrow = (record: Aggregation.KinesisRecord): ReadonlyArray<Aggregation.UserRecord> => {
  const result = Aggregation.deaggregate(record)
  if (Result.isFailure(result)) throw new Error(`unexpected decode failure: ${result.failure.message}`)
  return result.success
}

const plain = (records: ReadonlyArray<Aggregation.UserRecord>) =>
  records.map((r) => ({
    partitionKey: r.partitionKey,
    explicitHashKey: r.explicitHashKey,
    data: [...r.data],
    subSequenceNumber: r.subSequenceNumber
  }))

describe("Aggregation golden vectors (bytes written from the .proto by hand)", () => {
  // AggregatedRecord {
  //   partition_key_table (1, length-delimited → tag 0x0A): "a", "b"
  //   explicit_hash_key_table (2, length-delimited → tag 0x12): "123"
  //   records (3, length-delimited → tag 0x1A):
  //     Record { partition_key_index (1, varint → 0x08): 0, data (3, len → 0x1A): 01 02 03 }
  //     Record { partition_key_index: 1, explicit_hash_key_index (2, varint → 0x10): 0, data: 04 }
  //     Record { partition_key_index: 0, data: (empty) }
  // }
  const message = [
    [0x0a, 0x01, 0x61], // partition_key_table[0] = "a"
    [0x0a, 0x01, 0x62], // partition_key_table[1] = "b"
    [0x12, 0x03, 0x31, 0x32, 0x33], // explicit_hash_key_table[0] = "123"
    [0x1a, 0x07, 0x08, 0x00, 0x1a, 0x03, 0x01, 0x02, 0x03], // records[0]
    [0x1a, 0x07, 0x08, 0x01, 0x10, 0x00, 0x1a, 0x01, 0x04], // records[1]
    [0x1a, 0x04, 0x08, 0x00, 0x1a, 0x00] // records[2]
  ].flat()
  const userRecords = [
    { partitionKey: "a", data: Uint8Array.of(1, 2, 3) },
    { partitionKey: "b", explicitHashKey: "123", data: Uint8Array.of(4) },
    { partitionKey: "a", data: new Uint8Array(0) }
  ]

  it("the encoder produces the hand-built aggregate byte for byte", () => {
    const aggregator = Aggregation.makeAggregator({ explicitHashKey: SHARD_KEY })
    for (const record of userRecords) expect(aggregator.add(record)).toBe(true)
    const built = aggregator.build()!
    expect([...built.data]).toEqual([...frame(message)])
    expect(built.partitionKey).toBe("a")
    expect(built.explicitHashKey).toBe(SHARD_KEY)
    expect(aggregator.size).toBe(4 + message.length + 16 + 1)
  })

  it("the decoder reads the hand-built aggregate", () => {
    const decoded = decodeOrThrow({ partitionKey: "outer", data: frame(message) })
    expect(plain(decoded)).toEqual([
      { partitionKey: "a", explicitHashKey: undefined, data: [1, 2, 3], subSequenceNumber: 0 },
      { partitionKey: "b", explicitHashKey: "123", data: [4], subSequenceNumber: 1 },
      { partitionKey: "a", explicitHashKey: undefined, data: [], subSequenceNumber: 2 }
    ])
  })

  it("multi-byte varints: a 200-byte payload, a UTF-8 key and a key index of 128", () => {
    // 129 distinct two-letter keys, so the last record's partition_key_index (128) takes two
    // varint bytes (0x80 0x01); a 200-byte payload's length is 0xC8 0x01; "ü€" is 5 UTF-8 bytes.
    const keys = Array.from({ length: 129 }, (_, i) => String.fromCharCode(0x41 + Math.floor(i / 26), 0x61 + (i % 26)))
    const big = Array.from({ length: 200 }, (_, i) => i)
    const message = [
      keys.flatMap((key) => [0x0a, 0x02, ...bytesOf(key)]), // partition_key_table[0..128]
      [0x0a, 0x05, 0xc3, 0xbc, 0xe2, 0x82, 0xac], // partition_key_table[129] = "ü€"
      keys.slice(0, 128).flatMap((_, i) => [0x1a, 0x04, 0x08, i, 0x1a, 0x00]), // records[0..127]
      [0x1a, 0x05, 0x08, 0x80, 0x01, 0x1a, 0x00], // records[128]: partition_key_index 128
      [0x1a, 0x06, 0x08, 0x81, 0x01, 0x1a, 0x01, 0xff], // records[129]: index 129, data ff
      [0x1a, 0xcd, 0x01, 0x08, 0x00, 0x1a, 0xc8, 0x01, ...big] // records[130]: 205-byte body
    ].flat()
    const aggregator = Aggregation.makeAggregator({ explicitHashKey: "0" })
    for (const key of keys) aggregator.add({ partitionKey: key, data: new Uint8Array(0) })
    aggregator.add({ partitionKey: "ü€", data: Uint8Array.of(0xff) })
    aggregator.add({ partitionKey: keys[0]!, data: Uint8Array.from(big) })
    const built = aggregator.build()!
    expect([...built.data]).toEqual([...frame(message)])
    expect(aggregator.size).toBe(built.data.length + 2)

    const decoded = decodeOrThrow({ partitionKey: "x", data: frame(message) })
    expect(decoded).toHaveLength(131)
    expect(decoded[128]!.partitionKey).toBe(keys[128])
    expect(decoded[129]!.partitionKey).toBe("ü€")
    expect([...decoded[130]!.data]).toEqual(big)
  })

  it("the decoder accepts what other writers may produce: any field order, tags, unknown fields", () => {
    const message = [
      // records first, before the tables they index
      [0x1a, 0x0f], // records[0], 15-byte body:
      [0x1a, 0x02, 0x68, 0x69], //   data = "hi" (before the index)
      [0x22, 0x06, 0x0a, 0x01, 0x74, 0x12, 0x01, 0x76], //   tags[0] = Tag { key "t", value "v" }
      [0x08, 0x80, 0x00], //   partition_key_index = 0, as a non-canonical two-byte varint
      [0x48, 0x96, 0x01], // unknown field 9, varint 150
      [0x51, 1, 2, 3, 4, 5, 6, 7, 8], // unknown field 10, fixed64
      [0x5d, 1, 2, 3, 4], // unknown field 11, fixed32
      [0x63, 0x08, 0x01, 0x6b, 0x6c, 0x64], // unknown group 12 holding field 1 and an empty group 13
      [0x7a, 0x02, 0xff, 0xff], // unknown field 15, length-delimited
      [0x0a, 0x02, 0x70, 0x6b], // partition_key_table[0] = "pk"
      [0x1a, 0x06, 0x08, 0x00, 0x10, 0x00, 0x1a, 0x00], // records[1]: explicit_hash_key_index 0, empty data
      [0x12, 0x01, 0x39] // explicit_hash_key_table[0] = "9", last of all
    ].flat()
    const decoded = decodeOrThrow({ partitionKey: "outer", data: frame(message) })
    expect(plain(decoded)).toEqual([
      { partitionKey: "pk", explicitHashKey: undefined, data: [0x68, 0x69], subSequenceNumber: 0 },
      { partitionKey: "pk", explicitHashKey: "9", data: [], subSequenceNumber: 1 }
    ])
  })
})

describe("Aggregator", () => {
  it("sends a single user record as itself, not wrapped", () => {
    const aggregator = Aggregation.makeAggregator({ explicitHashKey: SHARD_KEY })
    const data = Uint8Array.of(9, 8, 7)
    aggregator.add({ partitionKey: "only", explicitHashKey: "42", data })
    const built = aggregator.build()!
    expect(built).toEqual({ partitionKey: "only", explicitHashKey: "42", data })
    expect(built.data).toBe(data)
    expect(aggregator.size).toBe(3 + 4)
    expect(Aggregation.isAggregated(built.data)).toBe(false)
  })

  it("a single user record without an explicit hash key keeps none", () => {
    const aggregator = Aggregation.makeAggregator({ explicitHashKey: SHARD_KEY })
    aggregator.add({ partitionKey: "k", data: Uint8Array.of(1) })
    expect(aggregator.build()!.explicitHashKey).toBeUndefined()
  })

  it("builds nothing when empty", () => {
    const aggregator = Aggregation.makeAggregator({ explicitHashKey: SHARD_KEY })
    expect(aggregator.build()).toBeUndefined()
    expect(aggregator.size).toBe(0)
    expect(aggregator.count).toBe(0)
  })

  it("counts partition keys as UTF-8 bytes", () => {
    const partitionKey = "é€😀" // 2 + 3 + 4 bytes
    expect(Aggregation.recordSize({ partitionKey, data: new Uint8Array(10) })).toBe(19)
    const aggregator = Aggregation.makeAggregator({ explicitHashKey: SHARD_KEY, maxBytes: 19 })
    expect(aggregator.add({ partitionKey, data: new Uint8Array(11) })).toBe(false)
    expect(aggregator.add({ partitionKey, data: new Uint8Array(10) })).toBe(true)
    expect(aggregator.size).toBe(19)
  })

  it("stores a repeated key once: the second record costs only its own field", () => {
    const aggregator = Aggregation.makeAggregator({ explicitHashKey: SHARD_KEY })
    const key = "a-rather-long-partition-key"
    aggregator.add({ partitionKey: key, data: new Uint8Array(5) })
    aggregator.add({ partitionKey: "other", data: new Uint8Array(5) })
    const before = aggregator.size
    // Record { 08 00 1A 05 <5 bytes> } inside 1A 09: 11 bytes, no new table entry.
    expect(aggregator.sizeWith({ partitionKey: key, data: new Uint8Array(5) })).toBe(before + 11)
    aggregator.add({ partitionKey: key, data: new Uint8Array(5) })
    const built = aggregator.build()!
    expect(kinesisSize(built)).toBe(before + 11)
    const occurrences = Buffer.from(built.data).toString("latin1").split(key).length - 1
    expect(occurrences).toBe(1)
  })

  it("refuses a record that does not fit and stays as it was", () => {
    const aggregator = Aggregation.makeAggregator({ explicitHashKey: SHARD_KEY, maxBytes: 100 })
    aggregator.add({ partitionKey: "a", data: new Uint8Array(30) })
    aggregator.add({ partitionKey: "b", data: new Uint8Array(30) })
    const size = aggregator.size
    const tooBig = { partitionKey: "c", data: new Uint8Array(30) }
    expect(aggregator.fits(tooBig)).toBe(false)
    expect(aggregator.add(tooBig)).toBe(false)
    expect(aggregator.size).toBe(size)
    expect(aggregator.count).toBe(2)
    expect(decodeOrThrow(aggregator.build()!).map((r) => r.partitionKey)).toEqual(["a", "b"])
  })

  it("an empty aggregator refuses a record that alone is over the limit", () => {
    const aggregator = Aggregation.makeAggregator({ explicitHashKey: SHARD_KEY })
    const record = { partitionKey: "k", data: new Uint8Array(Aggregation.DEFAULT_MAX_BYTES) }
    expect(aggregator.add(record)).toBe(false)
    expect(aggregator.count).toBe(0)
  })

  it("accepts a record of exactly 1 MiB (data + partition key) and nothing next to it", () => {
    const aggregator = Aggregation.makeAggregator({ explicitHashKey: SHARD_KEY })
    const record = { partitionKey: "key", data: new Uint8Array(Aggregation.DEFAULT_MAX_BYTES - 3) }
    expect(aggregator.add(record)).toBe(true)
    expect(aggregator.size).toBe(Aggregation.DEFAULT_MAX_BYTES)
    expect(aggregator.add({ partitionKey: "key", data: new Uint8Array(0) })).toBe(false)
    expect(aggregator.build()!.data).toBe(record.data)
  })

  it("is reusable after reset", () => {
    const aggregator = Aggregation.makeAggregator({ explicitHashKey: SHARD_KEY })
    aggregator.add({ partitionKey: "a", data: Uint8Array.of(1) })
    aggregator.add({ partitionKey: "b", data: Uint8Array.of(2) })
    aggregator.reset()
    expect(aggregator.count).toBe(0)
    expect(aggregator.size).toBe(0)
    aggregator.add({ partitionKey: "c", data: Uint8Array.of(3) })
    aggregator.add({ partitionKey: "c", data: Uint8Array.of(4) })
    expect(plain(decodeOrThrow(aggregator.build()!))).toEqual([
      { partitionKey: "c", explicitHashKey: undefined, data: [3], subSequenceNumber: 0 },
      { partitionKey: "c", explicitHashKey: undefined, data: [4], subSequenceNumber: 1 }
    ])
  })

  it("a reused aggregator builds each aggregate byte for byte as a fresh one would", () => {
    const reused = Aggregation.makeAggregator({ explicitHashKey: SHARD_KEY })
    const rounds = [
      ["a", "b", "c", "a"],
      ["c", "a", "d"],
      ["d", "d", "b", "e", "a"],
      ["e"],
      ["b", "a"]
    ]
    for (const [round, keys] of rounds.entries()) {
      const fresh = Aggregation.makeAggregator({ explicitHashKey: SHARD_KEY })
      reused.reset()
      for (const [i, partitionKey] of keys.entries()) {
        const explicitHashKey = i % 2 === 0 ? undefined : `${round + i}`
        const record = { partitionKey, explicitHashKey, data: Uint8Array.of(round, i) }
        expect(reused.add(record)).toBe(true)
        fresh.add(record)
      }
      expect(reused.size).toBe(fresh.size)
      expect(reused.build()).toEqual(fresh.build())
    }
  })

  it("rejects a maxBytes that is not a positive integer", () => {
    expect(() => Aggregation.makeAggregator({ explicitHashKey: "0", maxBytes: 0 })).toThrow(RangeError)
    expect(() => Aggregation.makeAggregator({ explicitHashKey: "0", maxBytes: 1.5 })).toThrow(RangeError)
  })
})

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

const keyArb = fc.oneof(
  fc.constantFrom("a", "b", "user-1", "user-2", "ü", "😀"),
  fc.string({ unit: "binary", minLength: 1, maxLength: 40 })
)
const hashKeyArb = fc.option(
  fc.constantFrom("0", "1", "340282366920938463463374607431768211455", "85070591730234615"),
  {
    nil: undefined
  }
)
// Lengths around the one/two-byte varint boundary get extra weight.
const dataArb = (maxData: number) =>
  fc.oneof(
    fc.uint8Array({ maxLength: maxData }),
    fc.constantFrom(0, 1, 127, 128, 129).map((n) => new Uint8Array(n).fill(7))
  )
const recordArb = (maxData: number) =>
  fc.record({ partitionKey: keyArb, explicitHashKey: hashKeyArb, data: dataArb(maxData) })

const sameUserRecords = (
  decoded: ReadonlyArray<Aggregation.UserRecord>,
  records: ReadonlyArray<Aggregation.KinesisRecord>
): void => {
  expect(plain(decoded)).toEqual(records.map((r, i) => ({
    partitionKey: r.partitionKey,
    explicitHashKey: r.explicitHashKey,
    data: [...r.data],
    subSequenceNumber: i
  })))
}

describe("Aggregation properties", () => {
  it("decode(encode(records)) gives back the records, keys and order; the reported size is exact", () => {
    fc.assert(
      fc.property(fc.array(recordArb(300), { minLength: 1, maxLength: 60 }), (records) => {
        const aggregator = Aggregation.makeAggregator({ explicitHashKey: SHARD_KEY })
        for (const record of records) expect(aggregator.add(record)).toBe(true)
        const built = aggregator.build()!
        expect(kinesisSize(built)).toBe(aggregator.size)
        const decoded = decodeOrThrow(built)
        if (records.length === 1) {
          expect(built.partitionKey).toBe(records[0]!.partitionKey)
          expect(built.explicitHashKey).toBe(records[0]!.explicitHashKey)
          expect(decoded[0]!.data).toBe(records[0]!.data)
        } else {
          expect(Aggregation.isAggregated(built.data)).toBe(true)
          expect(built.partitionKey).toBe(records[0]!.partitionKey)
          expect(built.explicitHashKey).toBe(SHARD_KEY)
        }
        sameUserRecords(decoded, records)
      }),
      { numRuns: 300 }
    )
  })

  it("'fits' is exact and no built record exceeds the limit, with a producer's flush loop", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4000 }),
        fc.array(recordArb(1500), { minLength: 1, maxLength: 40 }),
        (maxBytes, records) => {
          const aggregator = Aggregation.makeAggregator({ explicitHashKey: SHARD_KEY, maxBytes })
          let held: Array<Aggregation.KinesisRecord> = []
          for (const record of records) {
            const predicted = aggregator.sizeWith(record)
            const fits = aggregator.fits(record)
            expect(fits).toBe(predicted <= maxBytes)
            // What the record would really weigh, measured on an unlimited aggregator.
            const unlimited = Aggregation.makeAggregator({ explicitHashKey: SHARD_KEY, maxBytes: 2 ** 40 })
            for (const r of [...held, record]) unlimited.add(r)
            expect(kinesisSize(unlimited.build()!)).toBe(predicted)

            if (aggregator.add(record)) {
              expect(fits).toBe(true)
              held.push(record)
              const built = aggregator.build()!
              expect(kinesisSize(built)).toBe(aggregator.size)
              expect(aggregator.size).toBe(predicted)
              expect(kinesisSize(built)).toBeLessThanOrEqual(maxBytes)
              sameUserRecords(decodeOrThrow(built), held)
            } else {
              expect(fits).toBe(false)
              expect(predicted).toBeGreaterThan(maxBytes)
              aggregator.reset()
              held = []
              if (aggregator.add(record)) held.push(record)
              else expect(Aggregation.recordSize(record)).toBeGreaterThan(maxBytes)
            }
          }
        }
      ),
      { numRuns: 300 }
    )
  })

  it("a single record at the limit fits and one byte more does not", () => {
    fc.assert(
      fc.property(
        keyArb,
        fc.integer({ min: 300, max: 100_000 }),
        fc.integer({ min: -2, max: 2 }),
        (partitionKey, maxBytes, delta) => {
          const aggregator = Aggregation.makeAggregator({ explicitHashKey: SHARD_KEY, maxBytes })
          const data = new Uint8Array(maxBytes - utf8Bytes(partitionKey) + delta)
          expect(aggregator.add({ partitionKey, data })).toBe(delta <= 0)
          // A second record next to a near-full one goes over: the aggregate adds framing.
          if (delta <= 0) expect(aggregator.fits({ partitionKey, data: new Uint8Array(0) })).toBe(false)
        }
      ),
      { numRuns: 200 }
    )
  })

  it("two records filling the limit exactly fit, one byte more does not", () => {
    fc.assert(
      fc.property(keyArb, keyArb, fc.integer({ min: 2000, max: 300_000 }), (k1, k2, maxBytes) => {
        const probe = Aggregation.makeAggregator({ explicitHashKey: SHARD_KEY, maxBytes: 2 ** 40 })
        probe.add({ partitionKey: k1, data: new Uint8Array(100) })
        // Solve for the second payload so the aggregate is exactly maxBytes; varint widths make
        // some totals unreachable, so walk down to the largest reachable one.
        let length = maxBytes - probe.size
        while (probe.sizeWith({ partitionKey: k2, data: new Uint8Array(length) }) > maxBytes) length--
        const aggregator = Aggregation.makeAggregator({ explicitHashKey: SHARD_KEY, maxBytes })
        aggregator.add({ partitionKey: k1, data: new Uint8Array(100) })
        expect(aggregator.fits({ partitionKey: k2, data: new Uint8Array(length + 1) })).toBe(false)
        expect(aggregator.add({ partitionKey: k2, data: new Uint8Array(length) })).toBe(true)
        const built = aggregator.build()!
        expect(kinesisSize(built)).toBe(aggregator.size)
        expect(kinesisSize(built)).toBeLessThanOrEqual(maxBytes)
        expect(kinesisSize(built)).toBeGreaterThan(maxBytes - 3)
      }),
      { numRuns: 100 }
    )
  })

  it("recordSize counts UTF-8 bytes exactly as Node encodes them, lone surrogates included", () => {
    const anyUtf16 = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) })
    fc.assert(
      fc.property(fc.oneof(anyUtf16, fc.string({ unit: "binary" })), (partitionKey) => {
        expect(Aggregation.recordSize({ partitionKey, data: new Uint8Array(3) })).toBe(utf8Bytes(partitionKey) + 3)
      }),
      { numRuns: 1000 }
    )
  })
})
