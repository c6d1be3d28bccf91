/**
 * The parts of the Kinesis JSON 1.1 wire format the fault proxy reads. Decoding only checks and types the fields it
 * needs; what gets forwarded is the client's own JSON, unknown fields included.
 *
 * @internal
 */
import { Schema } from "effect"

const StreamRef = {
  StreamName: Schema.optionalKey(Schema.String),
  StreamARN: Schema.optionalKey(Schema.String)
}

const PutRecordsEntry = Schema.Struct({
  Data: Schema.String,
  PartitionKey: Schema.String,
  ExplicitHashKey: Schema.optionalKey(Schema.NullOr(Schema.String))
})

const PutRecordsInput = Schema.Struct({ ...StreamRef, Records: Schema.Array(PutRecordsEntry) })
const PutRecordInput = Schema.Struct({ ...StreamRef, ...PutRecordsEntry.fields })

const PutRecordsResultEntry = Schema.Struct({
  ShardId: Schema.optionalKey(Schema.NullOr(Schema.String)),
  ErrorCode: Schema.optionalKey(Schema.NullOr(Schema.String))
})

const PutRecordsOutput = Schema.Struct({
  FailedRecordCount: Schema.optionalKey(Schema.NullOr(Schema.Number)),
  Records: Schema.Array(PutRecordsResultEntry)
})

const PutRecordOutput = Schema.Struct({ ShardId: Schema.String })

const ListShardsOutput = Schema.Struct({
  NextToken: Schema.optionalKey(Schema.NullOr(Schema.String)),
  Shards: Schema.Array(Schema.Struct({
    ShardId: Schema.String,
    HashKeyRange: Schema.Struct({ StartingHashKey: Schema.String, EndingHashKey: Schema.String }),
    SequenceNumberRange: Schema.optionalKey(Schema.Struct({
      EndingSequenceNumber: Schema.optionalKey(Schema.NullOr(Schema.String))
    }))
  }))
})

/** @internal */
export const decodePutRecords = Schema.decodeUnknownOption(PutRecordsInput)
/** @internal */
export const decodePutRecord = Schema.decodeUnknownOption(PutRecordInput)
/** @internal */
export const decodePutRecordsOutput = Schema.decodeUnknownOption(PutRecordsOutput)
/** @internal */
export const decodePutRecordOutput = Schema.decodeUnknownOption(PutRecordOutput)
/** @internal */
export const decodeListShards = Schema.decodeUnknownOption(ListShardsOutput)

/** @internal */
export const parseJson = (body: Buffer): unknown => {
  try {
    return JSON.parse(body.toString("utf8"))
  } catch {
    return undefined
  }
}
