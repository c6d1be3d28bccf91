import type { ProduceResult } from "../Producer.ts"
import type { ProducerError } from "../ProducerError.ts"

/**
 * Called once per record when it settles: with an error, or with the result. `entry.ref`
 * carries what the caller needs (an index, the user's record…), so one callback serves a whole
 * chunk and `offer` allocates none.
 */
export type Done = (entry: Entry, error: ProducerError | undefined, result: ProduceResult | undefined) => void

/**
 * One user record on its way to Kinesis. It is also the `KinesisRecord` the aggregator takes
 * (`partitionKey`, `explicitHashKey`, `data`), so aggregation allocates nothing per record.
 */
export class Entry {
  readonly partitionKey: string
  readonly explicitHashKey: string | undefined
  readonly data: Uint8Array
  /** Data plus partition key bytes: what the record counts against Kinesis limits. */
  readonly size: number
  readonly hashKey: bigint
  readonly done: Done
  readonly ref: unknown
  enqueuedAt = 0
  deadline = 0
  attempts = 0
  notBefore = 0
  lastError: string | undefined = undefined

  constructor(
    partitionKey: string,
    explicitHashKey: string | undefined,
    data: Uint8Array,
    size: number,
    hashKey: bigint,
    done: Done,
    ref: unknown
  ) {
    this.partitionKey = partitionKey
    this.explicitHashKey = explicitHashKey
    this.data = data
    this.size = size
    this.hashKey = hashKey
    this.done = done
    this.ref = ref
  }
}
