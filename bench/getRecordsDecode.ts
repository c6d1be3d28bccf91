/**
 * Decoding one GetRecords response: the AWS SDK's deserializer against the `Client`'s own, on the
 * same bytes, in the same process, alternating. The response is what the consumer bench reads:
 * 100 KPL aggregates of ~50 KB (100-byte user records), base64 in JSON. A request handler answers
 * every call with it, so no network or emulator is measured, only the client side.
 *
 *   node --conditions=@effect-kinesis/source bench/getRecordsDecode.ts
 *
 * Prints CPU µs per response for each decoder and their ratio; writes
 * bench/results/getRecordsDecode.json.
 */
import { GetRecordsCommand, KinesisClient } from "@aws-sdk/client-kinesis"
import { Aggregation, Client } from "@effect-kinesis/core"
import { HttpResponse } from "@smithy/core/protocols"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import { Readable } from "node:stream"
import * as Results from "./results.ts"

const AGGREGATES = 100
const CALLS = Number(process.env.BENCH_CALLS ?? 40)
const ROUNDS = 5

const body = (() => {
  const records = []
  for (let a = 0; a < AGGREGATES; a++) {
    const aggregator = Aggregation.makeAggregator({ explicitHashKey: "0", maxBytes: 51_200 })
    for (let i = 0; aggregator.add({ partitionKey: `user-${i % 1000}`, data: randomBytes(100) }); i++);
    const aggregate = aggregator.build()!
    records.push({
      SequenceNumber: `4968084590925721099680154916607792453135588249830214${String(a).padStart(4, "0")}`,
      ApproximateArrivalTimestamp: 1_796_400_000.123,
      Data: Buffer.from(aggregate.data).toString("base64"),
      PartitionKey: aggregate.partitionKey
    })
  }
  return Buffer.from(JSON.stringify({ Records: records, NextShardIterator: "it", MillisBehindLatest: 0 }))
})()

// The real SDK client, its requests answered with `body` in 64 KiB chunks as a socket gives them.
const sdk = new KinesisClient({
  region: "us-east-1",
  endpoint: "http://127.0.0.1:1",
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
  maxAttempts: 1,
  requestHandler: {
    handle: async () => {
      const chunks: Array<Buffer> = []
      for (let i = 0; i < body.length; i += 65_536) chunks.push(body.subarray(i, i + 65_536))
      return {
        response: new HttpResponse({
          statusCode: 200,
          headers: { "content-type": "application/x-amz-json-1.1" },
          body: Readable.from(chunks)
        })
      }
    }
  }
})
const client = Client.fromSdk(sdk)

const viaSdk = async () => {
  for (let i = 0; i < CALLS; i++) await sdk.send(new GetRecordsCommand({ ShardIterator: "it" }))
}
const viaClient = async () => {
  for (let i = 0; i < CALLS; i++) await Effect.runPromise(client.getRecords({ ShardIterator: "it" }))
}

const cpuMicrosPerCall = async (run: () => Promise<void>) => {
  const start = process.cpuUsage()
  await run()
  const cpu = process.cpuUsage(start)
  return (cpu.user + cpu.system) / CALLS
}

await viaSdk()
await viaClient()
const sdkSamples: Array<number> = []
const clientSamples: Array<number> = []
for (let round = 0; round < ROUNDS; round++) {
  // Alternating which goes first.
  if (round % 2 === 0) {
    sdkSamples.push(await cpuMicrosPerCall(viaSdk))
    clientSamples.push(await cpuMicrosPerCall(viaClient))
  } else {
    clientSamples.push(await cpuMicrosPerCall(viaClient))
    sdkSamples.push(await cpuMicrosPerCall(viaSdk))
  }
}
const sdkMicros = Results.median(sdkSamples)
const clientMicros = Results.median(clientSamples)
const ratio = Number((clientMicros / sdkMicros).toFixed(3))
console.log(
  `one GetRecords response of ${AGGREGATES} aggregates (${(body.length / 1e6).toFixed(1)} MB of JSON): ` +
    `SDK deserializer ${(sdkMicros / 1000).toFixed(2)} ms CPU, Client ${(clientMicros / 1000).toFixed(2)} ms CPU ` +
    `(${ratio}x; medians of ${ROUNDS} rounds of ${CALLS} calls)`
)
Results.write("getRecordsDecode", {
  workload: { aggregates: AGGREGATES, bodyBytes: body.length, callsPerRound: CALLS, rounds: ROUNDS },
  sdkCpuMicrosPerResponse: Math.round(sdkMicros),
  clientCpuMicrosPerResponse: Math.round(clientMicros),
  clientToSdk: ratio
})
