/**
 * @internal
 *
 * The body of a successful GetRecords response, decoded here instead of by the SDK.
 *
 * The SDK checks every record's base64 `Data` against a regular expression before decoding it,
 * which for a batch of aggregates costs more than the decoding itself: this decoder spends about
 * a quarter of the SDK's CPU on the same response (bench/getRecordsDecode.ts). Here `Data` goes straight
 * through Node's native decoder, and the output has the shape the SDK gives. Error responses are
 * left to the SDK.
 */
import type {
  _Record,
  GetRecordsCommandOutput,
  GetRecordsInput,
  GetRecordsOutput,
  KinesisClient
} from "@aws-sdk/client-kinesis"
import { type DecodedSlot, decoding, MalformedBody, optionalString } from "./responseBody.ts"

/** Where an input marked by `input` receives the output decoded by `install`'s middleware. */
const DECODED = Symbol.for("@effect-kinesis/core/GetRecordsBody")

type Slot = DecodedSlot<GetRecordsOutput>

interface MarkedInput extends GetRecordsInput {
  readonly [DECODED]?: Slot
}

// Base64 as Kinesis writes it: the native decoder skips characters outside the alphabet, so a
// decoded length that differs from what the text's length implies means the text was not base64.
const decodeBase64 = (text: string): Uint8Array => {
  const length = text.length
  if (length % 4 !== 0) throw new MalformedBody("Data: incorrect padding on base64 string")
  const padding = length === 0
    ? 0
    : text.charCodeAt(length - 1) !== 0x3d
    ? 0
    : text.charCodeAt(length - 2) === 0x3d
    ? 2
    : 1
  const buffer = Buffer.from(text, "base64")
  if (buffer.length !== (length / 4) * 3 - padding) throw new MalformedBody("Data: invalid base64 string")
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
}

const record = (raw: unknown): _Record => {
  if (typeof raw !== "object" || raw === null) throw new MalformedBody("Records: expected objects")
  const r = raw as Record<string, unknown>
  const data = r.Data
  if (typeof data !== "string") throw new MalformedBody("Data: expected a base64 string")
  const arrival = r.ApproximateArrivalTimestamp
  if (arrival !== undefined && arrival !== null && (typeof arrival !== "number" || !Number.isFinite(arrival))) {
    throw new MalformedBody("ApproximateArrivalTimestamp: expected epoch seconds")
  }
  return {
    SequenceNumber: optionalString(r.SequenceNumber, "SequenceNumber"),
    // Epoch seconds with a fraction, rounded to the millisecond as the SDK does.
    ApproximateArrivalTimestamp: typeof arrival === "number" ? new Date(Math.round(arrival * 1000)) : undefined,
    Data: decodeBase64(data),
    PartitionKey: optionalString(r.PartitionKey, "PartitionKey"),
    EncryptionType: optionalString(r.EncryptionType, "EncryptionType") as _Record["EncryptionType"]
  }
}

/**
 * GetRecords' output from the JSON text of a successful response.
 *
 * @throws MalformedBody when the text is not JSON of GetRecords' shape
 */
export const decode = (text: string): GetRecordsOutput => {
  const body: unknown = text.length === 0 ? {} : JSON.parse(text)
  if (typeof body !== "object" || body === null) throw new MalformedBody("expected a JSON object")
  const b = body as Record<string, unknown>
  const rawRecords = b.Records ?? []
  if (!Array.isArray(rawRecords)) throw new MalformedBody("Records: expected an array")
  const records: Array<_Record> = new Array(rawRecords.length)
  for (let i = 0; i < rawRecords.length; i++) records[i] = record(rawRecords[i])
  const millis = b.MillisBehindLatest
  if (millis !== undefined && millis !== null && typeof millis !== "number") {
    throw new MalformedBody("MillisBehindLatest: expected a number")
  }
  const childShards = b.ChildShards
  if (childShards !== undefined && childShards !== null && !Array.isArray(childShards)) {
    throw new MalformedBody("ChildShards: expected an array")
  }
  return {
    Records: records,
    NextShardIterator: optionalString(b.NextShardIterator, "NextShardIterator"),
    MillisBehindLatest: typeof millis === "number" ? millis : undefined,
    // Plain JSON of the SDK's shape (ShardId, ParentShards, HashKeyRange): nothing to convert.
    ChildShards: childShards ?? undefined
  }
}

/**
 * The GetRecordsCommand input for `input`, marked so that `install`'s middleware decodes a
 * successful response; `output` then gives the decoded output.
 */
export const input = (input: GetRecordsInput): { readonly input: GetRecordsInput; readonly slot: Slot } => {
  const slot: Slot = { output: undefined }
  const marked: MarkedInput = { ...input, [DECODED]: slot }
  return { input: marked, slot }
}

/** The SDK's output (its `$metadata`) with the body decoded by the middleware, when it was. */
export const output = (sdkOutput: GetRecordsCommandOutput, slot: Slot): GetRecordsCommandOutput =>
  slot.output === undefined ? sdkOutput : { ...slot.output, $metadata: sdkOutput.$metadata }

const installed = new WeakSet<KinesisClient>()

/**
 * Adds the middleware that decodes a successful GetRecords response of a marked input. It runs
 * last in the deserialize step, next to the HTTP handler: it reads the body, decodes it into the
 * input's slot and hands the SDK's deserializer an empty object, which gives the `$metadata`.
 * Error responses and unmarked inputs (`sdk.send` by the user) are left to the SDK.
 */
export const install = (sdk: KinesisClient): void => {
  if (installed.has(sdk)) return
  installed.add(sdk)
  sdk.middlewareStack.add(
    decoding(DECODED, decode),
    { step: "deserialize", priority: "low", name: "effectKinesisGetRecordsBody" }
  )
}
