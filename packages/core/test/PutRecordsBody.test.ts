import { KinesisClient, PutRecordsCommand, type PutRecordsRequestEntry } from "@aws-sdk/client-kinesis"
import { Client } from "@effect-kinesis/core"
import { assert, describe, it } from "@effect/vitest"
import { HttpResponse } from "@smithy/core/protocols"
import { Effect, Exit } from "effect"
import * as fc from "fast-check"
import { answeringSdk } from "./answeringSdk.ts"

/** An SDK client whose requests end in `sent` instead of on the network, answered with success. */
const capturingSdk = () => {
  const sent: Array<{ readonly body: unknown; readonly headers: Record<string, string> }> = []
  const sdk = new KinesisClient({
    region: "us-east-1",
    endpoint: "http://127.0.0.1:1",
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
    maxAttempts: 1,
    requestHandler: {
      handle: async (request: { body: unknown; headers: Record<string, string> }) => {
        sent.push({ body: request.body, headers: { ...request.headers } })
        const records = JSON.parse(bodyText(request.body)).Records as Array<unknown>
        const out = { FailedRecordCount: 0, Records: records.map((_, i) => ({ SequenceNumber: `${i}`, ShardId: "s" })) }
        return {
          response: new HttpResponse({
            statusCode: 200,
            headers: { "content-type": "application/x-amz-json-1.1" },
            body: Buffer.from(JSON.stringify(out))
          })
        }
      }
    }
  })
  return { sdk, sent }
}

const utf8 = new TextDecoder()
// TextDecoder: the SDK's own body is a Uint8Array subclass that warns on string conversions.
const bodyText = (body: unknown): string => typeof body === "string" ? body : utf8.decode(body as Uint8Array)

const keyArb = fc.oneof(
  fc.constantFrom("a", "user-42", "ü", "😀", "quote\"back\\slash", "tab\tnew\nline\u0000", "\u007f\u0080\u2028"),
  fc.string({ unit: "binary", minLength: 1, maxLength: 40 }),
  fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 256 })
)
const dataArb = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  // Both sides of the native-encoder threshold, and every remainder mod 3.
  fc.integer({ min: 250, max: 262 }).map((n) => Uint8Array.from({ length: n }, (_, i) => (i * 31) & 0xff)),
  fc.integer({ min: 0, max: 5 }).map((n) => new Uint8Array(n).fill(0xff))
)
const recordArb: fc.Arbitrary<PutRecordsRequestEntry> = fc.record({
  PartitionKey: keyArb,
  Data: dataArb,
  ExplicitHashKey: fc.option(fc.constantFrom("0", "340282366920938463463374607431768211455"), { nil: undefined })
}).map((r) => r.ExplicitHashKey === undefined ? { PartitionKey: r.PartitionKey, Data: r.Data } : r)
const streamArb = fc.constantFrom(
  "orders",
  "stream.with-dots_1",
  "arn:aws:kinesis:eu-west-1:123456789012:stream/orders"
)

describe("PutRecords request body", () => {
  it.effect("is the JSON the SDK's own serializer sends, for any keys and data", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(streamArb, fc.array(recordArb, { minLength: 1, maxLength: 20 }), async (stream, records) => {
          const ours = capturingSdk()
          const theirs = capturingSdk()
          const out = await Effect.runPromise(Client.fromSdk(ours.sdk).putRecords(stream, records))
          await theirs.sdk.send(
            new PutRecordsCommand(
              stream.startsWith("arn:")
                ? { Records: records, StreamARN: stream }
                : { Records: records, StreamName: stream }
            )
          )
          assert.deepStrictEqual(JSON.parse(bodyText(ours.sent[0]!.body)), JSON.parse(bodyText(theirs.sent[0]!.body)))
          // The length header is that of the bytes sent, not of the SDK's (empty) serialization.
          assert.strictEqual(Number(ours.sent[0]!.headers["content-length"]), (ours.sent[0]!.body as Uint8Array).length)
          assert.strictEqual(out.Records?.length, records.length)
        }),
        { numRuns: 200 }
      )
    ))

  it("is put in place before the request is signed", () => {
    const { sdk } = capturingSdk()
    Client.fromSdk(sdk)
    Client.fromSdk(sdk)
    const order = sdk.middlewareStack.identify()
    const ours = order.findIndex((name) => name.startsWith("effectKinesisPutRecordsBody"))
    const length = order.findIndex((name) => name.startsWith("contentLengthMiddleware"))
    const signing = order.findIndex((name) => name.startsWith("httpSigningMiddleware"))
    assert.isAtLeast(ours, 0)
    assert.strictEqual(order.filter((name) => name.startsWith("effectKinesisPutRecordsBody")).length, 1)
    assert.isBelow(ours, length)
    assert.isBelow(ours, signing)
  })

  it.effect("leaves records the SDK must convert to the SDK", () =>
    Effect.gen(function*() {
      const { sdk, sent } = capturingSdk()
      // A string is not a Uint8Array; the SDK's serializer knows what to do with it.
      const records = [{ PartitionKey: "k", Data: "text" as unknown as Uint8Array }]
      yield* Client.fromSdk(sdk).putRecords("orders", records)
      assert.deepStrictEqual(JSON.parse(bodyText(sent[0]!.body)).Records[0].PartitionKey, "k")
    }))
})

const resultArb = fc.oneof(
  fc.record({
    SequenceNumber: fc.bigInt({ min: 0n, max: 10n ** 56n }).map(String),
    ShardId: fc.constantFrom("shardId-000000000000", "shardId-000000000017")
  }),
  fc.record({
    ErrorCode: fc.constantFrom("ProvisionedThroughputExceededException", "InternalFailure", "KMSThrottlingException"),
    ErrorMessage: fc.string({ maxLength: 80 })
  })
)
const outputArb = fc.record({
  FailedRecordCount: fc.nat({ max: 500 }),
  Records: fc.array(resultArb, { maxLength: 20 }),
  EncryptionType: fc.option(fc.constantFrom("NONE", "KMS"), { nil: undefined })
}, { requiredKeys: ["Records"] })

const putVia = (sdk: KinesisClient) =>
  Effect.runPromiseExit(Client.fromSdk(sdk).putRecords("orders", [{ PartitionKey: "k", Data: new Uint8Array([1]) }]))
const putViaSdk = (sdk: KinesisClient) =>
  sdk.send(new PutRecordsCommand({ StreamName: "orders", Records: [{ PartitionKey: "k", Data: new Uint8Array([1]) }] }))
const withoutMetadata = (out: object) => {
  const { $metadata: _, ...rest } = out as { $metadata?: unknown }
  return JSON.parse(JSON.stringify(rest))
}

describe("PutRecords response body", () => {
  it("decodes to what the SDK's deserializer gives for the same bytes, whatever the chunking", async () => {
    await fc.assert(
      fc.asyncProperty(outputArb, fc.integer({ min: 3, max: 4096 }), async (body, chunk) => {
        const text = JSON.stringify(body)
        const sdk = answeringSdk("InvalidArgumentException", () => ({ status: 200, body: text, chunk }))
        const expected = await putViaSdk(sdk)
        const actual = await putVia(sdk)
        assert.isTrue(Exit.isSuccess(actual))
        if (!Exit.isSuccess(actual)) return
        assert.deepStrictEqual(withoutMetadata(actual.value), withoutMetadata(expected))
      }),
      { numRuns: 100 }
    )
  })

  it("is the client's decoder that runs, not the SDK's", async () => {
    const body = "{\"FailedRecordCount\":0,\"Records\":[{\"SequenceNumber\":\"7\",\"ShardId\":\"s\"}]}"
    const sdk = answeringSdk("InvalidArgumentException", () => ({ status: 200, body, chunk: 5 }))
    // What the SDK's own deserializer made of the body it was handed.
    const seen: Array<unknown> = []
    sdk.middlewareStack.add((next) => async (args) => {
      const result = await next(args)
      seen.push((result.output as { Records?: unknown }).Records)
      return result
    }, { step: "deserialize", priority: "high", name: "watchSdkDeserializer" })
    const actual = await putVia(sdk)
    assert.isTrue(Exit.isSuccess(actual))
    if (Exit.isSuccess(actual)) assert.deepStrictEqual(actual.value.Records, [{ SequenceNumber: "7", ShardId: "s" }])
    // It got the empty object: the records came from the client's decoder.
    assert.deepStrictEqual(seen, [undefined])
    await putViaSdk(sdk)
    assert.strictEqual(seen.length, 2)
    assert.isDefined(seen[1])
  })

  it("leaves malformed bodies and error responses to the SDK, which fails as it always does", async () => {
    const cases = [
      { status: 200, body: "{\"Records\":[" },
      { status: 200, body: "{\"Records\":[{\"SequenceNumber\":7}]}" },
      { status: 400, body: "{\"__type\":\"InvalidArgumentException\",\"message\":\"bad record\"}" }
    ]
    for (const c of cases) {
      const sdk = answeringSdk("InvalidArgumentException", () => ({ ...c, chunk: 7 }))
      const expected = await putViaSdk(sdk).then(() => undefined, (error: Error) => error)
      const actual = await putVia(sdk)
      if (expected === undefined) {
        // The SDK takes a wrongly typed field (it converts it); the client then gives the SDK's output.
        assert.isTrue(Exit.isSuccess(actual), c.body)
        continue
      }
      assert.isTrue(Exit.isFailure(actual), c.body)
      if (!Exit.isFailure(actual)) continue
      const error = actual.cause.reasons[0]
      assert.strictEqual(error?._tag, "Fail")
      const failure = (error as { error: { cause?: Error } }).error
      assert.strictEqual(failure.cause?.name, expected.name, c.body)
    }
  })
})
