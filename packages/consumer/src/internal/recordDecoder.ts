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
  const foreign = (users: ReadonlyArray<Aggregation.UserRecord>) => {
    if (routed === undefined) return false
    for (const user of users) {
      const explicit = user.explicitHashKey === undefined ? undefined : HashKey.parseExplicit(user.explicitHashKey)
      if (
        explicit === undefined
          ? !routed.contains(user.partitionKey)
          : explicit < range!.start || explicit > range!.end
      ) {
        return true
      }
    }
    return false
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

  // Calls `each` for every user record of the batch that is past the checkpoint, in order; an
  // aggregate that cannot be split is one plain record (the KCL's choice: its bytes may be a
  // producer's own format that happens to match, and the user decides what they mean).
  const forEachUserRecord = (
    records: ReadonlyArray<_Record>,
    each: (raw: Raw) => void
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
    const emit = (raw: Raw) => {
      const n = raw.data.length
      bytes += n
      if (n < minBytes) minBytes = n
      if (n > maxBytes) maxBytes = n
      each(raw)
    }
    // Positions are reported once per batch, or before a drop, to keep them off the per-record path.
    let last: _Record | undefined
    let lastSub = 0
    const flush = () => {
      if (last !== undefined) onDelivered(ExtendedSequenceNumber.make(last.SequenceNumber!, lastSub))
      last = undefined
    }
    for (const r of records) {
      const data = r.Data ?? EMPTY
      // `deaggregate` checks an aggregate's MD5 and hands a plain record back with its data
      // itself; asking `isAggregated` first would digest every aggregate twice.
      const users = hasMagic(data) ? Aggregation.deaggregate({ partitionKey: r.PartitionKey!, data }) : undefined
      if (
        users === undefined ||
        (Result.isSuccess(users) && users.success.length === 1 && users.success[0]!.data === data)
      ) {
        if (!obsolete(r.SequenceNumber!, 0)) {
          emit({
            r,
            data,
            subSequenceNumber: 0,
            aggregated: false,
            partitionKey: r.PartitionKey!,
            explicitHashKey: undefined
          })
          last = r
          lastSub = 0
        }
        continue
      }
      if (Result.isFailure(users)) {
        if (!obsolete(r.SequenceNumber!, 0)) {
          malformed.push({ sequenceNumber: r.SequenceNumber!, error: users.failure })
          emit({
            r,
            data,
            subSequenceNumber: 0,
            aggregated: false,
            partitionKey: r.PartitionKey!,
            explicitHashKey: undefined
          })
          last = r
          lastSub = 0
        }
        continue
      }
      if (foreign(users.success)) {
        const lastSubSequence = users.success.length - 1
        if (!obsolete(r.SequenceNumber!, lastSubSequence)) {
          flush()
          onDropped(ExtendedSequenceNumber.make(r.SequenceNumber!, lastSubSequence))
          dropped.push({ sequenceNumber: r.SequenceNumber!, userRecords: users.success.length })
        }
        continue
      }
      for (const user of users.success) {
        if (obsolete(r.SequenceNumber!, user.subSequenceNumber)) continue
        last = r
        lastSub = user.subSequenceNumber
        emit({
          r,
          data: user.data,
          subSequenceNumber: user.subSequenceNumber,
          aggregated: true,
          partitionKey: user.partitionKey,
          explicitHashKey: user.explicitHashKey
        })
      }
    }
    flush()
    return { dropped, malformed, bytes, minBytes, maxBytes }
  }

  if (sync !== undefined) {
    return {
      decode: (records) =>
        Effect.sync(() => {
          const items: Array<ConsumerRecord<A> | RecordDecodeFailed> = []
          let failures = 0
          const { bytes, dropped, malformed, maxBytes, minBytes } = forEachUserRecord(records, (raw) => {
            const decoded = sync.deserializeResult(raw.data)
            if (Result.isSuccess(decoded)) {
              items.push(record(raw, decoded.success))
            } else {
              failures++
              items.push(failed(raw, decoded.failure))
            }
          })
          return { items, failures, dropped, malformed, bytes, minBytes, maxBytes }
        })
    }
  }
  return {
    decode: (records) =>
      Effect.suspend(() => {
        const pending: Array<Raw> = []
        const { bytes, dropped, malformed, maxBytes, minBytes } = forEachUserRecord(records, (raw) => pending.push(raw))
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
