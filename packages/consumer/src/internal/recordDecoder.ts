/**
 * Kinesis records of one batch → user records: KPL aggregates split into their user records,
 * records at or before the checkpoint dropped, data decoded by the deserializer. This is the
 * per-record hot path: with a synchronous deserializer it allocates one object per user record.
 *
 * @internal
 */
import type { _Record } from "@aws-sdk/client-kinesis"
import { Aggregation, ExtendedSequenceNumber, Serde } from "@effect-kinesis/core"
import { Effect, Result } from "effect"
import { RecordDecodeFailed } from "../ConsumerError.ts"
import type { ConsumerRecord } from "../ConsumerRecord.ts"

/** @internal */
export interface DecodedBatch<A> {
  /** In order; undecodable records in place, as `RecordDecodeFailed`. */
  readonly items: Array<ConsumerRecord<A> | RecordDecodeFailed>
  readonly failures: number
}

/** @internal */
export interface RecordDecoder<A> {
  /** Decodes one batch; records at or before `after` are dropped (until one is not). */
  readonly decode: (records: ReadonlyArray<_Record>) => Effect.Effect<DecodedBatch<A>>
}

const EMPTY = new Uint8Array(0)

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
}): RecordDecoder<A> => {
  const { after, deserializer, shardId } = options
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

  const failed = (raw: Raw, cause: Serde.DeserializationError | Aggregation.AggregationDecodeError) =>
    new RecordDecodeFailed({ record: record(raw, raw.data), cause })

  // Calls `each` for every user record of the batch that is past the checkpoint, in order, and
  // `malformed` for aggregates that cannot be split.
  const forEachUserRecord = (
    records: ReadonlyArray<_Record>,
    each: (raw: Raw) => void,
    malformed: (raw: Raw, error: Aggregation.AggregationDecodeError) => void
  ) => {
    for (const r of records) {
      const data = r.Data ?? EMPTY
      if (!Aggregation.isAggregated(data)) {
        if (!obsolete(r.SequenceNumber!, 0)) {
          each({
            r,
            data,
            subSequenceNumber: 0,
            aggregated: false,
            partitionKey: r.PartitionKey!,
            explicitHashKey: undefined
          })
        }
        continue
      }
      const users = Aggregation.deaggregate({ partitionKey: r.PartitionKey!, data })
      if (Result.isFailure(users)) {
        if (!obsolete(r.SequenceNumber!, 0)) {
          malformed({
            r,
            data,
            subSequenceNumber: 0,
            aggregated: false,
            partitionKey: r.PartitionKey!,
            explicitHashKey: undefined
          }, users.failure)
        }
        continue
      }
      for (const user of users.success) {
        if (obsolete(r.SequenceNumber!, user.subSequenceNumber)) continue
        each({
          r,
          data: user.data,
          subSequenceNumber: user.subSequenceNumber,
          aggregated: true,
          partitionKey: user.partitionKey,
          explicitHashKey: user.explicitHashKey
        })
      }
    }
  }

  if (sync !== undefined) {
    return {
      decode: (records) =>
        Effect.sync(() => {
          const items: Array<ConsumerRecord<A> | RecordDecodeFailed> = []
          let failures = 0
          forEachUserRecord(records, (raw) => {
            const decoded = sync.deserializeResult(raw.data)
            if (Result.isSuccess(decoded)) {
              items.push(record(raw, decoded.success))
            } else {
              failures++
              items.push(failed(raw, decoded.failure))
            }
          }, (raw, error) => {
            failures++
            items.push(failed(raw, error))
          })
          return { items, failures }
        })
    }
  }
  return {
    decode: (records) =>
      Effect.suspend(() => {
        const pending: Array<Raw | RecordDecodeFailed> = []
        forEachUserRecord(records, (raw) => pending.push(raw), (raw, error) => pending.push(failed(raw, error)))
        let failures = 0
        return Effect.map(
          Effect.forEach(pending, (entry): Effect.Effect<ConsumerRecord<A> | RecordDecodeFailed> => {
            if (entry instanceof RecordDecodeFailed) {
              failures++
              return Effect.succeed(entry)
            }
            return deserializer.deserialize(entry.data).pipe(
              Effect.map((data) => record(entry, data)),
              Effect.catch((error) => {
                failures++
                return Effect.succeed(failed(entry, error))
              })
            )
          }),
          (items) => ({ items, failures })
        )
      })
  }
}
