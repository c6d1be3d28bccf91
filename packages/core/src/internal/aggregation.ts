/**
 * @internal
 */
import { hash } from "node:crypto"
import type { Aggregator, KinesisRecord } from "../Aggregation.ts"
import * as Protobuf from "./protobuf.ts"

/** `F3 89 9A C2`, the KPL's marker in front of an aggregated record. */
export const MAGIC: ReadonlyArray<number> = [0xf3, 0x89, 0x9a, 0xc2]
export const MD5_LENGTH = 16
/** Magic and digest around the protobuf message. */
export const FRAMING_OVERHEAD = MAGIC.length + MD5_LENGTH

const md5 = (bytes: Uint8Array): Buffer => hash("md5", bytes, "buffer")

/**
 * Whether `data` is framed as a KPL aggregate: magic, room for more than magic and digest, and a
 * digest that matches the bytes between them. Anything else is a plain record.
 */
export const isFramedAggregate = (data: Uint8Array): boolean => {
  const length = data.length
  if (length <= FRAMING_OVERHEAD) return false
  if (data[0] !== MAGIC[0] || data[1] !== MAGIC[1] || data[2] !== MAGIC[2] || data[3] !== MAGIC[3]) return false
  const digestStart = length - MD5_LENGTH
  const digest = md5(data.subarray(MAGIC.length, digestStart))
  for (let i = 0; i < MD5_LENGTH; i++) {
    if (digest[i] !== data[digestStart + i]) return false
  }
  return true
}

/** The bytes a record counts against the Kinesis record size limit. */
export const recordSize = (record: KinesisRecord): number =>
  record.data.length + Protobuf.utf8Length(record.partitionKey)

/** Index bits of a `KeyTable` map value; the epoch is above them. */
const INDEX_BITS = 20
const INDEX_MASK = (1 << INDEX_BITS) - 1
/** Epochs per `KeyTable` map: values stay small integers (no boxed numbers). */
const EPOCHS = 1 << 10

/**
 * A key table that hands out indexes in order of first use. Byte lengths are kept so the
 * encoder can write length prefixes without measuring again.
 *
 * An aggregator fills and empties its table once per aggregate, mostly with the same keys
 * (those of its shard), so emptying only starts a new epoch: the map keeps past keys, each with
 * the epoch it was last used in beside its index, and only entries of the current epoch count.
 * Nothing is allocated for a key seen before. The map is cleared once mostly stale, and when the
 * epochs wrap around.
 */
class KeyTable {
  private readonly indexes = new Map<string, number>()
  private epoch = 1
  readonly keys: Array<string> = []
  readonly byteLengths: Array<number> = []
  /** Keys in the current table (`keys` and `byteLengths` may hold more, from earlier epochs). */
  size = 0

  /** The index of `key`, or -1 when it is not in the table yet. */
  indexOf(key: string): number {
    const value = this.indexes.get(key)
    return value !== undefined && value >>> INDEX_BITS === this.epoch ? value & INDEX_MASK : -1
  }

  add(key: string, byteLength: number): number {
    const index = this.size++
    // Past INDEX_MASK keys (only in aggregates far above the Kinesis record limit) a key is not
    // remembered: seen again, it gets another table entry, which is valid and merely larger.
    if (index <= INDEX_MASK) this.indexes.set(key, this.epoch * (INDEX_MASK + 1) + index)
    if (index < this.keys.length) {
      this.keys[index] = key
      this.byteLengths[index] = byteLength
    } else {
      this.keys.push(key)
      this.byteLengths.push(byteLength)
    }
    return index
  }

  clear(): void {
    if (this.size === 0) return
    this.epoch++
    // Keys come and go (random ids): do not let stale ones pile up.
    if (this.epoch === EPOCHS || this.indexes.size > 2 * this.size + 64) {
      this.indexes.clear()
      this.epoch = 1
    }
    this.size = 0
  }
}

/**
 * The incremental encoder.
 *
 * The running `messageSize` is the exact size of the `AggregatedRecord` protobuf holding every
 * record added so far. Because that message is the whole Kinesis payload (it has no length prefix
 * of its own), adding a record grows it by exactly the record's own field plus the table entries
 * for keys not seen before; nothing already counted changes size. So every size question is
 * answered in O(1) from the running total, and `build` writes into one buffer of that size.
 */
export class AggregatorImpl implements Aggregator {
  readonly explicitHashKey: string
  readonly maxBytes: number

  private readonly partitionKeys = new KeyTable()
  private readonly explicitHashKeys = new KeyTable()
  // One entry per record, in order (parallel arrays keep numbers unboxed); only the first
  // `recordCount` are live, so that refilling after `reset` allocates nothing.
  private readonly recordPartitionKeyIndexes: Array<number> = []
  private readonly recordExplicitHashKeyIndexes: Array<number> = [] // -1: none
  private readonly recordBodySizes: Array<number> = []
  private readonly recordData: Array<Uint8Array | undefined> = []
  private recordCount = 0
  private messageSize = 0
  private firstPartitionKeyBytes = 0

  // Outputs of the last `measure`, kept in fields so that measuring allocates nothing.
  private pendingSize = 0
  private pendingPartitionKeyIndex = 0
  private pendingPartitionKeyBytes = -1 // -1: key already in the table
  private pendingExplicitHashKeyIndex = -1
  private pendingExplicitHashKeyBytes = -1
  private pendingBodySize = 0
  private pendingMessageGrowth = 0

  constructor(explicitHashKey: string, maxBytes: number) {
    this.explicitHashKey = explicitHashKey
    this.maxBytes = maxBytes
  }

  get count(): number {
    return this.recordCount
  }

  get size(): number {
    const count = this.recordCount
    if (count === 0) return 0
    if (count === 1) return this.recordData[0]!.length + this.firstPartitionKeyBytes
    return FRAMING_OVERHEAD + this.messageSize + this.firstPartitionKeyBytes
  }

  sizeWith(record: KinesisRecord): number {
    this.measure(record)
    return this.pendingSize
  }

  fits(record: KinesisRecord): boolean {
    this.measure(record)
    return this.pendingSize <= this.maxBytes
  }

  add(record: KinesisRecord): boolean {
    this.measure(record)
    if (this.pendingSize > this.maxBytes) return false
    let partitionKeyIndex = this.pendingPartitionKeyIndex
    if (this.pendingPartitionKeyBytes >= 0) {
      partitionKeyIndex = this.partitionKeys.add(record.partitionKey, this.pendingPartitionKeyBytes)
    }
    let explicitHashKeyIndex = this.pendingExplicitHashKeyIndex
    if (this.pendingExplicitHashKeyBytes >= 0) {
      explicitHashKeyIndex = this.explicitHashKeys.add(record.explicitHashKey!, this.pendingExplicitHashKeyBytes)
    }
    const i = this.recordCount++
    if (i === 0) this.firstPartitionKeyBytes = this.pendingPartitionKeyBytes
    if (i < this.recordData.length) {
      this.recordPartitionKeyIndexes[i] = partitionKeyIndex
      this.recordExplicitHashKeyIndexes[i] = explicitHashKeyIndex
      this.recordBodySizes[i] = this.pendingBodySize
      this.recordData[i] = record.data
    } else {
      this.recordPartitionKeyIndexes.push(partitionKeyIndex)
      this.recordExplicitHashKeyIndexes.push(explicitHashKeyIndex)
      this.recordBodySizes.push(this.pendingBodySize)
      this.recordData.push(record.data)
    }
    this.messageSize += this.pendingMessageGrowth
    return true
  }

  build(): KinesisRecord | undefined {
    const count = this.recordCount
    if (count === 0) return undefined
    if (count === 1) {
      const explicitHashKeyIndex = this.recordExplicitHashKeyIndexes[0]!
      return {
        partitionKey: this.partitionKeys.keys[0]!,
        explicitHashKey: explicitHashKeyIndex < 0 ? undefined : this.explicitHashKeys.keys[explicitHashKeyIndex],
        data: this.recordData[0]!
      }
    }
    const messageEnd = MAGIC.length + this.messageSize
    // Every byte is written below, so the buffer need not be zeroed.
    const buf = Buffer.allocUnsafe(messageEnd + MD5_LENGTH)
    buf[0] = MAGIC[0]!
    buf[1] = MAGIC[1]!
    buf[2] = MAGIC[2]!
    buf[3] = MAGIC[3]!
    // Field-number order, as protobuf serializers write it and the KPL sends it.
    let pos = MAGIC.length
    const pks = this.partitionKeys
    for (let i = 0; i < pks.size; i++) {
      pos = Protobuf.writeTableEntry(buf, pos, Protobuf.TAG_PARTITION_KEY_TABLE, pks.keys[i]!, pks.byteLengths[i]!)
    }
    const ehks = this.explicitHashKeys
    for (let i = 0; i < ehks.size; i++) {
      pos = Protobuf.writeTableEntry(
        buf,
        pos,
        Protobuf.TAG_EXPLICIT_HASH_KEY_TABLE,
        ehks.keys[i]!,
        ehks.byteLengths[i]!
      )
    }
    for (let i = 0; i < count; i++) {
      pos = Protobuf.writeRecord(
        buf,
        pos,
        this.recordBodySizes[i]!,
        this.recordPartitionKeyIndexes[i]!,
        this.recordExplicitHashKeyIndexes[i]!,
        this.recordData[i]!
      )
    }
    if (pos !== messageEnd) throw new Error(`BUG: aggregate encoded to ${pos - 4} bytes, expected ${this.messageSize}`)
    md5(buf.subarray(MAGIC.length, messageEnd)).copy(buf, messageEnd)
    return { partitionKey: pks.keys[0]!, explicitHashKey: this.explicitHashKey, data: buf }
  }

  reset(): void {
    this.partitionKeys.clear()
    this.explicitHashKeys.clear()
    // The data is the caller's: do not keep it alive.
    const data = this.recordData
    for (let i = 0; i < this.recordCount; i++) data[i] = undefined
    this.recordCount = 0
    this.messageSize = 0
    this.firstPartitionKeyBytes = 0
  }

  /** Works out where `record` would go and what the result would weigh; changes nothing visible. */
  private measure(record: KinesisRecord): void {
    let growth = 0
    let partitionKeyIndex = this.partitionKeys.indexOf(record.partitionKey)
    let partitionKeyBytes = -1
    if (partitionKeyIndex < 0) {
      partitionKeyIndex = this.partitionKeys.size
      partitionKeyBytes = Protobuf.utf8Length(record.partitionKey)
      growth += Protobuf.lengthDelimitedSize(partitionKeyBytes)
    }
    let explicitHashKeyIndex = -1
    let explicitHashKeyBytes = -1
    const explicitHashKey = record.explicitHashKey
    if (explicitHashKey !== undefined) {
      const known = this.explicitHashKeys.indexOf(explicitHashKey)
      if (known < 0) {
        explicitHashKeyIndex = this.explicitHashKeys.size
        explicitHashKeyBytes = Protobuf.utf8Length(explicitHashKey)
        growth += Protobuf.lengthDelimitedSize(explicitHashKeyBytes)
      } else {
        explicitHashKeyIndex = known
      }
    }
    const dataLength = record.data.length
    const bodySize = Protobuf.recordBodySize(partitionKeyIndex, explicitHashKeyIndex, dataLength)
    growth += Protobuf.lengthDelimitedSize(bodySize)

    this.pendingSize = this.recordCount === 0
      // Alone, the record goes out as itself (as the KPL sends it), not wrapped.
      ? dataLength + partitionKeyBytes
      : FRAMING_OVERHEAD + this.messageSize + growth + this.firstPartitionKeyBytes
    this.pendingPartitionKeyIndex = partitionKeyIndex
    this.pendingPartitionKeyBytes = partitionKeyBytes
    this.pendingExplicitHashKeyIndex = explicitHashKeyIndex
    this.pendingExplicitHashKeyBytes = explicitHashKeyBytes
    this.pendingBodySize = bodySize
    this.pendingMessageGrowth = growth
  }
}
