import type { _Record } from "@aws-sdk/client-kinesis"
import { Aggregation, ExtendedSequenceNumber, Serde } from "@effect-kinesis/core"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fc from "fast-check"
import type * as RecordDecoder from "../src/internal/recordDecoder.ts"

// An internal module (the package does not export it): loaded by path, which the compiler leaves
// as is, where a static import across the src and test projects does not compile.
const { make }: typeof RecordDecoder = await import(
  new URL("../src/internal/recordDecoder.ts", import.meta.url).href
)

// The decoder builds records a chunk at a time, with a fast path for `Serde.bytes`: whatever the
// path and the chunking, the records handed on must be those `deaggregate` gives, in order.

const sequenceNumber = (i: number) => String(1_000_000 + i)

/** Kinesis records: aggregates of `sizes[i]` user records (a plain record for 1). */
const batchOf = (sizes: ReadonlyArray<number>): Array<_Record> =>
  sizes.map((size, i) => {
    const aggregator = Aggregation.makeAggregator({ explicitHashKey: "0" })
    for (let j = 0; j < size; j++) {
      aggregator.add({
        partitionKey: `key-${j % 7}`,
        explicitHashKey: j % 5 === 0 ? "17" : undefined,
        data: new TextEncoder().encode(`${i}/${j}`)
      })
    }
    const record = aggregator.build()!
    return {
      SequenceNumber: sequenceNumber(i),
      PartitionKey: record.partitionKey,
      Data: record.data,
      ApproximateArrivalTimestamp: new Date(0)
    }
  })

/** What the decoder must hand on: `deaggregate`'s user records, as `[seq, sub, key, ehk, text]`. */
const expectedOf = (records: ReadonlyArray<_Record>) =>
  records.flatMap((r) => {
    const users = Aggregation.deaggregate({ partitionKey: r.PartitionKey!, data: r.Data! })
    if (users._tag === "Failure") throw new Error("unexpected")
    return users.success.map((u) => [
      r.SequenceNumber,
      u.subSequenceNumber,
      u.partitionKey,
      u.explicitHashKey,
      new TextDecoder().decode(u.data)
    ])
  })

const decodeAll = <A>(records: ReadonlyArray<_Record>, deserializer: Serde.Serde<A>) => {
  const decoder = make({
    shardId: "shardId-0",
    after: ExtendedSequenceNumber.make(ExtendedSequenceNumber.TRIM_HORIZON),
    deserializer,
    hashKeyRange: undefined,
    onDelivered: () => {},
    onDropped: () => {}
  })
  const batch = Effect.runSync(decoder.decode(records))
  const chunks: Array<RecordDecoder.DecodedChunk<A>> = []
  for (let chunk = batch.next(); chunk !== undefined; chunk = batch.next()) chunks.push(chunk)
  return { batch, chunks, items: chunks.flatMap((c) => c.items) }
}

describe("RecordDecoder", () => {
  it("hands on deaggregate's user records, in chunks, the same with Serde.bytes, Serde.string and an effectful serde", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 1500 }), { minLength: 1, maxLength: 4 }), (sizes) => {
        const records = batchOf(sizes)
        const expected = expectedOf(records)
        const viaBytes = decodeAll(records, Serde.bytes)
        const viaString = decodeAll(records, Serde.string)
        const effectful = Serde.make({
          serialize: (s: string) => Effect.succeed(new TextEncoder().encode(s)),
          deserialize: (bytes) => Effect.succeed(new TextDecoder().decode(bytes))
        })
        const viaEffect = decodeAll(records, effectful)
        for (const { batch, chunks, items } of [viaBytes, viaString, viaEffect]) {
          expect(batch.count).toBe(expected.length)
          expect(items).toHaveLength(expected.length)
          for (const chunk of chunks) expect(chunk.items.length).toBeGreaterThan(0)
        }
        expect(viaBytes.items.map((item) => {
          if (!("data" in item)) throw new Error("undecodable")
          return [
            item.sequenceNumber,
            item.subSequenceNumber,
            item.partitionKey,
            item.explicitHashKey,
            new TextDecoder().decode(item.data)
          ]
        })).toEqual(expected)
        for (const via of [viaString, viaEffect]) {
          expect(via.items.map((item) => {
            if (!("data" in item)) throw new Error("undecodable")
            return [item.sequenceNumber, item.subSequenceNumber, item.partitionKey, item.explicitHashKey, item.data]
          })).toEqual(expected)
        }
        // Aggregated user records are views, a plain record's data is the record's own.
        viaBytes.items.forEach((item, i) => {
          if (!("data" in item)) return
          const r = records.find((r) => r.SequenceNumber === item.sequenceNumber)!
          if (item.aggregated) expect(item.data.buffer).toBe(r.Data!.buffer)
          else expect(item.data).toBe(r.Data)
          expect(item.aggregated).toBe(sizes[records.indexOf(r)]! > 1)
          expect(i >= 0).toBe(true)
        })
      }),
      { numRuns: 30 }
    )
  })

  it("an undecodable record fails alone, in place, in whichever chunk it falls", () => {
    const records = batchOf([3000])
    // Fails on the records whose text ends in 0, 1023, 1024 and 2047 (chunk edges included).
    const bad = new Set(["0/0", "0/1023", "0/1024", "0/2047"])
    const picky = Serde.makeSync({
      serialize: (s: string) => new TextEncoder().encode(s),
      deserialize: (bytes) => {
        const text = new TextDecoder().decode(bytes)
        if (bad.has(text)) throw new Error(`bad ${text}`)
        return text
      }
    })
    const { batch, chunks, items } = decodeAll(records, picky)
    expect(batch.count).toBe(3000)
    expect(items).toHaveLength(3000)
    expect(chunks.reduce((n, c) => n + c.failures, 0)).toBe(4)
    const failedAt = items.flatMap((item, i) => ("cause" in item ? [i] : []))
    expect(failedAt).toEqual([0, 1023, 1024, 2047])
    items.forEach((item, i) => {
      const record = "cause" in item ? item.record : item
      expect(record.subSequenceNumber).toBe(i)
      if (!("cause" in item)) expect(item.data).toBe(`0/${i}`)
    })
  })
})
