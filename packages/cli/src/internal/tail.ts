/**
 * `effect-kinesis tail <stream>`: every record from a starting position on, deaggregated and
 * decoded, following resharding. It is the library's own consumer with an in-memory lease store
 * and a throwaway application name: one worker holding every lease, so children are read after
 * their parents are read to their end, per key in order, and nothing is written to DynamoDB.
 *
 * @internal
 */
import { Consumer, type ConsumerError, type ConsumerRecord, LeaseRepository } from "@effect-kinesis/consumer"
import { type Client, Serde } from "@effect-kinesis/core"
import { Deferred, Effect, Layer, type Stdio } from "effect"
import { randomUUID } from "node:crypto"
import { CommandError, fromKinesis } from "../CommandError.ts"
import * as Output from "./output.ts"

/** @internal */
export type Format = "text" | "json" | "raw"

/** @internal */
export interface Options {
  readonly stream: string
  readonly from: Consumer.InitialPosition
  readonly format: Format
  readonly limit: number | undefined
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

const text = (data: Uint8Array): string | undefined => {
  try {
    return utf8.decode(data)
  } catch {
    return undefined
  }
}

// Control characters would move the cursor or ring the bell on the reader's terminal.
const printable = (s: string): string =>
  // eslint-disable-next-line no-control-regex
  s.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) =>
    c === "\n" ? "\\n" : c === "\t" ? "\\t" : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)

/**
 * One record in the chosen format: `text` is one line (arrival time, shard, sequence/subsequence,
 * partition key, data as UTF-8 or base64); `json` one JSON object per line with the data parsed
 * as JSON when it is JSON; `raw` the data bytes as UTF-8 text and a newline.
 *
 * @internal
 */
export const formatRecord = (record: ConsumerRecord.ConsumerRecord<Uint8Array>, format: Format): string => {
  const decoded = text(record.data)
  if (format === "raw") return decoded ?? Buffer.from(record.data).toString("base64")
  const arrival = record.approximateArrivalTimestamp?.toISOString() ?? null
  if (format === "text") {
    const data = decoded === undefined ? `base64:${Buffer.from(record.data).toString("base64")}` : printable(decoded)
    const position = record.aggregated ? `${record.sequenceNumber}/${record.subSequenceNumber}` : record.sequenceNumber
    return `${arrival ?? "-"} ${record.shardId} ${position} ${printable(record.partitionKey)} ${data}`
  }
  let data: Record<string, unknown>
  if (decoded === undefined) data = { dataBase64: Buffer.from(record.data).toString("base64") }
  else {
    try {
      data = { data: JSON.parse(decoded) }
    } catch {
      data = { text: decoded }
    }
  }
  return JSON.stringify({
    shardId: record.shardId,
    sequenceNumber: record.sequenceNumber,
    subSequenceNumber: record.subSequenceNumber,
    partitionKey: record.partitionKey,
    ...(record.explicitHashKey === undefined ? {} : { explicitHashKey: record.explicitHashKey }),
    arrival,
    ...data
  })
}

/** @internal */
export const run = (options: Options): Effect.Effect<void, CommandError, Client.Client | Stdio.Stdio> =>
  Effect.gen(function*() {
    const enough = yield* Deferred.make<void>()
    let printed = 0
    const print = (record: ConsumerRecord.ConsumerRecord<Uint8Array>) =>
      Effect.suspend(() => {
        if (options.limit !== undefined && printed >= options.limit) return Effect.void
        printed++
        return Output.line(formatRecord(record, options.format)).pipe(
          Effect.andThen(
            options.limit !== undefined && printed >= options.limit ? Deferred.succeed(enough, undefined) : Effect.void
          )
        )
      })
    const consume = Consumer.consumeWith(print, {
      stream: options.stream,
      applicationName: `effect-kinesis-tail-${randomUUID().slice(0, 8)}`,
      workerId: "effect-kinesis-tail",
      deserializer: Serde.bytes,
      initialPosition: options.from,
      // A guest on shards that applications read too: GetRecords shares each shard's 5 calls/s between all readers.
      fetch: { pollInterval: "1 second", maxCallsPerSecond: 2 },
      // One worker and a lease store in memory: nobody to share with, so children are taken as soon as their parents
      // end and new shards are looked for often.
      lease: {
        expiry: "30 seconds",
        renewInterval: "10 seconds",
        takeInterval: "1 second",
        scanInterval: "200 millis",
        shardSyncInterval: "5 seconds",
        cleanupFinished: false
      },
      checkpoint: { records: 1, interval: "100 millis" },
      shutdownGracePeriod: "1 second"
    }).pipe(
      Effect.provide(Consumer.layer.pipe(Layer.provide(LeaseRepository.layerMemory))),
      Effect.catch((error) => Effect.fail(toCommandError(error, options.stream)))
    )
    if (options.limit === 0) return
    yield* Effect.raceFirst(consume, Deferred.await(enough))
  })

const toCommandError = (error: ConsumerError.ConsumerError, stream: string): CommandError => {
  switch (error._tag) {
    case "LeaseStoreError":
    case "ShardMapInvalid":
    case "RecordDecodeFailed":
      return new CommandError({
        reason: "Failed",
        message: `reading "${stream}" failed: ${error.message}`,
        cause: error
      })
    case "InvalidSetting":
      return new CommandError({ reason: "InvalidArgument", message: error.message, cause: error })
    default:
      return fromKinesis(error, stream)
  }
}
