import { CloudWatchClient, type MetricDatum, PutMetricDataCommand } from "@aws-sdk/client-cloudwatch"
import { AwsQueryProtocol, AwsSmithyRpcV2CborProtocol } from "@aws-sdk/core/protocols"
import { CloudWatchEndpoint } from "@effect-kinesis/testing"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"

const client = (
  endpoint: CloudWatchEndpoint.CloudWatchEndpoint["Service"],
  protocol: "json" | "query" | "cbor" = "json"
) =>
  Effect.acquireRelease(
    Effect.sync(() =>
      new CloudWatchClient({
        ...endpoint.clientConfig,
        maxAttempts: 1,
        ...(protocol === "query"
          ? { protocol: AwsQueryProtocol }
          : protocol === "cbor"
          // With CBOR the SDK (3.1178) compresses the body but sends the uncompressed Content-Length, so a
          // compressed request never ends; CBOR clients here send uncompressed.
          ? { protocol: AwsSmithyRpcV2CborProtocol, disableRequestCompression: true }
          : {})
      })
    ),
    (c) => Effect.sync(() => c.destroy())
  )

const put = (sdk: CloudWatchClient, namespace: string, data: Array<MetricDatum>) =>
  Effect.tryPromise({
    try: () => sdk.send(new PutMetricDataCommand({ Namespace: namespace, MetricData: data })),
    catch: (e) => e
  })

const datum = (i: number, dimensions = 1): MetricDatum => ({
  MetricName: `M${i}`,
  Unit: "Count",
  Timestamp: new Date(),
  Dimensions: Array.from({ length: dimensions }, (_, d) => ({ Name: `D${d}`, Value: `v${i}` })),
  StatisticValues: { SampleCount: 2, Sum: 3, Minimum: 1, Maximum: 2 }
})

const failure = (error: unknown) => {
  const e = error as { name: string; Code?: string; $metadata: { httpStatusCode?: number }; $fault: string }
  return { name: e.name, code: e.Code, status: e.$metadata.httpStatusCode, fault: e.$fault }
}

describe("CloudWatchEndpoint", () => {
  it.live("decodes what the real client sends: JSON 1.0 (gzip or not), the awsQuery form encoding, RPC v2 CBOR", () =>
    Effect.gen(function*() {
      const endpoint = yield* CloudWatchEndpoint.make()
      const at = new Date(Date.now() - 60_000)
      const one: MetricDatum = {
        MetricName: "UserRecordsPut",
        Unit: "Count",
        Timestamp: at,
        StorageResolution: 60,
        Dimensions: [{ Name: "StreamName", Value: "orders & more" }, { Name: "ShardId", Value: "shardId-1" }],
        StatisticValues: { SampleCount: 4, Sum: 14.5, Minimum: 1, Maximum: 7 }
      }
      yield* put(yield* client(endpoint), "NS", [one, {
        MetricName: "Lag",
        Unit: "Milliseconds",
        Values: [1, 2],
        Counts: [3, 4]
      }])
      yield* put(yield* client(endpoint, "query"), "NS", [one])
      yield* put(yield* client(endpoint, "cbor"), "NS", [one])
      // Past the SDK's 10 KiB compression threshold.
      yield* put(yield* client(endpoint), "NS", Array.from({ length: 200 }, (_, i) => datum(i)))
      const calls = yield* endpoint.calls
      expect(calls.map((c) => [c.protocol, c.compressed, c.datums.length])).toEqual([
        ["json", false, 2],
        ["query", false, 1],
        ["cbor", false, 1],
        ["json", true, 200]
      ])
      for (const call of calls.slice(0, 3)) {
        expect(call.datums[0]).toEqual({
          namespace: "NS",
          metricName: "UserRecordsPut",
          unit: "Count",
          timestamp: at.getTime(),
          storageResolution: 60,
          dimensions: [{ name: "StreamName", value: "orders & more" }, { name: "ShardId", value: "shardId-1" }],
          value: undefined,
          values: undefined,
          counts: undefined,
          statisticValues: { sampleCount: 4, sum: 14.5, minimum: 1, maximum: 7 }
        })
      }
      expect(calls[0]!.datums[1]).toMatchObject({ values: [1, 2], counts: [3, 4] })
    }))

  it.live("rejects over-limit requests with CloudWatch's errors, as the SDK reports them", () =>
    Effect.gen(function*() {
      const endpoint = yield* CloudWatchEndpoint.make()
      const sdk = yield* client(endpoint)
      const tooMany = yield* Effect.flip(put(sdk, "NS", Array.from({ length: 1001 }, (_, i) => datum(i))))
      expect(failure(tooMany)).toEqual({
        name: "InvalidParameterValueException",
        code: "InvalidParameterValue",
        status: 400,
        fault: "client"
      })
      const cbor = yield* client(endpoint, "cbor")
      const tooManyCbor = yield* Effect.flip(put(cbor, "NS", Array.from({ length: 1001 }, (_, i) => datum(i))))
      expect(failure(tooManyCbor)).toMatchObject({ name: "InvalidParameterValueException", status: 400 })
      const wide = yield* Effect.flip(put(sdk, "NS", [datum(1, 31)]))
      expect(failure(wide).code).toBe("InvalidParameterValue")
      const big: Array<MetricDatum> = Array.from({ length: 40 }, (_, i) => ({
        ...datum(i),
        Dimensions: Array.from({ length: 30 }, (_, d) => ({ Name: `D${d}`, Value: "x".repeat(1024) }))
      }))
      const tooLarge = yield* Effect.flip(put(sdk, "NS", big))
      expect(failure(tooLarge)).toMatchObject({ code: "RequestEntityTooLarge", status: 413 })
      const stale = yield* Effect.flip(
        put(sdk, "NS", [{ ...datum(1), Timestamp: new Date(Date.now() - 15 * 86_400_000) }])
      )
      expect(failure(stale).code).toBe("InvalidParameterValue")
      expect((yield* endpoint.rejections).map((r) => r.code)).toEqual([
        "InvalidParameterValue",
        "InvalidParameterValue",
        "InvalidParameterValue",
        "RequestEntityTooLarge",
        "InvalidParameterValue"
      ])
      expect(yield* endpoint.calls).toEqual([])
    }))

  it.live("fails with 500, 503 or throttling on request, in the query and CBOR protocols' shapes too", () =>
    Effect.gen(function*() {
      const endpoint = yield* CloudWatchEndpoint.make({ fault: "InternalFailure" })
      const json = yield* client(endpoint)
      const query = yield* client(endpoint, "query")
      expect(failure(yield* Effect.flip(put(json, "NS", [datum(1)])))).toMatchObject({
        name: "InternalServiceFault",
        status: 500,
        fault: "server"
      })
      yield* endpoint.update({ fault: "Throttling" })
      expect(failure(yield* Effect.flip(put(json, "NS", [datum(1)])))).toMatchObject({
        code: "Throttling",
        status: 400
      })
      expect(failure(yield* Effect.flip(put(query, "NS", [datum(1)])))).toMatchObject({
        code: "Throttling",
        status: 400
      })
      const cbor = yield* client(endpoint, "cbor")
      expect(failure(yield* Effect.flip(put(cbor, "NS", [datum(1)])))).toMatchObject({
        code: "Throttling",
        status: 400
      })
      yield* endpoint.update({ fault: "InternalFailure" })
      expect(failure(yield* Effect.flip(put(cbor, "NS", [datum(1)])))).toMatchObject({
        name: "InternalServiceFault",
        status: 500
      })
      yield* endpoint.update({ fault: "ServiceUnavailable" })
      expect(failure(yield* Effect.flip(put(query, "NS", [datum(1)])))).toMatchObject({ status: 503 })
      expect((yield* endpoint.stats).failed).toBe(6)
    }))
})
