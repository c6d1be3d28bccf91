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
import { Array as Arr, Cause, Effect, Result, Stream } from "effect"
import { RecordDecodeFailed } from "../ConsumerError.ts"
import type { ConsumerRecord } from "../ConsumerRecord.ts"
import * as PartitionKeyRange from "./partitionKeyRange.ts"

/** @internal */
export interface DecodedBatch<A> {
  /** User records handed on (decoded or not). */
  readonly count: number
  /**
   * The records in order, in chunks, built as they are asked for (the records of a whole batch,
   * all alive at once, cost the garbage collector more than the rest of the consumer); undefined
   * after the last. Undecodable records are in place, as `RecordDecodeFailed`.
   */
  readonly next: () => DecodedChunk<A> | undefined
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
export interface DecodedChunk<A> {
  /** In order; undecodable records in place, as `RecordDecodeFailed`. Never empty. */
  readonly items: Array<ConsumerRecord<A> | RecordDecodeFailed>
  readonly failures: number
}

/**
 * Records per chunk: whole aggregates (or runs of plain records) are added until it holds this
 * many. Small enough that a chunk's records die young.
 */
const CHUNK = 1024

/** An aggregate's user records `[from, to)`, or a run of plain records. */
interface Segment {
  readonly r: _Record
  readonly from: number
  readonly to: number
  readonly partitionKeys: Array<string>
  readonly explicitHashKeys: Array<string | undefined>
  readonly bounds: Array<number>
  /** Set for a run of plain records (the rest is empty). */
  readonly plain: Array<_Record> | undefined
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

// The explicit hash keys of an aggregate without any: every index reads `undefined`.
const NO_EXPLICIT_HASH_KEYS: Array<string | undefined> = []

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

/**
 * Receives one user record of a batch, as positional arguments: no object per record. Its data is
 * `r.Data.subarray(start, end)` when `aggregated`, else all of `r.Data`.
 */
type Each = (
  r: _Record,
  start: number,
  end: number,
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
  // aggregate is dropped when one of them belongs to another shard. Reused from one to the next:
  // the first `collected` entries are the current aggregate's (written in place, never emptied,
  // so that the arrays do not grow again from nothing for every aggregate).
  const partitionKeys: Array<string> = []
  const explicitHashKeys: Array<string | undefined> = []
  const bounds: Array<number> = []
  let collected = 0
  let foreign = false
  // Whether a user record of the aggregate has an explicit hash key (most have none).
  let explicit = false
  const collect = (partitionKey: string, explicitHashKey: string | undefined, start: number, end: number) => {
    const n = collected++
    if (explicitHashKey !== undefined) explicit = true
    if (n < partitionKeys.length) {
      partitionKeys[n] = partitionKey
      explicitHashKeys[n] = explicitHashKey
      bounds[2 * n] = start
      bounds[2 * n + 1] = end
    } else {
      partitionKeys.push(partitionKey)
      explicitHashKeys.push(explicitHashKey)
      bounds.push(start, end)
    }
    if (!foreign && routed !== undefined && outside(partitionKey, explicitHashKey)) foreign = true
  }
  // Keeps the scratch arrays from holding on to strings of a batch long done.
  const clearScratch = () => {
    partitionKeys.fill("")
    explicitHashKeys.fill(undefined)
    collected = 0
  }

  // Calls `each` for every user record of the batch that is past the checkpoint, in order; an
  // aggregate that cannot be split is one plain record (the KCL's choice: its bytes may be a
  // producer's own format that happens to match, and the user decides what they mean).
  const forEachUserRecord = (
    records: ReadonlyArray<_Record>,
    each: Each,
    /**
     * Instead of `each` for the user records `[from, to)` of an aggregate: they are the first
     * `to` entries of `partitionKeys`, `explicitHashKeys` and `bounds` during the call.
     */
    eachAggregate?: (r: _Record, from: number, to: number) => void
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
      each(r, 0, n, 0, false, r.PartitionKey!, undefined)
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
      collected = 0
      foreign = false
      explicit = false
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
      const count = collected
      if (foreign) {
        const lastSubSequence = count - 1
        if (!obsolete(r.SequenceNumber!, lastSubSequence)) {
          flush()
          onDropped(ExtendedSequenceNumber.make(r.SequenceNumber!, lastSubSequence))
          dropped.push({ sequenceNumber: r.SequenceNumber!, userRecords: count })
        }
        continue
      }
      // Records at or before the checkpoint are a prefix: the rest are `[from, count)`.
      let from = 0
      while (from < count && obsolete(r.SequenceNumber!, from)) from++
      if (from === count) continue
      last = r
      lastSub = count - 1
      for (let sub = from; sub < count; sub++) {
        const start = bounds[2 * sub]!
        const end = bounds[2 * sub + 1]!
        const n = end - start
        bytes += n
        if (n < minBytes) minBytes = n
        if (n > maxBytes) maxBytes = n
        if (eachAggregate === undefined) each(r, start, end, sub, true, partitionKeys[sub]!, explicitHashKeys[sub])
      }
      if (eachAggregate !== undefined) eachAggregate(r, from, count)
    }
    clearScratch()
    flush()
    return { dropped, malformed, bytes, minBytes, maxBytes }
  }

  const dataOf = (r: _Record, start: number, end: number, aggregated: boolean): Uint8Array => {
    const data = r.Data ?? EMPTY
    return aggregated ? data.subarray(start, end) : data
  }

  if (sync !== undefined) {
    // `Serde.bytes` hands the data on as it is: no `Result` per record.
    const identity = deserializer === (Serde.bytes as Serde.Serde<unknown>)
    return {
      decode: (records) =>
        Effect.sync(() => {
          // The batch's user records by aggregate, and runs of plain records (no object per
          // record); records are built a chunk at a time, when the chunk is asked for.
          const segments: Array<Segment> = []
          let count = 0
          let plainRun: Array<_Record> | undefined
          const { bytes, dropped, malformed, maxBytes, minBytes } = forEachUserRecord(
            records,
            (r) => {
              count++
              if (plainRun === undefined || plainRun.length === CHUNK) {
                plainRun = []
                segments.push({
                  r,
                  from: 0,
                  to: 0,
                  partitionKeys: [],
                  explicitHashKeys: [],
                  bounds: [],
                  plain: plainRun
                })
              }
              plainRun.push(r)
            },
            (r, from, to) => {
              count += to - from
              plainRun = undefined
              segments.push({
                r,
                from,
                to,
                partitionKeys: partitionKeys.slice(0, to),
                explicitHashKeys: explicit ? explicitHashKeys.slice(0, to) : NO_EXPLICIT_HASH_KEYS,
                bounds: bounds.slice(0, 2 * to),
                plain: undefined
              })
            }
          )
          let at = 0
          const decodeOne = (
            r: _Record,
            data: Uint8Array,
            sub: number,
            aggregated: boolean,
            partitionKey: string,
            explicitHashKey: string | undefined
          ): ConsumerRecord<A> | RecordDecodeFailed => {
            let value: A
            if (identity) value = data as A
            else {
              const decoded = sync.deserializeResult(data)
              if (Result.isFailure(decoded)) {
                return failed(
                  { r, data, subSequenceNumber: sub, aggregated, partitionKey, explicitHashKey },
                  decoded.failure
                )
              }
              value = decoded.success
            }
            return {
              shardId,
              sequenceNumber: r.SequenceNumber!,
              subSequenceNumber: sub,
              aggregated,
              partitionKey,
              explicitHashKey,
              approximateArrivalTimestamp: r.ApproximateArrivalTimestamp,
              data: value
            }
          }
          // Whole segments until the chunk holds `CHUNK` records: a chunk costs a span and a few
          // effects downstream, too many for an aggregate of a few records each.
          const next = (): DecodedChunk<A> | undefined => {
            if (at >= segments.length) return undefined
            // Sized first: an array grown by `push` leaves its outgrown copies behind as garbage.
            let size = 0
            for (let i = at; i < segments.length && size < CHUNK; i++) {
              const segment = segments[i]!
              size += segment.plain !== undefined ? segment.plain.length : segment.to - segment.from
            }
            const items: Array<ConsumerRecord<A> | RecordDecodeFailed> = new Array(size)
            let k = 0
            let failures = 0
            while (k < size) {
              const segment = segments[at]!
              segments[at++] = undefined!
              const plain = segment.plain
              if (plain !== undefined) {
                for (let i = 0; i < plain.length; i++) {
                  const r = plain[i]!
                  const item = decodeOne(r, r.Data ?? EMPTY, 0, false, r.PartitionKey!, undefined)
                  if (item instanceof RecordDecodeFailed) failures++
                  items[k++] = item
                }
                continue
              }
              const { bounds: b, explicitHashKeys: hashKeys, from, partitionKeys: keys, r, to } = segment
              const data = r.Data ?? EMPTY
              for (let sub = from; sub < to; sub++) {
                const item = decodeOne(
                  r,
                  data.subarray(b[2 * sub]!, b[2 * sub + 1]!),
                  sub,
                  true,
                  keys[sub]!,
                  hashKeys[sub]
                )
                if (item instanceof RecordDecodeFailed) failures++
                items[k++] = item
              }
            }
            return { items, failures }
          }
          return { count, next, dropped, malformed, bytes, minBytes, maxBytes }
        })
    }
  }
  return {
    decode: (records) =>
      Effect.suspend(() => {
        const pending: Array<Raw> = []
        const { bytes, dropped, malformed, maxBytes, minBytes } = forEachUserRecord(
          records,
          (r, start, end, subSequenceNumber, aggregated, partitionKey, explicitHashKey) =>
            pending.push({
              r,
              data: dataOf(r, start, end, aggregated),
              subSequenceNumber,
              aggregated,
              partitionKey,
              explicitHashKey
            })
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
          (items) => {
            // Decoded up front (the deserializer is an effect): handed on as one chunk.
            let chunk: DecodedChunk<A> | undefined = items.length === 0 ? undefined : { items, failures }
            const next = () => {
              const out = chunk
              chunk = undefined
              return out
            }
            return { count: items.length, next, dropped, malformed, bytes, minBytes, maxBytes }
          }
        )
      })
  }
}

/**
 * The chunks of a decoded batch as a stream, each turned into a non-empty array by `f` as it is
 * pulled (an empty array is skipped).
 *
 * @internal
 */
export const chunks = <A, B>(
  decoded: DecodedBatch<A>,
  f: (chunk: DecodedChunk<A>) => ReadonlyArray<B>
): Stream.Stream<B> =>
  Stream.fromPull(Effect.sync(() => {
    const pull: Effect.Effect<Arr.NonEmptyReadonlyArray<B>, Cause.Done> = Effect.suspend(() => {
      const chunk = decoded.next()
      if (chunk === undefined) return Cause.done()
      const out = f(chunk)
      return Arr.isReadonlyArrayNonEmpty(out) ? Effect.succeed(out) : pull
    })
    return pull
  }))
