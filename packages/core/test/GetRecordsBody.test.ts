import { GetRecordsCommand, KinesisClient } from "@aws-sdk/client-kinesis"
import { Client } from "@effect-kinesis/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as fc from "fast-check"
import { answeringSdk } from "./answeringSdk.ts"

const bytesArb = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc.integer({ min: 0, max: 5 }).map((n) => new Uint8Array(n).fill(0xff)),
  fc.integer({ min: 1000, max: 20_000 }).map((n) => new Uint8Array(n).fill(n & 0xff))
)
const recordArb = fc.record({
  SequenceNumber: fc.bigInt({ min: 0n, max: 10n ** 56n }).map(String),
  ApproximateArrivalTimestamp: fc.integer({ min: 1_600_000_000_000, max: 1_900_000_000_000 }).map((ms) => ms / 1000),
  Data: bytesArb.map((b) => Buffer.from(b).toString("base64")),
  PartitionKey: fc.string({ minLength: 1, maxLength: 40 }),
  EncryptionType: fc.option(fc.constantFrom("NONE", "KMS"), { nil: undefined })
})
const bodyArb = fc.record({
  Records: fc.array(recordArb, { maxLength: 8 }),
  NextShardIterator: fc.option(fc.string({ minLength: 1, maxLength: 300 }), { nil: undefined }),
  MillisBehindLatest: fc.option(fc.nat(), { nil: undefined }),
  ChildShards: fc.option(
    fc.array(
      fc.record({
        ShardId: fc.constantFrom("shardId-000000000004", "shardId-000000000005"),
        ParentShards: fc.array(fc.constantFrom("shardId-000000000000", "shardId-000000000001"), {
          minLength: 1,
          maxLength: 2
        }),
        HashKeyRange: fc.record({ StartingHashKey: fc.constant("0"), EndingHashKey: fc.constant("17") })
      }),
      { maxLength: 2 }
    ),
    { nil: undefined }
  )
}, { requiredKeys: ["Records"] })

const viaClient = (sdk: KinesisClient) =>
  Effect.runPromiseExit(Client.fromSdk(sdk).getRecords({ ShardIterator: "it", Limit: 10 }))
const viaSdk = (sdk: KinesisClient) => sdk.send(new GetRecordsCommand({ ShardIterator: "it", Limit: 10 }))

const comparable = (out: object) => {
  const { $metadata: _, ...rest } = out as { $metadata?: unknown }
  return JSON.parse(JSON.stringify(rest, (_key, value) => value instanceof Uint8Array ? [...value] : value))
}

describe("GetRecords response body", () => {
  it("decodes to what the SDK's deserializer gives for the same bytes, whatever the chunking", async () => {
    await fc.assert(
      fc.asyncProperty(bodyArb, fc.integer({ min: 256, max: 65_536 }), async (body, chunk) => {
        const text = JSON.stringify(body)
        const sdk = answeringSdk("ExpiredIteratorException", () => ({ status: 200, body: text, chunk }))
        const expected = await viaSdk(sdk)
        const actual = await viaClient(sdk)
        assert.isTrue(Exit.isSuccess(actual))
        if (!Exit.isSuccess(actual)) return
        assert.deepStrictEqual(comparable(actual.value), comparable(expected))
        // The same classes as the SDK's: Uint8Array data (not a Buffer) and Date timestamps.
        for (const record of actual.value.Records ?? []) {
          assert.strictEqual(Object.getPrototypeOf(record.Data), Uint8Array.prototype)
          assert.instanceOf(record.ApproximateArrivalTimestamp, Date)
        }
      }),
      { numRuns: 100 }
    )
  })

  it("decodes every body whole when one buffer joins the chunks of each: larger, smaller, concurrent, split characters", async () => {
    // Records of `size` bytes under multi-byte partition keys; a chunk size of 7 splits characters.
    const body = (n: number, size: number) =>
      JSON.stringify({
        Records: Array.from({ length: n }, (_, i) => ({
          SequenceNumber: String(1000 + i),
          Data: Buffer.alloc(size, i + n).toString("base64"),
          PartitionKey: `ключ-🙂-${n}-${i}`
        })),
        NextShardIterator: `next-${n}`
      })
    const bodies = [body(40, 30_000), body(3, 10), body(60, 30_000), body(1, 5), body(2, 200_000)]
    let at = 0
    const sdk = answeringSdk(
      "ExpiredIteratorException",
      () => ({ status: 200, body: bodies[at++ % bodies.length]!, chunk: 7 })
    )
    const check = (exit: Exit.Exit<{ readonly Records?: ReadonlyArray<any> | undefined }, unknown>, text: string) => {
      assert.isTrue(Exit.isSuccess(exit))
      if (!Exit.isSuccess(exit)) return
      const expected = JSON.parse(text) as { Records: Array<{ PartitionKey: string; Data: string }> }
      assert.deepStrictEqual(
        exit.value.Records!.map((r) => [r.PartitionKey, Buffer.from(r.Data).toString("base64")]),
        expected.Records.map((r) => [r.PartitionKey, r.Data])
      )
    }
    // One after another, each checked after the next ones were decoded: none shares the buffer.
    const sequential = []
    for (let i = 0; i < bodies.length; i++) sequential.push(await viaClient(sdk))
    sequential.forEach((exit, i) => check(exit, bodies[i]!))
    // Concurrently: the chunks of the responses interleave.
    at = 0
    const concurrent = await Promise.all(bodies.map(() => viaClient(sdk)))
    concurrent.forEach((exit, i) => check(exit, bodies[i]!))
  })

  it("is the client's decoder that runs, not the SDK's", async () => {
    // The SDK's check refuses the base64url letters that Node's decoder takes: the record comes
    // through only when the client decodes the body.
    const body = "{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"ab-_\",\"PartitionKey\":\"k\"}]}"
    const sdk = answeringSdk("ExpiredIteratorException", () => ({ status: 200, body, chunk: 5 }))
    await viaSdk(sdk).then(() => assert.fail("the SDK took base64url"), () => undefined)
    const actual = await viaClient(sdk)
    assert.isTrue(Exit.isSuccess(actual))
    if (Exit.isSuccess(actual)) assert.deepStrictEqual([...actual.value.Records![0]!.Data!], [0x69, 0xbf, 0xbf])
  })

  it("fails as the SDK does on data that is not base64, and leaves error responses to it", async () => {
    const cases = [
      { status: 200, body: "{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"ab!d\",\"PartitionKey\":\"k\"}]}" },
      { status: 200, body: "{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"abc\",\"PartitionKey\":\"k\"}]}" },
      { status: 200, body: "{\"Records\":[" },
      { status: 400, body: "{\"__type\":\"ExpiredIteratorException\",\"message\":\"Iterator expired\"}" }
    ]
    for (const c of cases) {
      const sdk = answeringSdk("ExpiredIteratorException", () => ({ ...c, chunk: 7 }))
      const expected = await viaSdk(sdk).then(() => undefined, (error: Error) => error)
      assert.isDefined(expected, c.body)
      const actual = await viaClient(sdk)
      assert.isTrue(Exit.isFailure(actual), c.body)
      if (!Exit.isFailure(actual)) continue
      const error = actual.cause.reasons[0]
      assert.strictEqual(error?._tag, "Fail")
      const failure = (error as { error: { cause?: Error; message: string } }).error
      // The client's typed error wraps the SDK's own error for these bytes.
      assert.strictEqual(failure.cause?.name, expected!.name, c.body)
    }
  })
})
