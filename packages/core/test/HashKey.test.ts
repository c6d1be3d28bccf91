import { HashKey } from "@effect-kinesis/core"
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { createHash } from "node:crypto"

// An independent reading of the digest: hex → BigInt, through createHash rather than the one-shot API.
const md5AsBigInt = (s: string) => BigInt("0x" + createHash("md5").update(Buffer.from(s, "utf8")).digest("hex"))

describe("HashKey", () => {
  it("spans the unsigned 128-bit integers", () => {
    expect(HashKey.MIN).toBe(0n)
    expect(HashKey.MAX).toBe(2n ** 128n - 1n)
    expect(HashKey.toDecimal(HashKey.MAX)).toBe("340282366920938463463374607431768211455")
    expect(HashKey.isValid(HashKey.MIN)).toBe(true)
    expect(HashKey.isValid(HashKey.MAX)).toBe(true)
    expect(HashKey.isValid(-1n)).toBe(false)
    expect(HashKey.isValid(HashKey.MAX + 1n)).toBe(false)
  })

  it("hashes partition keys to the RFC 1321 MD5 test vectors read big-endian", () => {
    const vectors: ReadonlyArray<readonly [string, string]> = [
      ["", "d41d8cd98f00b204e9800998ecf8427e"],
      ["a", "0cc175b9c0f1b6a831c399e269772661"],
      ["abc", "900150983cd24fb0d6963f7d28e17f72"],
      ["message digest", "f96b697d7cb7938d525a2f31aaf161d0"],
      ["abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"]
    ]
    for (const [input, hex] of vectors) expect(HashKey.fromPartitionKey(input), input).toBe(BigInt("0x" + hex))
    expect(HashKey.toDecimal(HashKey.fromPartitionKey("abc"))).toBe("191415658344158766168031473277922803570")
  })

  it("hashes the UTF-8 bytes of non-ASCII partition keys", () => {
    for (const input of ["ключ", "🔑-42", "日本語", "é"]) {
      expect(HashKey.fromPartitionKey(input), input).toBe(md5AsBigInt(input))
    }
    // "é" as one code point and as e + combining accent are different keys with different hashes.
    expect(HashKey.fromPartitionKey("\u00e9")).not.toBe(HashKey.fromPartitionKey("e\u0301"))
  })

  it("agrees with an independent MD5 for any partition key, and stays in range", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", minLength: 1, maxLength: 256 }), (pk) => {
        const key = HashKey.fromPartitionKey(pk)
        expect(key).toBe(md5AsBigInt(pk))
        expect(HashKey.isValid(key)).toBe(true)
      })
    )
  })

  it("parses every explicit hash key Kinesis accepts", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: HashKey.MIN, max: HashKey.MAX }), (key) => {
        expect(HashKey.parseExplicit(HashKey.toDecimal(key))).toBe(key)
      })
    )
    expect(HashKey.parseExplicit("0")).toBe(0n)
    expect(HashKey.parseExplicit("340282366920938463463374607431768211455")).toBe(HashKey.MAX)
  })

  it("rejects explicit hash keys Kinesis rejects", () => {
    const rejected = [
      "",
      "00",
      "01",
      "-1",
      "+1",
      " 1",
      "1 ",
      "1.5",
      "1e3",
      "0x10",
      "１", // full-width digit
      "340282366920938463463374607431768211456", // 2^128
      "999999999999999999999999999999999999999", // 39 digits, too large
      "1000000000000000000000000000000000000000" // 40 digits
    ]
    for (const s of rejected) expect(HashKey.parseExplicit(s), JSON.stringify(s)).toBeUndefined()
    fc.assert(
      fc.property(fc.bigInt({ min: HashKey.MAX + 1n, max: 1n << 140n }), (key) => {
        expect(HashKey.parseExplicit(key.toString())).toBeUndefined()
      })
    )
  })
})
