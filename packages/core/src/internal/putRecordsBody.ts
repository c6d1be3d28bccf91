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
 * The answer of a successful request is decoded here too: the SDK's deserializer walks every
 * record's fields through its schema, which for 500 plain records costs more CPU than the
 * producer's own handling of them; `JSON.parse` gives the same objects.
 */
import type {
  KinesisClient,
  PutRecordsCommandOutput,
  PutRecordsInput,
  PutRecordsOutput,
  PutRecordsRequestEntry,
  PutRecordsResultEntry
} from "@aws-sdk/client-kinesis"

const QUOTE = 0x22
const B64 = new TextEncoder().encode("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
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

/**
 * Two base64 characters for each 12 bits, the first in the low byte: a 3-byte group is two
 * lookups and one 4-byte little-endian store, where a table of single characters takes four
 * lookups and four stores (this loop costs about 0.6x as much).
 */
const PAIRS = (() => {
  const pairs = new Uint16Array(4096)
  for (let x = 0; x < 4096; x++) pairs[x] = B64[x >> 6]! | (B64[x & 0x3f]! << 8)
  return pairs
})()

const writeBase64 = (buf: Buffer, view: DataView, pos: number, data: Uint8Array): number => {
  buf[pos++] = QUOTE
  const len = data.length
  if (len >= NATIVE_BASE64_MIN) {
    const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, len)
    pos += buf.write(bytes.toString("base64"), pos, "latin1")
  } else {
    const main = len - (len % 3)
    let j = 0
    for (; j < main; j += 3) {
      const group = (data[j]! << 16) | (data[j + 1]! << 8) | data[j + 2]!
      view.setUint32(pos, PAIRS[group >> 12]! | (PAIRS[group & 0xfff]! << 16), true)
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
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  let pos = writeAscii(buf, 0, head)
  for (let i = 0; i < n; i++) {
    const record = records[i]!
    if (i > 0) buf[pos++] = 0x2c
    pos = writeAscii(buf, pos, DATA)
    pos = writeBase64(buf, view, pos, record.Data!)
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
/** Where an input made by `input` receives the output decoded by `install`'s middleware. */
const DECODED = Symbol.for("@effect-kinesis/core/PutRecordsBody/decoded")

interface Slot {
  output: PutRecordsOutput | undefined
}

interface EncodedInput extends PutRecordsInput {
  readonly [BODY]?: Buffer
  readonly [DECODED]?: Slot
}

/** A response body that does not have the shape of PutRecords' output. */
class MalformedBody extends Error {
  override readonly name = "SerializationException"
}

const EMPTY_BODY = new Uint8Array([0x7b, 0x7d]) // "{}"

const isOptionalString = (value: unknown): boolean => value === undefined || typeof value === "string"

/**
 * PutRecords' output from the JSON text of a successful response: the parsed records are the
 * output's, once checked to have its shape (string fields, absent when not set).
 *
 * @throws MalformedBody when the text is not JSON of PutRecords' shape
 */
export const decode = (text: string): PutRecordsOutput => {
  const body: unknown = text.length === 0 ? {} : JSON.parse(text)
  if (typeof body !== "object" || body === null) throw new MalformedBody("expected a JSON object")
  const b = body as Record<string, unknown>
  const records = b.Records
  if (records !== undefined && !Array.isArray(records)) throw new MalformedBody("Records: expected an array")
  if (records !== undefined) {
    for (let i = 0; i < records.length; i++) {
      const r: unknown = records[i]
      if (typeof r !== "object" || r === null) throw new MalformedBody("Records: expected objects")
      const e = r as Record<string, unknown>
      if (
        !isOptionalString(e.SequenceNumber) || !isOptionalString(e.ShardId) || !isOptionalString(e.ErrorCode) ||
        !isOptionalString(e.ErrorMessage)
      ) {
        // null and other types: the SDK's deserializer knows what to make of them.
        throw new MalformedBody("Records: unexpected field types")
      }
    }
  }
  const failed = b.FailedRecordCount
  if (failed !== undefined && typeof failed !== "number") {
    throw new MalformedBody("FailedRecordCount: expected a number")
  }
  if (!isOptionalString(b.EncryptionType)) throw new MalformedBody("EncryptionType: expected a string")
  return {
    FailedRecordCount: failed,
    Records: records as Array<PutRecordsResultEntry> | undefined,
    EncryptionType: b.EncryptionType as PutRecordsOutput["EncryptionType"]
  } as PutRecordsOutput
}

/** The SDK's output (its `$metadata`) with the body decoded by the middleware, when it was. */
export const output = (sdkOutput: PutRecordsCommandOutput, input: PutRecordsInput): PutRecordsCommandOutput => {
  const decoded = (input as EncodedInput)[DECODED]?.output
  return decoded === undefined ? sdkOutput : { ...decoded, $metadata: sdkOutput.$metadata }
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
 * the records for the SDK to serialize.
 */
export const input = (
  stream: { readonly StreamName: string } | { readonly StreamARN: string },
  records: Array<PutRecordsRequestEntry>
): PutRecordsInput => {
  const slot: Slot = { output: undefined }
  if (!encodable(records)) {
    const unencoded: EncodedInput = { ...stream, Records: records, [DECODED]: slot }
    return unencoded
  }
  const body = "StreamARN" in stream
    ? encode("StreamARN", stream.StreamARN, records)
    : encode("StreamName", stream.StreamName, records)
  const encoded: EncodedInput = { ...stream, Records: [], [BODY]: body, [DECODED]: slot }
  return encoded
}

const collect = async (body: unknown): Promise<string> => {
  if (body instanceof Uint8Array) return Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8")
  const chunks: Array<Buffer> = []
  for await (const chunk of body as AsyncIterable<Uint8Array | string>) {
    chunks.push(
      typeof chunk === "string" ? Buffer.from(chunk) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    )
  }
  return chunks.length === 1 ? chunks[0]!.toString("utf8") : Buffer.concat(chunks).toString("utf8")
}

const installed = new WeakSet<KinesisClient>()

/**
 * Adds the middleware that sends a pre-encoded body in place of the serialized one. It runs
 * first in the build step, before the content length is set and long before signing, so the
 * request is signed over the bytes sent. Inputs without a body are left alone.
 *
 * And the one that decodes a successful response of an input made by `input`: last in the
 * deserialize step, next to the HTTP handler, it reads the body, decodes it into the input's slot
 * and hands the SDK's deserializer an empty object, which gives the `$metadata`. Error responses
 * and other inputs (`sdk.send` by the user) are left to the SDK.
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
  sdk.middlewareStack.add(
    (next) => async (args) => {
      const result = await next(args)
      const slot = (args.input as EncodedInput)[DECODED]
      const response = result.response as { statusCode?: number; body?: unknown }
      if (
        slot === undefined || response.statusCode === undefined || response.statusCode < 200 ||
        response.statusCode >= 300
      ) {
        return result
      }
      const text = await collect(response.body)
      try {
        slot.output = decode(text)
      } catch (error) {
        // The SDK's deserializer reports it, with the response attached, as for any bad body.
        response.body = Buffer.from(text, "utf8")
        if (error instanceof MalformedBody || error instanceof SyntaxError) return result
        throw error
      }
      response.body = EMPTY_BODY
      return result
    },
    { step: "deserialize", priority: "low", name: "effectKinesisPutRecordsResponse" }
  )
}
