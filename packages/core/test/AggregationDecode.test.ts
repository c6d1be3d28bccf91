import { Aggregation } from "@effect-kinesis/core"
import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import * as fc from "fast-check"
import { createHash } from "node:crypto"

const MAGIC = [0xf3, 0x89, 0x9a, 0xc2]

/** Magic ‖ message ‖ MD5(message): a record that passes the framing checks whatever the message. */
const frame = (message: ArrayLike<number>): Uint8Array => {
  const bytes = Uint8Array.from(message as ArrayLike<number>)
  const md5 = createHash("md5").update(bytes).digest()
  return Uint8Array.from([...MAGIC, ...bytes, ...md5])
}

const failureOf = (data: Uint8Array): Aggregation.AggregationDecodeError => {
  const result = Aggregation.deaggregate({ partitionKey: "outer", data })
  if (Result.isSuccess(result)) throw new Error("expected a decode failure")
  return result.failure
}

/**
 * What every input must produce: records whose data are views inside the input, or the typed
 * error. Anything thrown fails the property.
 */
const checkDecodes = (data: Uint8Array): void => {
  const result = Aggregation.deaggregate({ partitionKey: "outer", data })
  if (Result.isFailure(result)) {
    expect(result.failure).toBeInstanceOf(Aggregation.AggregationDecodeError)
    expect(result.failure._tag).toBe("AggregationDecodeError")
    expect(result.failure.offset).toBeGreaterThanOrEqual(0)
    expect(result.failure.offset).toBeLessThan(data.length)
    return
  }
  result.success.forEach((record, i) => {
    expect(record.subSequenceNumber).toBe(i)
    expect(typeof record.partitionKey).toBe("string")
    expect(record.data.buffer).toBe(data.buffer)
    expect(record.data.byteOffset).toBeGreaterThanOrEqual(data.byteOffset)
    expect(record.data.byteOffset + record.data.length).toBeLessThanOrEqual(data.byteOffset + data.length)
  })
}

describe("deaggregate: plain records pass through unchanged", () => {
  const plainCases: Array<[string, Uint8Array]> = [
    ["no magic", Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21])],
    ["empty", new Uint8Array(0)],
    ["magic only", Uint8Array.from(MAGIC)],
    ["magic and a valid digest of an empty message: 20 bytes, too short", frame([])],
    [
      "magic, a message and a wrong digest",
      (() => {
        const data = frame([0x0a, 0x01, 0x61, 0x1a, 0x04, 0x08, 0x00, 0x1a, 0x00])
        data[data.length - 1]! ^= 1
        return data
      })()
    ]
  ]
  for (const [name, data] of plainCases) {
    it(name, () => {
      const result = Aggregation.deaggregate({ partitionKey: "pk", explicitHashKey: "5", data })
      expect(Aggregation.isAggregated(data)).toBe(false)
      expect(Result.isSuccess(result)).toBe(true)
      const records = Result.getOrThrow(result)
      expect(records).toHaveLength(1)
      expect(records[0]).toEqual({ partitionKey: "pk", explicitHashKey: "5", data, subSequenceNumber: 0 })
      expect(records[0]!.data).toBe(data)
    })
  }

  it("any data without the magic is a plain record", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (data) => {
        fc.pre(!(data[0] === MAGIC[0] && data[1] === MAGIC[1] && data[2] === MAGIC[2] && data[3] === MAGIC[3]))
        const records = Result.getOrThrow(Aggregation.deaggregate({ partitionKey: "pk", data }))
        expect(records).toHaveLength(1)
        expect(records[0]!.data).toBe(data)
      })
    )
  })
})

describe("deaggregate: a framed aggregate with a malformed message is a typed error", () => {
  const cases: Array<[string, Array<number>, string]> = [
    ["truncated varint", [0x1a], "truncated varint"],
    ["varint longer than ten bytes", [0x48, ...Array(10).fill(0xff), 0x01], "varint longer than 64 bits"],
    ["ten-byte varint overflowing 64 bits", [0x48, ...Array(9).fill(0xff), 0x02], "varint longer than 64 bits"],
    ["length past the end", [0x0a, 0x05, 0x61], "length past end"],
    ["a length of 2^35 (must not allocate)", [0x1a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], "length past end"],
    [
      "a record's data longer than the record",
      [0x0a, 0x01, 0x61, 0x1a, 0x04, 0x08, 0x00, 0x1a, 0x05],
      "length past end"
    ],
    ["partition_key_index out of range", [0x0a, 0x01, 0x61, 0x1a, 0x04, 0x08, 0x01, 0x1a, 0x00], "out of range"],
    [
      "partition_key_index near 2^64",
      [0x0a, 0x01, 0x61, 0x1a, 0x0d, 0x08, ...Array(9).fill(0xff), 0x01, 0x1a, 0x00],
      "out of range"
    ],
    [
      "explicit_hash_key_index with an empty table",
      [0x0a, 0x01, 0x61, 0x1a, 0x06, 0x08, 0x00, 0x10, 0x00, 0x1a, 0x00],
      "out of range"
    ],
    ["missing partition_key_index", [0x0a, 0x01, 0x61, 0x1a, 0x02, 0x1a, 0x00], "missing partition_key_index"],
    ["missing data", [0x0a, 0x01, 0x61, 0x1a, 0x02, 0x08, 0x00], "missing data"],
    ["partition_key_table as a varint", [0x08, 0x00], "partition_key_table: wire type 0"],
    ["records as fixed32", [0x1d, 1, 2, 3, 4], "records: wire type 5"],
    ["data as a varint", [0x0a, 0x01, 0x61, 0x1a, 0x04, 0x08, 0x00, 0x18, 0x00], "data: wire type 0"],
    [
      "partition_key_index as bytes",
      [0x0a, 0x01, 0x61, 0x1a, 0x03, 0x0a, 0x01, 0x00],
      "partition_key_index: wire type 2"
    ],
    ["tags as a varint", [0x0a, 0x01, 0x61, 0x1a, 0x06, 0x08, 0x00, 0x1a, 0x00, 0x20, 0x01], "tags: wire type 0"],
    ["field number 0", [0x02, 0x00], "field number 0"],
    ["wire type 6", [0x4e], "invalid wire type 6"],
    ["wire type 7", [0x4f], "invalid wire type 7"],
    ["tag longer than 32 bits", [0xff, 0xff, 0xff, 0xff, 0x7f], "field tag longer than 32 bits"],
    ["truncated fixed64", [0x51, 1, 2, 3], "past end"],
    ["truncated fixed32", [0x5d, 1, 2], "past end"],
    ["unterminated group", [0x63, 0x08, 0x01], "unterminated group"],
    ["end-group without start", [0x64], "end-group tag without a start-group"],
    ["mismatched end-group", [0x63, 0x6c], "does not match"],
    ["groups nested 200 deep", Array(200).fill(0x63), "nested too deeply"]
  ]
  for (const [name, message, reason] of cases) {
    it(name, () => {
      const data = frame(message)
      expect(Aggregation.isAggregated(data)).toBe(true)
      const error = failureOf(data)
      expect(error).toBeInstanceOf(Aggregation.AggregationDecodeError)
      expect(error.message).toContain(reason)
    })
  }
})

describe("deaggregate: lenient where protobuf runtimes are lenient", () => {
  it("malformed UTF-8 in a key becomes U+FFFD instead of failing the aggregate", () => {
    const data = frame([0x0a, 0x02, 0xff, 0x61, 0x1a, 0x04, 0x08, 0x00, 0x1a, 0x00])
    const records = Result.getOrThrow(Aggregation.deaggregate({ partitionKey: "outer", data }))
    expect(records.map((r) => r.partitionKey)).toEqual(["\uFFFDa"])
  })

  it("a message holding no records decodes to no user records", () => {
    // An unknown field makes the message non-empty, so the frame is longer than 20 bytes.
    const data = frame([0x48, 0x01])
    expect(Result.getOrThrow(Aggregation.deaggregate({ partitionKey: "outer", data }))).toEqual([])
  })
})

const validAggregate = fc
  .array(
    fc.record({
      partitionKey: fc.string({ minLength: 1, maxLength: 12 }),
      explicitHashKey: fc.option(fc.constantFrom("1", "2", "3"), { nil: undefined }),
      data: fc.uint8Array({ maxLength: 40 })
    }),
    { minLength: 2, maxLength: 12 }
  )
  .map((records) => {
    const aggregator = Aggregation.makeAggregator({ explicitHashKey: "0" })
    for (const record of records) aggregator.add(record)
    const data = aggregator.build()!.data
    // The message alone, without magic and digest.
    return data.slice(4, data.length - 16)
  })

type Mutation =
  | { readonly kind: "flip"; readonly at: number; readonly mask: number }
  | { readonly kind: "set"; readonly at: number; readonly value: number }
  | { readonly kind: "truncate"; readonly at: number }
  | { readonly kind: "insert"; readonly at: number; readonly bytes: Uint8Array }
  | { readonly kind: "delete"; readonly at: number; readonly count: number }

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant("set" as const), at: fc.nat(), value: fc.constantFrom(0x00, 0x7f, 0x80, 0xff) }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant("insert" as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 12 })
  }),
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) })
)

const mutate = (message: Uint8Array, mutations: ReadonlyArray<Mutation>): Array<number> => {
  let bytes = [...message]
  for (const m of mutations) {
    if (bytes.length === 0) break
    const at = m.at % bytes.length
    switch (m.kind) {
      case "flip":
        bytes[at]! ^= m.mask
        break
      case "set":
        bytes[at] = m.value
        break
      case "truncate":
        bytes = bytes.slice(0, at)
        break
      case "insert":
        bytes.splice(at, 0, ...m.bytes)
        break
      case "delete":
        bytes.splice(at, m.count)
        break
    }
  }
  return bytes
}

describe("deaggregate fuzzing: never throws, never hangs, returns records or the typed error", () => {
  it("random messages with a valid frame", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (message) => checkDecodes(frame(message))), {
      numRuns: 3000
    })
  })

  it("random messages made of plausible protobuf pieces", () => {
    const piece = fc.oneof(
      fc.constantFrom(0x08, 0x0a, 0x10, 0x12, 0x1a, 0x22, 0x63, 0x64, 0x80, 0xff, 0x00, 0x01),
      fc.integer({ min: 0, max: 255 })
    )
    fc.assert(fc.property(fc.array(piece, { maxLength: 200 }), (message) => checkDecodes(frame(message))), {
      numRuns: 3000
    })
  })

  it("valid aggregates with bytes flipped, set, inserted, deleted or cut, then re-digested", () => {
    let failures = 0
    let successes = 0
    fc.assert(
      fc.property(validAggregate, fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (message, mutations) => {
        const data = frame(mutate(message, mutations))
        checkDecodes(data)
        if (Result.isFailure(Aggregation.deaggregate({ partitionKey: "outer", data }))) failures++
        else successes++
      }),
      { numRuns: 3000 }
    )
    // The mutations exercise both outcomes: the parser is really being reached.
    expect(failures).toBeGreaterThan(100)
    expect(successes).toBeGreaterThan(100)
  })

  it("an aggregate embedded in a larger buffer decodes to views of that buffer", () => {
    fc.assert(
      fc.property(
        validAggregate,
        fc.uint8Array({ maxLength: 16 }),
        fc.uint8Array({ maxLength: 16 }),
        (m, pre, post) => {
          const framed = frame(m)
          const backing = Uint8Array.from([...pre, ...framed, ...post])
          const view = backing.subarray(pre.length, pre.length + framed.length)
          checkDecodes(view)
          expect(Result.isSuccess(Aggregation.deaggregate({ partitionKey: "outer", data: view }))).toBe(true)
        }
      )
    )
  })
})
