import { Aggregation } from "@effect-kinesis/core"
import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import * as fc from "fast-check"
import { createHash } from "node:crypto"

// `forEachUserRecord` must visit exactly what `deaggregate` returns, for every input: the consumer
// builds its records from the visits, users of `deaggregate` from the array.

const MAGIC = [0xf3, 0x89, 0x9a, 0xc2]

/** Magic ‖ message ‖ MD5(message): a record that passes the framing checks whatever the message. */
const frame = (message: Uint8Array): Uint8Array => {
  const md5 = createHash("md5").update(message).digest()
  return Uint8Array.from([...MAGIC, ...message, ...md5])
}

interface Visited {
  readonly partitionKey: string
  readonly explicitHashKey: string | undefined
  readonly data: Uint8Array
  readonly subSequenceNumber: number
}

const visit = (record: Aggregation.KinesisRecord) => {
  const visited: Array<Visited> = []
  const result = Aggregation.forEachUserRecord(
    record,
    (partitionKey, explicitHashKey, start, end, subSequenceNumber) => {
      const data = Aggregation.isAggregated(record.data) ? record.data.subarray(start, end) : record.data
      if (data === record.data) expect([start, end]).toEqual([0, record.data.length])
      visited.push({ partitionKey, explicitHashKey, data, subSequenceNumber })
    }
  )
  return { result, visited }
}

/** Same records (same views into the same buffer), or the same error and nothing visited. */
const checkSame = (record: Aggregation.KinesisRecord): void => {
  const expected = Aggregation.deaggregate(record)
  const { result, visited } = visit(record)
  if (Result.isFailure(expected)) {
    expect(Result.isFailure(result)).toBe(true)
    if (Result.isFailure(result)) {
      expect(result.failure.message).toBe(expected.failure.message)
      expect(result.failure.offset).toBe(expected.failure.offset)
    }
    expect(visited).toEqual([])
    return
  }
  expect(Result.getOrThrow(result)).toBe(Aggregation.isAggregated(record.data))
  expect(visited).toHaveLength(expected.success.length)
  visited.forEach((v, i) => {
    const e = expected.success[i]!
    expect(v.partitionKey).toBe(e.partitionKey)
    expect(v.explicitHashKey).toBe(e.explicitHashKey)
    expect(v.subSequenceNumber).toBe(e.subSequenceNumber)
    expect(v.data.buffer).toBe(e.data.buffer)
    expect(v.data.byteOffset).toBe(e.data.byteOffset)
    expect(v.data.length).toBe(e.data.length)
  })
}

const keyArb = fc.oneof(fc.constantFrom("a", "b", "user-1", "ü", "😀"), fc.string({ minLength: 1, maxLength: 20 }))
const hashKeyArb = fc.option(fc.constantFrom("0", "1", "340282366920938463463374607431768211455", "8507059173"), {
  nil: undefined
})
const recordArb = fc.record({
  partitionKey: keyArb,
  explicitHashKey: hashKeyArb,
  data: fc.uint8Array({ maxLength: 40 })
})

const aggregateOf = (records: ReadonlyArray<Aggregation.KinesisRecord>): Aggregation.KinesisRecord => {
  const aggregator = Aggregation.makeAggregator({ explicitHashKey: "0" })
  for (const record of records) aggregator.add(record)
  return aggregator.build()!
}

describe("forEachUserRecord visits what deaggregate returns", () => {
  it("on aggregates of random records, with and without explicit hash keys", () => {
    fc.assert(fc.property(fc.array(recordArb, { minLength: 1, maxLength: 30 }), (records) => {
      checkSame(aggregateOf(records))
    }))
  })

  it("on aggregates whose message is corrupted, truncated or extended (framed again with a valid MD5)", () => {
    fc.assert(
      fc.property(
        fc.array(recordArb, { minLength: 2, maxLength: 10 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        fc.integer({ min: -8, max: 8 }),
        (records, edits, resize) => {
          const data = aggregateOf(records).data
          const message = data.slice(MAGIC.length, data.length - 16)
          for (const [at, value] of edits) message[at % message.length] = value
          const length = Math.max(0, message.length + resize)
          const resized = new Uint8Array(length)
          resized.set(message.subarray(0, Math.min(length, message.length)))
          checkSame({ partitionKey: "outer", data: frame(resized) })
        }
      )
    )
  })

  it("on random messages framed as aggregates", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 120 }), (message) => {
      checkSame({ partitionKey: "outer", explicitHashKey: "7", data: frame(message) })
    }))
  })

  it("on plain records: visited once as themselves, and the result says not aggregated", () => {
    const wrongDigest = aggregateOf([{ partitionKey: "a", data: new Uint8Array([1]) }, {
      partitionKey: "b",
      data: new Uint8Array([2])
    }]).data.slice()
    wrongDigest[wrongDigest.length - 1]! ^= 1
    for (const data of [new Uint8Array(0), Uint8Array.from(MAGIC), Uint8Array.from([1, 2, 3]), wrongDigest]) {
      const record = { partitionKey: "pk", explicitHashKey: "5", data }
      checkSame(record)
      const { result, visited } = visit(record)
      expect(Result.getOrThrow(result)).toBe(false)
      expect(visited).toEqual([{ partitionKey: "pk", explicitHashKey: "5", data, subSequenceNumber: 0 }])
      expect(visited[0]!.data).toBe(data)
    }
  })

  it("when the visitor decodes another aggregate (the decoder reuses its scratch space)", () => {
    fc.assert(
      fc.property(
        fc.array(recordArb, { minLength: 2, maxLength: 30 }),
        fc.array(recordArb, { minLength: 2, maxLength: 30 }),
        (outerRecords, innerRecords) => {
          const outer = aggregateOf(outerRecords)
          const inner = aggregateOf(innerRecords)
          const expected = Result.getOrThrow(Aggregation.deaggregate(outer))
          const seen: Array<[string, string | undefined, number, number]> = []
          Aggregation.forEachUserRecord(outer, (partitionKey, explicitHashKey, start, end, subSequenceNumber) => {
            // Decoding another aggregate in the middle must not change what is visited next.
            checkSame(inner)
            seen.push([partitionKey, explicitHashKey, end - start, subSequenceNumber])
          })
          expect(seen).toEqual(
            expected.map((e) => [e.partitionKey, e.explicitHashKey, e.data.length, e.subSequenceNumber])
          )
        }
      ),
      { numRuns: 50 }
    )
  })
})
