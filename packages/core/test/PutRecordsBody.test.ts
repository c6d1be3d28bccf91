import { KinesisClient, PutRecordsCommand, type PutRecordsRequestEntry } from "@aws-sdk/client-kinesis"
import { Client } from "@effect-kinesis/core"
import { assert, describe, it } from "@effect/vitest"
import { HttpResponse } from "@smithy/core/protocols"
import { Effect } from "effect"
import * as fc from "fast-check"

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
