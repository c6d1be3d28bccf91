import { Client, KinesisError } from "@effect-kinesis/core"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"

const sdkError = (name: string, status: number, extra: Record<string, unknown> = {}) => ({
  name,
  message: `${name} happened`,
  $metadata: { httpStatusCode: status },
  ...extra
})

describe("KinesisError.fromSdkError", () => {
  it("maps each Kinesis exception to its tagged error and says whether retrying helps", () => {
    const cases: Array<[string, number, KinesisError.KinesisError["_tag"], boolean]> = [
      ["ResourceNotFoundException", 400, "StreamNotFound", false],
      ["ProvisionedThroughputExceededException", 400, "Throttled", true],
      ["LimitExceededException", 400, "Throttled", true],
      ["KMSThrottlingException", 400, "Throttled", true],
      ["ExpiredIteratorException", 400, "ExpiredIterator", false],
      ["InvalidArgumentException", 400, "InvalidArgument", false],
      ["ValidationException", 400, "InvalidArgument", false],
      ["ExpiredNextTokenException", 400, "InvalidArgument", false],
      ["ResourceInUseException", 400, "ResourceInUse", true],
      ["AccessDeniedException", 400, "AccessDenied", false],
      ["UnrecognizedClientException", 400, "AccessDenied", false],
      ["ExpiredTokenException", 400, "AccessDenied", false],
      ["KMSDisabledException", 400, "AccessDenied", false],
      ["InternalFailure", 500, "ServiceUnavailable", true],
      ["ServiceUnavailable", 503, "ServiceUnavailable", true],
      ["SomethingNew", 502, "ServiceUnavailable", true],
      ["SomethingNew", 400, "UnknownKinesisError", false]
    ]
    for (const [name, status, tag, retryable] of cases) {
      const error = KinesisError.fromSdkError("PutRecords", sdkError(name, status))
      assert.strictEqual(error._tag, tag, name)
      assert.strictEqual(error.retryable, retryable, name)
      assert.strictEqual(error.operation, "PutRecords")
      assert.strictEqual(error.message, `${name} happened`)
    }
  })

  it("treats connection failures as transient and keeps the cause", () => {
    const reset = Object.assign(new Error("socket hang up"), { code: "ECONNRESET" })
    const error = KinesisError.fromSdkError("GetRecords", reset)
    assert.strictEqual(error._tag, "ServiceUnavailable")
    assert.isTrue(error.retryable)
    assert.strictEqual(error.cause, reset)
  })

  it("keeps anything unrecognised as UnknownKinesisError", () => {
    const error = KinesisError.fromSdkError("GetRecords", "boom")
    assert.strictEqual(error._tag, "UnknownKinesisError")
    assert.strictEqual(error.cause, "boom")
  })
})

describe("Client.clientConfig", () => {
  it.effect("reads the endpoint, region and handler from the environment, with defaults", () =>
    Effect.gen(function*() {
      const configured = yield* Client.clientConfig.parse(ConfigProvider.fromUnknown({
        KINESIS_ENDPOINT: "http://127.0.0.1:4567",
        AWS_REGION: "eu-west-1",
        KINESIS_HTTP_HANDLER: "http1"
      }))
      assert.deepStrictEqual(configured, {
        endpoint: "http://127.0.0.1:4567",
        region: "eu-west-1",
        httpHandler: "http1",
        maxAttempts: 1
      })
      const defaults = yield* Client.clientConfig.parse(ConfigProvider.fromUnknown({}))
      assert.deepStrictEqual(defaults, { endpoint: undefined, region: undefined, httpHandler: "http2", maxAttempts: 1 })
      const bad = yield* Effect.flip(
        Client.clientConfig.parse(ConfigProvider.fromUnknown({ KINESIS_HTTP_HANDLER: "http3" }))
      )
      assert.strictEqual(bad._tag, "ConfigError")
    }))
})
