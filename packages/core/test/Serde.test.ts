import { Serde } from "@effect-kinesis/core"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Result, Schema, SchemaGetter } from "effect"
import * as fc from "fast-check"

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text)
const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes)
const INVALID_UTF8 = Uint8Array.of(0x7b, 0xff, 0xfe, 0x7d)

const Order = Schema.Struct({
  id: Schema.String,
  amount: Schema.Number,
  placedAt: Schema.Date,
  total: Schema.BigInt,
  signature: Schema.Uint8Array,
  tags: Schema.Array(Schema.String),
  note: Schema.optional(Schema.String)
})
const order = {
  id: "o-1",
  amount: 12.5,
  placedAt: new Date("2024-05-01T10:00:00.000Z"),
  total: 12345678901234567890n,
  signature: Uint8Array.of(1, 2, 255),
  tags: ["a", "b"]
}

describe("Serde.json", () => {
  const serde = Serde.json(Order)

  it.effect("round-trips values, including those JSON has no type for", () =>
    Effect.gen(function*() {
      const bytes = yield* serde.serialize(order)
      expect(yield* serde.deserialize(bytes)).toEqual(order)
    }))

  it("writes the schema's JSON form as UTF-8 text", () => {
    const bytes = Result.getOrThrow(serde.serializeResult(order))
    expect(JSON.parse(text(bytes))).toEqual({
      id: "o-1",
      amount: 12.5,
      placedAt: "2024-05-01T10:00:00.000Z",
      total: "12345678901234567890",
      signature: "AQL/",
      tags: ["a", "b"]
    })
  })

  it("reads JSON written by other producers, with a byte-order mark or not", () => {
    const json = `{"id":"x","amount":1,"placedAt":"1970-01-01T00:00:00.000Z","total":"7","signature":"","tags":[]}`
    const expected = { id: "x", amount: 1, placedAt: new Date(0), total: 7n, signature: new Uint8Array(0), tags: [] }
    expect(Result.getOrThrow(serde.deserializeResult(utf8(json)))).toEqual(expected)
    expect(Result.getOrThrow(serde.deserializeResult(utf8(`\uFEFF${json}`)))).toEqual(expected)
  })

  it.effect("a value the schema rejects fails to serialize with the schema error as cause", () =>
    Effect.gen(function*() {
      const Positive = Serde.json(Schema.Struct({ n: Schema.Number.check(Schema.isGreaterThan(0)) }))
      const error = yield* Effect.flip(Positive.serialize({ n: -1 }))
      expect(error._tag).toBe("SerializationError")
      expect(Schema.isSchemaError(error.cause)).toBe(true)
      expect(error.message).toContain("greater than 0")
    }))

  const undecodable: Array<[string, Uint8Array, string]> = [
    ["not JSON", utf8("{oops"), "JSON"],
    ["JSON of the wrong shape", utf8(`{"id":1}`), `["id"]`],
    ["not UTF-8", INVALID_UTF8, "encoded data was not valid"],
    ["empty", new Uint8Array(0), "JSON"]
  ]
  for (const [name, bytes, reason] of undecodable) {
    it.effect(`${name}: fails with the bytes attached`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(serde.deserialize(bytes))
        expect(error._tag).toBe("DeserializationError")
        expect(error.bytes).toBe(bytes)
        expect(error.message).toContain(reason)
        const sync = serde.deserializeResult(bytes)
        expect(Result.isFailure(sync) && sync.failure.bytes).toBe(bytes)
      }))
  }

  it("a schema that cannot run synchronously fails per record instead of throwing", () => {
    const Slow = Schema.String.pipe(Schema.decodeTo(Schema.String, {
      decode: SchemaGetter.transformEffect<string, string>((s) => Effect.as(Effect.sleep(1), s)),
      encode: SchemaGetter.transformEffect<string, string>((s) => Effect.as(Effect.sleep(1), s))
    }))
    const result = Serde.json(Slow).serializeResult("x")
    expect(Result.isFailure(result) && result.failure.message).toContain("asynchronous")
  })

  it("round-trips arbitrary JSON values of an open schema", () => {
    const any = Serde.json(Schema.Json)
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const bytes = Result.getOrThrow(any.serializeResult(value as Schema.Json))
        expect(Result.getOrThrow(any.deserializeResult(bytes))).toEqual(JSON.parse(JSON.stringify(value)))
      })
    )
  })
})

describe("Serde.string", () => {
  it("round-trips every string, including one that starts with a byte-order mark", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), fc.boolean(), (s, bom) => {
        const value = bom ? `\uFEFF${s}` : s
        const bytes = Result.getOrThrow(Serde.string.serializeResult(value))
        expect(bytes).toEqual(utf8(value))
        expect(Result.getOrThrow(Serde.string.deserializeResult(bytes))).toBe(value)
      })
    )
  })

  it.effect("invalid UTF-8 is an error carrying the bytes, not replacement characters", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Serde.string.deserialize(INVALID_UTF8))
      expect(error._tag).toBe("DeserializationError")
      expect(error.bytes).toBe(INVALID_UTF8)
    }))
})

describe("Serde.bytes", () => {
  it.effect("passes the bytes through untouched", () =>
    Effect.gen(function*() {
      const data = Uint8Array.of(0, 1, 255)
      expect(yield* Serde.bytes.serialize(data)).toBe(data)
      expect(yield* Serde.bytes.deserialize(data)).toBe(data)
    }))
})

describe("custom serdes", () => {
  const int32 = Serde.makeSync<number>({
    serialize: (n) => {
      if (!Number.isInteger(n)) throw new RangeError(`not an integer: ${n}`)
      const bytes = new Uint8Array(4)
      new DataView(bytes.buffer).setInt32(0, n)
      return bytes
    },
    deserialize: (bytes) => {
      if (bytes.length !== 4) throw new Error(`expected 4 bytes, got ${bytes.length}`)
      return new DataView(bytes.buffer, bytes.byteOffset, 4).getInt32(0)
    }
  })

  it.effect("makeSync: round-trips through both the Effect and the Result functions", () =>
    Effect.gen(function*() {
      const bytes = yield* int32.serialize(-42)
      expect([...bytes]).toEqual([0xff, 0xff, 0xff, 0xd6])
      expect(yield* int32.deserialize(bytes)).toBe(-42)
      expect(Result.getOrThrow(int32.deserializeResult(Result.getOrThrow(int32.serializeResult(7))))).toBe(7)
    }))

  it.effect("makeSync: what the functions throw becomes the typed error's cause", () =>
    Effect.gen(function*() {
      const serializeError = yield* Effect.flip(int32.serialize(1.5))
      expect(serializeError._tag).toBe("SerializationError")
      expect(serializeError.cause).toBeInstanceOf(RangeError)
      expect(serializeError.message).toBe("not an integer: 1.5")

      const short = Uint8Array.of(1, 2)
      const deserializeError = yield* Effect.flip(int32.deserialize(short))
      expect(deserializeError.bytes).toBe(short)
      expect(deserializeError.message).toBe("expected 4 bytes, got 2")
    }))

  it.effect("make: effectful functions whose failures become the typed errors", () =>
    Effect.gen(function*() {
      const upper = Serde.make({
        serialize: (s: string) => s.length > 3 ? Effect.fail("too long") : Effect.succeed(utf8(s.toUpperCase())),
        deserialize: (bytes: Uint8Array) =>
          bytes.length === 0 ? Effect.fail(new Error("empty")) : Effect.succeed(text(bytes).toLowerCase())
      })
      expect(yield* upper.serialize("abc").pipe(Effect.flatMap(upper.deserialize))).toBe("abc")
      const tooLong = yield* Effect.flip(upper.serialize("abcd"))
      expect(tooLong).toMatchObject({ _tag: "SerializationError", message: "too long", cause: "too long" })
      const empty = new Uint8Array(0)
      const emptyError = yield* Effect.flip(upper.deserialize(empty))
      expect(emptyError).toMatchObject({ _tag: "DeserializationError", message: "empty", bytes: empty })
      expect(Serde.isSync(upper)).toBe(false)
    }))

  it("isSync tells the serdes with Result functions apart", () => {
    expect(Serde.isSync(int32)).toBe(true)
    expect(Serde.isSync(Serde.json(Order))).toBe(true)
    expect(Serde.isSync(Serde.string)).toBe(true)
  })
})
