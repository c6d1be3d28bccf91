/**
 * Kinesis records of one batch → user records: KPL aggregates split into their user records,
 * records at or before the checkpoint dropped, aggregates holding a user record of another shard
 * dropped (as the KCL does), malformed aggregates passed on whole as plain records (as the KCL
 * does), data decoded by the deserializer. This is the
 * per-record hot path: with a synchronous deserializer it allocates one object per user record.
 *
 * @internal
 */
import type { _Record } from "@aws-sdk/client-kinesis"
import { Aggregation, ExtendedSequenceNumber, HashKey, Serde } from "@effect-kinesis/core"
import { Effect, Result } from "effect"
import { RecordDecodeFailed } from "../ConsumerError.ts"
import type { ConsumerRecord } from "../ConsumerRecord.ts"
import * as PartitionKeyRange from "./partitionKeyRange.ts"

/** @internal */
export interface DecodedBatch<A> {
  /** In order; undecodable records in place, as `RecordDecodeFailed`. */
  readonly items: Array<ConsumerRecord<A> | RecordDecodeFailed>
  readonly failures: number
  /** Aggregates dropped because a user record hashes outside the shard's range. */
  readonly dropped: Array<DroppedAggregate>
  /** Records with an aggregate's magic and MD5 whose contents are malformed, delivered whole. */
  readonly malformed: Array<MalformedAggregate>
  /** Data bytes of the items (user records), their sum and extremes, for `DataBytesProcessed`. */
  readonly bytes: number
  readonly minBytes: number
  readonly maxBytes: number
}

/** @internal */
export interface MalformedAggregate {
  readonly sequenceNumber: string
  readonly error: Aggregation.AggregationDecodeError
}

/** @internal */
export interface DroppedAggregate {
  readonly sequenceNumber: string
  readonly userRecords: number
}

/** @internal */
export interface RecordDecoder<A> {
  /** Decodes one batch; records at or before `after` are dropped (until one is not). */
  readonly decode: (records: ReadonlyArray<_Record>) => Effect.Effect<DecodedBatch<A>>
}

const EMPTY = new Uint8Array(0)

// `F3 89 9A C2`: only a record starting with the KPL's magic can be an aggregate.
const hasMagic = (data: Uint8Array) => data[0] === 0xf3 && data[1] === 0x89 && data[2] === 0x9a && data[3] === 0xc2

interface Raw {
  readonly r: _Record
  readonly data: Uint8Array
  readonly subSequenceNumber: number
  readonly aggregated: boolean
  readonly partitionKey: string
  readonly explicitHashKey: string | undefined
}

/** Receives one user record of a batch, as positional arguments: no object per record. */
type Each = (
  r: _Record,
  data: Uint8Array,
  subSequenceNumber: number,
  aggregated: boolean,
  partitionKey: string,
  explicitHashKey: string | undefined
) => void

/** @internal */
export const make = <A>(options: {
  readonly shardId: string
  readonly after: ExtendedSequenceNumber.ExtendedSequenceNumber
  readonly deserializer: Serde.Serde<A>
  /** The shard's hash key range; without it no aggregate is dropped. */
  readonly hashKeyRange: { readonly startingHashKey: string; readonly endingHashKey: string } | undefined
  /** Called with the last record of each batch handed on (decoded or not), in order. */
  readonly onDelivered: (position: ExtendedSequenceNumber.ExtendedSequenceNumber) => void
  /** Called with the last position of each dropped aggregate, in order with `onDelivered`. */
  readonly onDropped: (position: ExtendedSequenceNumber.ExtendedSequenceNumber) => void
}): RecordDecoder<A> => {
  const { after, deserializer, onDelivered, onDropped, shardId } = options
  const range = options.hashKeyRange === undefined
    ? undefined
    : { start: BigInt(options.hashKeyRange.startingHashKey), end: BigInt(options.hashKeyRange.endingHashKey) }
  // A shard owning the whole key space (a stream of one shard) has nothing to check.
  const routed = range === undefined || (range.start === HashKey.MIN && range.end === HashKey.MAX)
    ? undefined
    : PartitionKeyRange.makeRangeCheck(range.start, range.end)
  // The KPL may re-send the user records of an aggregate that landed on another shard than it
  // predicted (after a split); the KCL drops such aggregates whole, and so must we, or the copy
  // would be delivered twice.
  const outside = (partitionKey: string, explicitHashKey: string | undefined) => {
    const explicit = explicitHashKey === undefined ? undefined : HashKey.parseExplicit(explicitHashKey)
    return explicit === undefined
      ? !routed!.contains(partitionKey)
      : explicit < range!.start || explicit > range!.end
  }
  // Only a real sequence number can make records obsolete; after the first record past it, none is.
  let filtering = !ExtendedSequenceNumber.isSentinel(after)
  const sync = Serde.isSync(deserializer) ? deserializer : undefined

  const obsolete = (sequenceNumber: string, subSequenceNumber: number) => {
    if (!filtering) return false
    if (ExtendedSequenceNumber.compare(ExtendedSequenceNumber.make(sequenceNumber, subSequenceNumber), after) <= 0) {
      return true
    }
    filtering = false
    return false
  }

  const record = <B>(raw: Raw, data: B): ConsumerRecord<B> => ({
    shardId,
    sequenceNumber: raw.r.SequenceNumber!,
    subSequenceNumber: raw.subSequenceNumber,
    aggregated: raw.aggregated,
    partitionKey: raw.partitionKey,
    explicitHashKey: raw.explicitHashKey,
    approximateArrivalTimestamp: raw.r.ApproximateArrivalTimestamp,
    data
  })

  const failed = (raw: Raw, cause: Serde.DeserializationError) =>
    new RecordDecodeFailed({ record: record(raw, raw.data), cause })

  // The user records of the aggregate being split, collected before any is handed on: the whole
  // aggregate is dropped when one of them belongs to another shard. Reused from one to the next.
  const partitionKeys: Array<string> = []
  const explicitHashKeys: Array<string | undefined> = []
  const datas: Array<Uint8Array> = []
  let foreign = false
  const collect = (partitionKey: string, explicitHashKey: string | undefined, data: Uint8Array) => {
    partitionKeys.push(partitionKey)
    explicitHashKeys.push(explicitHashKey)
    datas.push(data)
    if (!foreign && routed !== undefined && outside(partitionKey, explicitHashKey)) foreign = true
  }

  // Calls `each` for every user record of the batch that is past the checkpoint, in order; an
  // aggregate that cannot be split is one plain record (the KCL's choice: its bytes may be a
  // producer's own format that happens to match, and the user decides what they mean).
  const forEachUserRecord = (
    records: ReadonlyArray<_Record>,
    each: Each
  ): {
    dropped: Array<DroppedAggregate>
    malformed: Array<MalformedAggregate>
    bytes: number
    minBytes: number
    maxBytes: number
  } => {
    const dropped: Array<DroppedAggregate> = []
    const malformed: Array<MalformedAggregate> = []
    let bytes = 0
    let minBytes = Infinity
    let maxBytes = 0
    // Positions are reported once per batch, or before a drop, to keep them off the per-record path.
    let last: _Record | undefined
    let lastSub = 0
    const flush = () => {
      if (last !== undefined) onDelivered(ExtendedSequenceNumber.make(last.SequenceNumber!, lastSub))
      last = undefined
    }
    const plain = (r: _Record, data: Uint8Array) => {
      const n = data.length
      bytes += n
      if (n < minBytes) minBytes = n
      if (n > maxBytes) maxBytes = n
      each(r, data, 0, false, r.PartitionKey!, undefined)
      last = r
      lastSub = 0
    }
    for (const r of records) {
      const data = r.Data ?? EMPTY
      // Only a record with the magic can be an aggregate; `forEachUserRecord` checks its MD5 and
      // hands a plain one back as itself (asking `isAggregated` first would digest it twice).
      if (!hasMagic(data)) {
        if (!obsolete(r.SequenceNumber!, 0)) plain(r, data)
        continue
      }
      partitionKeys.length = 0
      explicitHashKeys.length = 0
      datas.length = 0
      foreign = false
      const aggregated = Aggregation.forEachUserRecord({ partitionKey: r.PartitionKey!, data }, collect)
      if (Result.isFailure(aggregated)) {
        if (!obsolete(r.SequenceNumber!, 0)) {
          malformed.push({ sequenceNumber: r.SequenceNumber!, error: aggregated.failure })
          plain(r, data)
        }
        continue
      }
      if (!aggregated.success) {
        if (!obsolete(r.SequenceNumber!, 0)) plain(r, data)
        continue
      }
      const count = datas.length
      if (foreign) {
        const lastSubSequence = count - 1
        if (!obsolete(r.SequenceNumber!, lastSubSequence)) {
          flush()
          onDropped(ExtendedSequenceNumber.make(r.SequenceNumber!, lastSubSequence))
          dropped.push({ sequenceNumber: r.SequenceNumber!, userRecords: count })
        }
        continue
      }
      for (let sub = 0; sub < count; sub++) {
        if (obsolete(r.SequenceNumber!, sub)) continue
        last = r
        lastSub = sub
        const user = datas[sub]!
        const n = user.length
        bytes += n
        if (n < minBytes) minBytes = n
        if (n > maxBytes) maxBytes = n
        each(r, user, sub, true, partitionKeys[sub]!, explicitHashKeys[sub])
      }
    }
    partitionKeys.length = 0
    explicitHashKeys.length = 0
    datas.length = 0
    flush()
    return { dropped, malformed, bytes, minBytes, maxBytes }
  }

  // `Serde.bytes` hands the data on as it is: no `Result` per record.
  if (deserializer === (Serde.bytes as Serde.Serde<unknown>)) {
    return {
      decode: (records) =>
        Effect.sync(() => {
          const items: Array<ConsumerRecord<A>> = []
          const { bytes, dropped, malformed, maxBytes, minBytes } = forEachUserRecord(
            records,
            (r, data, subSequenceNumber, aggregated, partitionKey, explicitHashKey) => {
              items.push({
                shardId,
                sequenceNumber: r.SequenceNumber!,
                subSequenceNumber,
                aggregated,
                partitionKey,
                explicitHashKey,
                approximateArrivalTimestamp: r.ApproximateArrivalTimestamp,
                data: data as A
              })
            }
          )
          return { items, failures: 0, dropped, malformed, bytes, minBytes, maxBytes }
        })
    }
  }
  if (sync !== undefined) {
    return {
      decode: (records) =>
        Effect.sync(() => {
          const items: Array<ConsumerRecord<A> | RecordDecodeFailed> = []
          let failures = 0
          const { bytes, dropped, malformed, maxBytes, minBytes } = forEachUserRecord(
            records,
            (r, data, subSequenceNumber, aggregated, partitionKey, explicitHashKey) => {
              const decoded = sync.deserializeResult(data)
              if (Result.isSuccess(decoded)) {
                items.push({
                  shardId,
                  sequenceNumber: r.SequenceNumber!,
                  subSequenceNumber,
                  aggregated,
                  partitionKey,
                  explicitHashKey,
                  approximateArrivalTimestamp: r.ApproximateArrivalTimestamp,
                  data: decoded.success
                })
              } else {
                failures++
                items.push(
                  failed({ r, data, subSequenceNumber, aggregated, partitionKey, explicitHashKey }, decoded.failure)
                )
              }
            }
          )
          return { items, failures, dropped, malformed, bytes, minBytes, maxBytes }
        })
    }
  }
  return {
    decode: (records) =>
      Effect.suspend(() => {
        const pending: Array<Raw> = []
        const { bytes, dropped, malformed, maxBytes, minBytes } = forEachUserRecord(
          records,
          (r, data, subSequenceNumber, aggregated, partitionKey, explicitHashKey) =>
            pending.push({ r, data, subSequenceNumber, aggregated, partitionKey, explicitHashKey })
        )
        let failures = 0
        return Effect.map(
          Effect.forEach(pending, (entry): Effect.Effect<ConsumerRecord<A> | RecordDecodeFailed> => {
            return deserializer.deserialize(entry.data).pipe(
              Effect.map((data) => record(entry, data)),
              Effect.catch((error) => {
                failures++
                return Effect.succeed(failed(entry, error))
              })
            )
          }),
          (items) => ({ items, failures, dropped, malformed, bytes, minBytes, maxBytes })
        )
      })
  }
}
