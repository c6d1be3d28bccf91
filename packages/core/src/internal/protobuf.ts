/**
 * The protobuf wire format of the KPL's three aggregation messages, written by hand:
 *
 * ```proto
 * message AggregatedRecord { repeated string partition_key_table = 1; repeated string explicit_hash_key_table = 2; repeated Record records = 3; }
 * message Record { required uint64 partition_key_index = 1; optional uint64 explicit_hash_key_index = 2; required bytes data = 3; repeated Tag tags = 4; }
 * message Tag { required string key = 1; optional string value = 2; }
 * ```
 *
 * Why not a protobuf library: the producer must know the exact encoded size *before* building (to
 * fill a record up to the limit without going over), which generated code only tells after
 * encoding; encoding writes straight into one preallocated buffer; decoding hands out views into
 * the input instead of copies; and `core` stays free of a codegen toolchain and a dependency for
 * three messages.
 *
 * @internal
 */
import type { UserRecord, UserRecordVisitor } from "../Aggregation.ts"

// Field tags (field number << 3 | wire type) as the encoder writes them.
export const TAG_PARTITION_KEY_TABLE = 0x0a // AggregatedRecord.partition_key_table = 1, length-delimited
export const TAG_EXPLICIT_HASH_KEY_TABLE = 0x12 // AggregatedRecord.explicit_hash_key_table = 2, length-delimited
const TAG_RECORDS = 0x1a // AggregatedRecord.records = 3, length-delimited
const TAG_PARTITION_KEY_INDEX = 0x08 // Record.partition_key_index = 1, varint
const TAG_EXPLICIT_HASH_KEY_INDEX = 0x10 // Record.explicit_hash_key_index = 2, varint
const TAG_DATA = 0x1a // Record.data = 3, length-delimited

const WIRE_VARINT = 0
const WIRE_FIXED64 = 1
const WIRE_LENGTH_DELIMITED = 2
const WIRE_START_GROUP = 3
const WIRE_END_GROUP = 4
const WIRE_FIXED32 = 5

// Protobuf's own parsers stop at 100 levels of nesting; groups are the only nesting we walk.
const MAX_GROUP_DEPTH = 100

// ---------------------------------------------------------------------------------------------
// Sizes and writing
// ---------------------------------------------------------------------------------------------

/** Bytes taken by `value` (a non-negative safe integer) as a varint. */
export const varintSize = (value: number): number => {
  if (value < 0x80) return 1
  if (value < 0x4000) return 2
  if (value < 0x200000) return 3
  if (value < 0x10000000) return 4
  let size = 5
  for (let rest = Math.floor(value / 0x800000000); rest > 0; rest = Math.floor(rest / 0x80)) size++
  return size
}

/** Bytes taken by one length-delimited field with a one-byte tag and a body of `length` bytes. */
export const lengthDelimitedSize = (length: number): number => 1 + varintSize(length) + length

/** Bytes taken by the body of one `Record` message (without its own tag and length prefix). */
export const recordBodySize = (partitionKeyIndex: number, explicitHashKeyIndex: number, dataLength: number): number =>
  1 + varintSize(partitionKeyIndex) + (explicitHashKeyIndex < 0 ? 0 : 1 + varintSize(explicitHashKeyIndex))
  + lengthDelimitedSize(dataLength)

/** Writes `value` as a varint at `pos`; returns the position after it. */
export const writeVarint = (buf: Uint8Array, pos: number, value: number): number => {
  while (value >= 0x80000000) {
    buf[pos++] = (value % 0x80) | 0x80
    value = Math.floor(value / 0x80)
  }
  while (value >= 0x80) {
    buf[pos++] = (value & 0x7f) | 0x80
    value >>>= 7
  }
  buf[pos++] = value
  return pos
}

/**
 * UTF-8 byte length of `s` as `Buffer.write` / `TextEncoder` encode it: a lone surrogate becomes
 * U+FFFD (3 bytes). Counted in JS because the strings are short and a native call costs more.
 */
export const utf8Length = (s: string): number => {
  const n = s.length
  let bytes = n
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) continue
    if (c < 0x800) {
      bytes += 1
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 2 // two UTF-16 units, four bytes
      i++
    } else {
      bytes += 2
    }
  }
  return bytes
}

/**
 * Writes `s` as UTF-8 at `pos` (exactly `byteLength` bytes, as computed by {@link utf8Length});
 * returns the position after it.
 */
export const writeUtf8 = (buf: Buffer, pos: number, s: string, byteLength: number): number => {
  // Equal lengths mean pure ASCII (every other unit takes more than one byte): a plain loop beats
  // the native call for the short strings keys are.
  if (byteLength === s.length && byteLength <= 64) {
    for (let i = 0; i < byteLength; i++) buf[pos + i] = s.charCodeAt(i)
    return pos + byteLength
  }
  const written = buf.write(s, pos, byteLength, "utf8")
  if (written !== byteLength) throw new Error(`BUG: wrote ${written} UTF-8 bytes, expected ${byteLength}`)
  return pos + byteLength
}

/** Writes one table entry (`partition_key_table` or `explicit_hash_key_table`). */
export const writeTableEntry = (
  buf: Buffer,
  pos: number,
  tag: typeof TAG_PARTITION_KEY_TABLE | typeof TAG_EXPLICIT_HASH_KEY_TABLE,
  s: string,
  byteLength: number
): number => {
  buf[pos++] = tag
  pos = writeVarint(buf, pos, byteLength)
  return writeUtf8(buf, pos, s, byteLength)
}

/** Writes one `records` entry: tag, length prefix and the `Record` body. */
export const writeRecord = (
  buf: Buffer,
  pos: number,
  bodySize: number,
  partitionKeyIndex: number,
  explicitHashKeyIndex: number,
  data: Uint8Array
): number => {
  buf[pos++] = TAG_RECORDS
  pos = writeVarint(buf, pos, bodySize)
  buf[pos++] = TAG_PARTITION_KEY_INDEX
  pos = writeVarint(buf, pos, partitionKeyIndex)
  if (explicitHashKeyIndex >= 0) {
    buf[pos++] = TAG_EXPLICIT_HASH_KEY_INDEX
    pos = writeVarint(buf, pos, explicitHashKeyIndex)
  }
  buf[pos++] = TAG_DATA
  pos = writeVarint(buf, pos, data.length)
  buf.set(data, pos)
  return pos + data.length
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/**
 * Why decoding stopped. Thrown inside this module only (a plain object, no stack trace to
 * capture) and turned into a typed error by the caller, which catches nothing else.
 */
export class ProtobufDecodeFailure {
  readonly reason: string
  readonly offset: number
  constructor(reason: string, offset: number) {
    this.reason = reason
    this.offset = offset
  }
}

const fail = (reason: string, offset: number): never => {
  throw new ProtobufDecodeFailure(reason, offset)
}

/**
 * Decodes UTF-8 like protobuf runtimes that do not validate proto2 strings: malformed sequences
 * become U+FFFD rather than failing the whole aggregate. (`Buffer#toString` on a view made once
 * per aggregate measured faster than `TextDecoder` or a JS loop for short keys.)
 */
const readUtf8 = (buf: Buffer, start: number, end: number): string => buf.toString("utf8", start, end)

/** A cursor over `buf[pos, end)`; every read is bounds-checked against `end`. */
class Reader {
  readonly buf: Uint8Array
  pos: number
  end: number
  constructor(buf: Uint8Array, pos: number, end: number) {
    this.buf = buf
    this.pos = pos
    this.end = end
  }

  /**
   * Reads an unsigned varint of up to 64 bits. Values above 2^53 lose precision, which is
   * harmless: every caller compares the value with a length or table size far below that.
   */
  varint(): number {
    const buf = this.buf
    const start = this.pos
    let pos = start
    if (pos >= this.end) return fail("truncated varint", start)
    let byte = buf[pos++]!
    if (byte < 0x80) {
      this.pos = pos
      return byte
    }
    let value = byte & 0x7f
    let multiplier = 0x80
    for (let i = 1; i < 10; i++) {
      if (pos >= this.end) return fail("truncated varint", start)
      byte = buf[pos++]!
      // The tenth byte holds bit 63 only; anything more does not fit in 64 bits.
      if (i === 9 && byte > 1) return fail("varint longer than 64 bits", start)
      value += (byte & 0x7f) * multiplier
      if (byte < 0x80) {
        this.pos = pos
        return value
      }
      multiplier *= 0x80
    }
    return fail("varint longer than 64 bits", start)
  }

  /** Reads a field tag; returns it as `fieldNumber * 8 + wireType`. */
  tag(): number {
    const start = this.pos
    const tag = this.varint()
    if (tag > 0xffffffff) return fail("field tag longer than 32 bits", start)
    if (tag < 8) return fail("field number 0", start)
    return tag
  }

  /** Reads a length prefix and checks that the body fits before anything is done with it. */
  length(): number {
    const start = this.pos
    const length = this.varint()
    if (length > this.end - this.pos) return fail("length past end of message", start)
    return length
  }

  /** Skips the value of a field this decoder does not use. */
  skip(wireType: number, fieldNumber: number, depth: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.varint()
        return
      case WIRE_FIXED64:
        return this.advance(8)
      case WIRE_LENGTH_DELIMITED: {
        const length = this.length()
        this.pos += length
        return
      }
      case WIRE_FIXED32:
        return this.advance(4)
      case WIRE_START_GROUP:
        return this.skipGroup(fieldNumber, depth + 1)
      case WIRE_END_GROUP:
        return fail("end-group tag without a start-group", this.pos)
      default:
        return fail(`invalid wire type ${wireType}`, this.pos)
    }
  }

  private advance(n: number): void {
    if (n > this.end - this.pos) fail("fixed-width value past end of message", this.pos)
    this.pos += n
  }

  private skipGroup(fieldNumber: number, depth: number): void {
    if (depth > MAX_GROUP_DEPTH) fail("groups nested too deeply", this.pos)
    while (true) {
      if (this.pos >= this.end) fail("unterminated group", this.pos)
      const start = this.pos
      const tag = this.tag()
      const wireType = tag & 7
      const number = (tag - wireType) / 8
      if (wireType === WIRE_END_GROUP) {
        if (number !== fieldNumber) fail("end-group tag does not match its start-group", start)
        return
      }
      this.skip(wireType, number, depth)
    }
  }
}

const expectWireType = (actual: number, expected: number, field: string, offset: number): void => {
  if (actual !== expected) fail(`${field}: wire type ${actual}, expected ${expected}`, offset)
}

/** The tables of an `AggregatedRecord` and where each of its `Record` bodies lies. */
interface Scanned {
  readonly reader: Reader
  readonly partitionKeys: Array<string>
  readonly explicitHashKeys: Array<string>
  /** [start, end) of every Record body, flattened. */
  readonly recordBounds: Array<number>
}

// Fields may come in any order (the tables after the records, a table split in pieces), so the
// first pass only collects the tables and where each `Record` lies.
const scan = (buf: Uint8Array, start: number, end: number): Scanned => {
  const partitionKeys: Array<string> = []
  const explicitHashKeys: Array<string> = []
  const recordBounds: Array<number> = []
  const reader = new Reader(buf, start, end)
  const text = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength) // a view, for readUtf8
  while (reader.pos < end) {
    const tagOffset = reader.pos
    const tag = reader.tag()
    const wireType = tag & 7
    const fieldNumber = (tag - wireType) / 8
    switch (fieldNumber) {
      case 1:
      case 2: {
        expectWireType(
          wireType,
          WIRE_LENGTH_DELIMITED,
          fieldNumber === 1 ? "partition_key_table" : "explicit_hash_key_table",
          tagOffset
        )
        const length = reader.length()
        const key = readUtf8(text, reader.pos, reader.pos + length)
        if (fieldNumber === 1) partitionKeys.push(key)
        else explicitHashKeys.push(key)
        reader.pos += length
        break
      }
      case 3: {
        expectWireType(wireType, WIRE_LENGTH_DELIMITED, "records", tagOffset)
        const length = reader.length()
        recordBounds.push(reader.pos, reader.pos + length)
        reader.pos += length
        break
      }
      default:
        reader.skip(wireType, fieldNumber, 0)
    }
  }
  return { reader, partitionKeys, explicitHashKeys, recordBounds }
}

/**
 * Decodes the `AggregatedRecord` in `buf[start, end)` into user records whose `data` are views
 * into `buf` (no copies).
 *
 * The first pass only collects the tables and where each `Record` lies; the second decodes the
 * records against the complete tables. Unknown fields, including `Record.tags`, are skipped.
 * Everything allocated is bounded by the input size: nothing is sized by a length field.
 *
 * @throws ProtobufDecodeFailure when the bytes are not a valid `AggregatedRecord`
 */
export const decodeAggregatedRecord = (buf: Uint8Array, start: number, end: number): Array<UserRecord> => {
  const { explicitHashKeys, partitionKeys, reader, recordBounds } = scan(buf, start, end)
  const records: Array<UserRecord> = new Array(recordBounds.length / 2)
  for (let i = 0; i < recordBounds.length; i += 2) {
    records[i / 2] = decodeRecord(
      reader,
      recordBounds[i]!,
      recordBounds[i + 1]!,
      i / 2,
      partitionKeys,
      explicitHashKeys
    )
  }
  return records
}

/**
 * {@link decodeAggregatedRecord} without an object per user record: every `Record` is decoded
 * and checked first, then `visit` is called for each in order with where its data lies in `buf`.
 * Nothing is visited when decoding fails.
 *
 * @throws ProtobufDecodeFailure when the bytes are not a valid `AggregatedRecord`
 */
export const visitAggregatedRecord = (
  buf: Uint8Array,
  start: number,
  end: number,
  visit: UserRecordVisitor
): number => {
  const { explicitHashKeys, partitionKeys, reader, recordBounds } = scan(buf, start, end)
  const count = recordBounds.length / 2
  // Per record: partition key index, explicit hash key index (-1: none), data start and end.
  // Scratch space reused from one aggregate to the next (an aggregate's worth per call is
  // garbage otherwise); taken while in use, so a `visit` that decodes another aggregate gets its own.
  let fields = scratchFields
  scratchFields = undefined
  if (fields === undefined || fields.length < count * 4) fields = new Int32Array(Math.max(count * 4, 4096))
  for (let i = 0; i < count; i++) {
    decodeRecordFields(reader, recordBounds[2 * i]!, recordBounds[2 * i + 1]!, i, partitionKeys, explicitHashKeys)
    fields[4 * i] = decoded[0]!
    fields[4 * i + 1] = decoded[1]!
    fields[4 * i + 2] = decoded[2]!
    fields[4 * i + 3] = decoded[3]!
  }
  for (let i = 0; i < count; i++) {
    const explicitHashKeyIndex = fields[4 * i + 1]!
    visit(
      partitionKeys[fields[4 * i]!]!,
      explicitHashKeyIndex < 0 ? undefined : explicitHashKeys[explicitHashKeyIndex],
      fields[4 * i + 2]!,
      fields[4 * i + 3]!,
      i
    )
  }
  scratchFields = fields
  return count
}

let scratchFields: Int32Array | undefined

// The fields of the `Record` decoded last: partition key index, explicit hash key index (-1:
// none), data start and end. Read right after each call, before any other decoding.
const decoded: Array<number> = [0, 0, 0, 0]

const decodeRecord = (
  reader: Reader,
  start: number,
  end: number,
  subSequenceNumber: number,
  partitionKeys: ReadonlyArray<string>,
  explicitHashKeys: ReadonlyArray<string>
): UserRecord => {
  decodeRecordFields(reader, start, end, subSequenceNumber, partitionKeys, explicitHashKeys)
  const explicitHashKeyIndex = decoded[1]!
  return {
    partitionKey: partitionKeys[decoded[0]!]!,
    explicitHashKey: explicitHashKeyIndex < 0 ? undefined : explicitHashKeys[explicitHashKeyIndex],
    data: reader.buf.subarray(decoded[2]!, decoded[3]!),
    subSequenceNumber
  }
}

const decodeRecordFields = (
  reader: Reader,
  start: number,
  end: number,
  subSequenceNumber: number,
  partitionKeys: ReadonlyArray<string>,
  explicitHashKeys: ReadonlyArray<string>
): void => {
  reader.pos = start
  reader.end = end
  let partitionKeyIndex = -1
  let explicitHashKeyIndex = -1
  let dataStart = -1
  let dataEnd = -1
  while (reader.pos < end) {
    const tagOffset = reader.pos
    const tag = reader.tag()
    const wireType = tag & 7
    const fieldNumber = (tag - wireType) / 8
    switch (fieldNumber) {
      case 1:
      case 2: {
        const name = fieldNumber === 1 ? "partition_key_index" : "explicit_hash_key_index"
        expectWireType(wireType, WIRE_VARINT, name, tagOffset)
        const index = reader.varint()
        const table = fieldNumber === 1 ? partitionKeys : explicitHashKeys
        if (index >= table.length) {
          fail(`${name} ${index} out of range (table has ${table.length} entries)`, tagOffset)
        }
        if (fieldNumber === 1) partitionKeyIndex = index
        else explicitHashKeyIndex = index
        break
      }
      case 3: {
        expectWireType(wireType, WIRE_LENGTH_DELIMITED, "data", tagOffset)
        const length = reader.length()
        dataStart = reader.pos
        dataEnd = dataStart + length
        reader.pos = dataEnd
        break
      }
      case 4:
        // Tags are part of the format but carry nothing a consumer needs; check the wire type so
        // a corrupted tag is not silently reinterpreted.
        expectWireType(wireType, WIRE_LENGTH_DELIMITED, "tags", tagOffset)
        reader.skip(wireType, fieldNumber, 0)
        break
      default:
        reader.skip(wireType, fieldNumber, 0)
    }
  }
  if (partitionKeyIndex < 0) fail(`record ${subSequenceNumber}: missing partition_key_index`, start)
  if (dataStart < 0) fail(`record ${subSequenceNumber}: missing data`, start)
  decoded[0] = partitionKeyIndex
  decoded[1] = explicitHashKeyIndex
  decoded[2] = dataStart
  decoded[3] = dataEnd
}
