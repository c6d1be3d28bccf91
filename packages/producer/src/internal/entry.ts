import { Aggregation, HashKey } from "@effect-kinesis/core"
import type { Tracer } from "effect"
import type { ProducerError } from "../ProducerError.ts"
import type { KeyState } from "./keyOrder.ts"
import type { ShardState } from "./shardState.ts"

/**
 * Called once per record when it settles: with an error, or with where Kinesis stored it.
 * `entry.ref` carries what the caller needs (an index, the user's record…), so one callback
 * serves a whole chunk and `offer` allocates none; callers that want a `ProduceResult` build it.
 */
export type Done = (
  entry: Entry,
  error: ProducerError | undefined,
  shardId: string,
  sequenceNumber: string,
  subSequenceNumber: number
) => void

/** What only some records carry: the state of a retry, a span. */
export class Extras {
  /** Not to be sent before this time (ms). */
  notBefore = 0
  /** The error code of the last failed attempt. */
  lastError: string | undefined = undefined
  /** When the last failed attempt's answer came (ms; 0 before one did), for `BufferingTime`. */
  attemptEndedAt = 0
  /** The record's span from offer to settlement, when it was sampled. */
  span: Tracer.Span | undefined = undefined
}

/**
 * One user record on its way to Kinesis. It is also the `KinesisRecord` the aggregator takes
 * (`partitionKey`, `explicitHashKey`, `data`), so aggregation allocates nothing per record.
 *
 * Every buffered record has one, and they live long enough to be copied by the garbage
 * collector, so it keeps to the fields every record needs: what only some records have (an
 * explicit hash key, a retry) or what follows from other fields lives elsewhere.
 */
export class Entry {
  readonly partitionKey: string
  readonly data: Uint8Array
  /** Data plus partition key bytes: what the record counts against Kinesis limits. */
  readonly size: number
  /** `MD5(partitionKey)`, or the explicit hash key: what routes it to a shard. */
  readonly hashKey: HashKeyRoute
  readonly done: Done
  readonly ref: unknown
  /** The shard it was last routed to. */
  shard: ShardState | undefined = undefined
  /** When it was accepted (whole ms); its deadline is this plus the TTL. */
  enqueuedAt = 0
  attempts = 0
  /** Set once an attempt failed, or when the record has a span. */
  extras: Extras | undefined = undefined

  constructor(
    partitionKey: string,
    data: Uint8Array,
    size: number,
    hashKey: HashKeyRoute,
    done: Done,
    ref: unknown
  ) {
    this.partitionKey = partitionKey
    this.data = data
    this.size = size
    this.hashKey = hashKey
    this.done = done
    this.ref = ref
  }

  get explicitHashKey(): string | undefined {
    return this.hashKey.explicitHashKey
  }

  // A plain record is its own PutRecords request entry: a request object per record would be one
  // more object living through the round trip (promoted by the collector, and what paces it).

  /** The request entry's `PartitionKey`. */
  get PartitionKey(): string {
    return this.partitionKey
  }

  /** The request entry's `Data`. */
  get Data(): Uint8Array {
    return this.data
  }

  /** The request entry's `ExplicitHashKey`. */
  get ExplicitHashKey(): string | undefined {
    return this.hashKey.explicitHashKey
  }

  /** `data.length`, without reaching into the data again (it is long out of the cache). */
  get dataBytes(): number {
    return this.size - this.hashKey.partitionKeyBytes
  }

  /** When the next attempt may go (0 for a record not yet tried). */
  get notBefore(): number {
    return this.extras === undefined ? 0 : this.extras.notBefore
  }

  /** Since when it waits to be sent: its acceptance, or the answer to its last failed attempt. */
  get waitingSince(): number {
    const extras = this.extras
    return extras === undefined || extras.attemptEndedAt === 0 ? this.enqueuedAt : extras.attemptEndedAt
  }
}

/** Bits of a hash key below those `HashKeyRoute.high` keeps (128 − 53, so it is an exact number). */
const LOW_BITS = 75n

/**
 * A hash key with its high 53 bits as a number: routing compares those first, and BigInt
 * comparisons (each a runtime call) only on a tie. Records of one partition key share one (see
 * {@link PartitionKeyHashes}), so it also remembers the key's UTF-8 length and the shard it was
 * last routed to.
 */
export class HashKeyRoute {
  readonly key: bigint
  readonly high: number
  /** UTF-8 bytes of the partition key of the records routed by it. */
  readonly partitionKeyBytes: number
  /** The explicit hash key as given, for a route of one record's explicit hash key. */
  readonly explicitHashKey: string | undefined
  /** The shard `Engine.route` found, valid while the engine's shard map epoch equals `epoch`. */
  shard: ShardState | undefined = undefined
  epoch = -1
  /** The per-key order state last found for the key (see `KeyOrder.stateOf`); may be stale. */
  keyState: KeyState | undefined = undefined
  constructor(key: bigint, partitionKeyBytes: number, explicitHashKey?: string) {
    this.key = key
    this.high = Number(key >> LOW_BITS)
    this.partitionKeyBytes = partitionKeyBytes
    this.explicitHashKey = explicitHashKey
  }
}

const partitionKeyRoute = (partitionKey: string): HashKeyRoute =>
  new HashKeyRoute(HashKey.fromPartitionKey(partitionKey), Aggregation.partitionKeyBytes(partitionKey))

/** `HashKeyRoute.high` of a shard's starting hash key. */
export const highBits = (key: bigint): number => Number(key >> LOW_BITS)

/** Distinct partition keys remembered per generation; two generations are kept. */
const GENERATION = 8192
/** How long (in generations' worth of lookups) the cache stays off after a poor generation. */
const BYPASS_GENERATIONS = 8

/**
 * `MD5(partitionKey)` as a hash key, remembered for recently used keys: real workloads repeat
 * keys (customers, devices), and the digest plus its BigInt conversion is the dearest step of
 * accepting a record. Two generations approximate an LRU without per-hit bookkeeping: a key
 * found only in the old one moves to the new one, and a full new generation retires the old.
 * Where keys rarely repeat (random ids), remembering costs more than it saves, so a generation
 * that mostly missed turns the cache off for a while.
 */
export class PartitionKeyHashes {
  private young = new Map<string, HashKeyRoute>()
  private old = new Map<string, HashKeyRoute>()
  /** Lookups of the current generation answered from memory. */
  private hits = 0
  /** Lookups left that skip the cache. */
  private bypass = 0

  get(partitionKey: string): HashKeyRoute {
    if (this.bypass > 0) {
      this.bypass--
      return partitionKeyRoute(partitionKey)
    }
    let hashKey = this.young.get(partitionKey)
    if (hashKey !== undefined) {
      this.hits++
      return hashKey
    }
    hashKey = this.old.get(partitionKey)
    if (hashKey !== undefined) this.hits++
    else hashKey = partitionKeyRoute(partitionKey)
    if (this.young.size >= GENERATION) {
      // A generation is GENERATION misses: fewer hits than that is a hit rate under one half.
      if (this.hits < GENERATION) this.bypass = GENERATION * BYPASS_GENERATIONS
      this.hits = 0
      this.old = this.young
      this.young = new Map()
    }
    this.young.set(partitionKey, hashKey)
    return hashKey
  }
}
