/**
 * @internal
 *
 * The JSON body of a PutRecords request, written straight into one buffer.
 *
 * The SDK's JSON serializer encodes `Data` to base64 in a JavaScript loop, byte by byte, into a
 * buffer it grows by doubling: for a 5 MiB request of aggregates that is most of the cost of the
 * call. Here large data goes through Node's native base64, small data through a table loop
 * (cheaper than a native call for a few dozen bytes), into a buffer sized exactly up front.
 *
 * The answer of a successful call is decoded here too: the SDK walks its schema for every field
 * of every result entry, which for 500 plain records cost more than reading the JSON; the
 * output's fields are all strings and numbers, so the parsed JSON, checked, is the output.
 */
import type {
  KinesisClient,
  PutRecordsCommandOutput,
  PutRecordsInput,
  PutRecordsOutput,
  PutRecordsRequestEntry,
  PutRecordsResultEntry
} from "@aws-sdk/client-kinesis"
import { type DecodedSlot, decoding, MalformedBody, optionalString } from "./responseBody.ts"

const QUOTE = 0x22
const B64 = new TextEncoder().encode("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
/**
 * The two base64 characters of every 12-bit value, first in the low byte: half the lookups of
 * one character per 6 bits.
 */
const B64_PAIRS = new Uint16Array(4096)
for (let i = 0; i < 4096; i++) B64_PAIRS[i] = B64[i >> 6]! | (B64[i & 0x3f]! << 8)
/** Data at least this long goes through the native encoder. */
const NATIVE_BASE64_MIN = 256

const base64Length = (bytes: number): number => Math.ceil(bytes / 3) * 4

/** Whether `s` can be written as it is between JSON quotes, one byte per character. */
const isPlainAscii = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c > 0x7e || c === QUOTE || c === 0x5c) return false
  }
  return true
}

/**
 * A string field's value as JSON: `undefined` when it is plain ASCII (written as it is between
 * quotes, one byte per character), else quoted and escaped by `JSON.stringify`.
 */
const escaped = (value: string): string | undefined => isPlainAscii(value) ? undefined : JSON.stringify(value)

const jsonBytes = (value: string, escapedValue: string | undefined): number =>
  escapedValue === undefined ? value.length + 2 : Buffer.byteLength(escapedValue, "utf8")

const writeAscii = (buf: Buffer, pos: number, text: string): number => pos + buf.write(text, pos, "latin1")

const writeString = (buf: Buffer, pos: number, value: string, escapedValue: string | undefined): number => {
  if (escapedValue !== undefined) return pos + buf.write(escapedValue, pos, "utf8")
  buf[pos++] = QUOTE
  pos += buf.write(value, pos, "latin1")
  buf[pos++] = QUOTE
  return pos
}

const writeBase64 = (buf: Buffer, pos: number, data: Uint8Array): number => {
  buf[pos++] = QUOTE
  const len = data.length
  if (len >= NATIVE_BASE64_MIN) {
    const view = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, len)
    pos += buf.write(view.toString("base64"), pos, "latin1")
  } else {
    const main = len - (len % 3)
    let j = 0
    for (; j < main; j += 3) {
      const bits = (data[j]! << 16) | (data[j + 1]! << 8) | data[j + 2]!
      const high = B64_PAIRS[bits >>> 12]!
      const low = B64_PAIRS[bits & 0xfff]!
      buf[pos] = high
      buf[pos + 1] = high >> 8
      buf[pos + 2] = low
      buf[pos + 3] = low >> 8
      pos += 4
    }
    if (len - main === 2) {
      const a = data[j]!
      const b = data[j + 1]!
      buf[pos++] = B64[a >> 2]!
      buf[pos++] = B64[((a & 0x03) << 4) | (b >> 4)]!
      buf[pos++] = B64[(b & 0x0f) << 2]!
      buf[pos++] = 0x3d
    } else if (len - main === 1) {
      const a = data[j]!
      buf[pos++] = B64[a >> 2]!
      buf[pos++] = B64[(a & 0x03) << 4]!
      buf[pos++] = 0x3d
      buf[pos++] = 0x3d
    }
  }
  buf[pos++] = QUOTE
  return pos
}

const DATA = "{\"Data\":"
const PARTITION_KEY = ",\"PartitionKey\":"
const EXPLICIT_HASH_KEY = ",\"ExplicitHashKey\":"

/**
 * `{"Records":[{"Data":…,"PartitionKey":…[,"ExplicitHashKey":…]},…],"StreamName"|"StreamARN":…}`,
 * as the SDK would send it (awsJson1_1), for records whose `Data` is set.
 */
export const encode = (
  streamField: "StreamName" | "StreamARN",
  stream: string,
  records: ReadonlyArray<PutRecordsRequestEntry>
): Buffer => {
  const n = records.length
  // Escaped forms of the few keys that need one (most keys are plain ASCII: nothing is kept).
  let escapedKeys: Array<string | undefined> | undefined
  let escapedHashKeys: Array<string | undefined> | undefined
  const streamEscaped = escaped(stream)
  const head = "{\"Records\":["
  const tail = `],"${streamField}":`
  let size = head.length + tail.length + jsonBytes(stream, streamEscaped) + 1 + Math.max(0, n - 1)
  for (let i = 0; i < n; i++) {
    const record = records[i]!
    const key = record.PartitionKey!
    const keyEscaped = escaped(key)
    if (keyEscaped !== undefined) (escapedKeys ??= new Array(n))[i] = keyEscaped
    size += DATA.length + base64Length(record.Data!.length) + 2 + PARTITION_KEY.length + jsonBytes(key, keyEscaped) + 1
    const hashKey = record.ExplicitHashKey
    if (hashKey !== undefined) {
      const hashKeyEscaped = escaped(hashKey)
      if (hashKeyEscaped !== undefined) (escapedHashKeys ??= new Array(n))[i] = hashKeyEscaped
      size += EXPLICIT_HASH_KEY.length + jsonBytes(hashKey, hashKeyEscaped)
    }
  }
  const buf = Buffer.allocUnsafe(size)
  let pos = writeAscii(buf, 0, head)
  for (let i = 0; i < n; i++) {
    const record = records[i]!
    if (i > 0) buf[pos++] = 0x2c
    pos = writeAscii(buf, pos, DATA)
    pos = writeBase64(buf, pos, record.Data!)
    pos = writeAscii(buf, pos, PARTITION_KEY)
    pos = writeString(buf, pos, record.PartitionKey!, escapedKeys?.[i])
    const hashKey = record.ExplicitHashKey
    if (hashKey !== undefined) {
      pos = writeAscii(buf, pos, EXPLICIT_HASH_KEY)
      pos = writeString(buf, pos, hashKey, escapedHashKeys?.[i])
    }
    buf[pos++] = 0x7d
  }
  pos = writeAscii(buf, pos, tail)
  pos = writeString(buf, pos, stream, streamEscaped)
  buf[pos++] = 0x7d
  if (pos !== size) throw new Error(`BUG: PutRecords body encoded to ${pos} bytes, expected ${size}`)
  return buf
}

/** Where `input` keeps the body `install`'s middleware sends instead of the SDK's serialization. */
const BODY = Symbol.for("@effect-kinesis/core/PutRecordsBody")

/** Where an input marked by `input` receives the output decoded by `install`'s middleware. */
const DECODED = Symbol.for("@effect-kinesis/core/PutRecordsOutput")

type Slot = DecodedSlot<PutRecordsOutput>

interface EncodedInput extends PutRecordsInput {
  readonly [BODY]?: Buffer
  readonly [DECODED]?: Slot
}

/** Records `encode` can write: the rest (no data, data the SDK converts) go through the SDK. */
const encodable = (records: ReadonlyArray<PutRecordsRequestEntry>): boolean => {
  for (const record of records) {
    if (!(record.Data instanceof Uint8Array) || typeof record.PartitionKey !== "string") return false
    if (record.ExplicitHashKey !== undefined && typeof record.ExplicitHashKey !== "string") return false
  }
  return true
}

/**
 * The PutRecordsCommand input for `records` sent to `stream` (`Client.streamParams`): with the
 * body already encoded when it can be (the SDK then serializes only an empty record list), else
 * the records for the SDK to serialize; marked so that `install`'s middleware decodes a
 * successful answer, which `output` then gives.
 */
export const input = (
  stream: { readonly StreamName: string } | { readonly StreamARN: string },
  records: Array<PutRecordsRequestEntry>
): { readonly input: PutRecordsInput; readonly slot: Slot } => {
  const slot: Slot = { output: undefined }
  if (!encodable(records)) {
    const marked: EncodedInput = { ...stream, Records: records, [DECODED]: slot }
    return { input: marked, slot }
  }
  const body = "StreamARN" in stream
    ? encode("StreamARN", stream.StreamARN, records)
    : encode("StreamName", stream.StreamName, records)
  const encoded: EncodedInput = { ...stream, Records: [], [BODY]: body, [DECODED]: slot }
  return { input: encoded, slot }
}

const resultEntry = (raw: unknown): PutRecordsResultEntry => {
  if (typeof raw !== "object" || raw === null) throw new MalformedBody("Records: expected objects")
  const r = raw as Record<string, unknown>
  // The common case, a stored record: the parsed object is the SDK's shape already (not copied:
  // a second object per record is as much garbage again, and what the collector is paced by).
  if (
    typeof r.SequenceNumber === "string" && typeof r.ShardId === "string" && r.ErrorCode === undefined &&
    r.ErrorMessage === undefined
  ) {
    return r as PutRecordsResultEntry
  }
  return {
    SequenceNumber: optionalString(r.SequenceNumber, "SequenceNumber"),
    ShardId: optionalString(r.ShardId, "ShardId"),
    ErrorCode: optionalString(r.ErrorCode, "ErrorCode"),
    ErrorMessage: optionalString(r.ErrorMessage, "ErrorMessage")
  }
}

/**
 * PutRecords' output from the JSON text of a successful answer.
 *
 * @throws MalformedBody when the text is not JSON of PutRecords' shape
 */
export const decode = (text: string): PutRecordsOutput => {
  const body: unknown = text.length === 0 ? {} : JSON.parse(text)
  if (typeof body !== "object" || body === null) throw new MalformedBody("expected a JSON object")
  const b = body as Record<string, unknown>
  const raw = b.Records
  if (!Array.isArray(raw)) throw new MalformedBody("Records: expected an array")
  // Checked in place: entries that need no conversion stay the parsed ones.
  const records = raw as Array<PutRecordsResultEntry>
  for (let i = 0; i < raw.length; i++) {
    const entry = resultEntry(raw[i])
    if (entry !== raw[i]) records[i] = entry
  }
  const failed = b.FailedRecordCount
  if (failed !== undefined && failed !== null && typeof failed !== "number") {
    throw new MalformedBody("FailedRecordCount: expected a number")
  }
  return {
    FailedRecordCount: typeof failed === "number" ? failed : undefined,
    Records: records,
    EncryptionType: optionalString(b.EncryptionType, "EncryptionType") as PutRecordsOutput["EncryptionType"]
  }
}

/** The SDK's output (its `$metadata`) with the answer decoded by the middleware, when it was. */
export const output = (sdkOutput: PutRecordsCommandOutput, slot: Slot): PutRecordsCommandOutput =>
  slot.output === undefined ? sdkOutput : { ...slot.output, $metadata: sdkOutput.$metadata }

const installed = new WeakSet<KinesisClient>()

/**
 * Adds the middleware that sends a pre-encoded body in place of the serialized one, and the one
 * that decodes a successful answer of a marked input. The first runs first in the build step,
 * before the content length is set and long before signing, so the request is signed over the
 * bytes sent; inputs without a body are left alone. The second is `decoding`'s.
 */
export const install = (sdk: KinesisClient): void => {
  if (installed.has(sdk)) return
  installed.add(sdk)
  sdk.middlewareStack.add(
    (next) => (args) => {
      const body = (args.input as EncodedInput)[BODY]
      if (body !== undefined) (args.request as { body: unknown }).body = body
      return next(args)
    },
    { step: "build", priority: "high", name: "effectKinesisPutRecordsBody" }
  )
  sdk.middlewareStack.add(decoding(DECODED, decode), {
    step: "deserialize",
    priority: "low",
    name: "effectKinesisPutRecordsOutput"
  })
}
