/**
 * Routing: which open shard owns a hash key, built from ListShards output.
 *
 * The open shards of a stream tile the hash key space `[0, 2^128 − 1]` with inclusive ranges. A `ShardMap` checks
 * that tiling once when it is built and then answers lookups by binary search, so the producer can predict each
 * record's shard (to aggregate only records bound for the same shard) without a network call.
 *
 * @since 0.1.0
 */
import type { Shard } from "@aws-sdk/client-kinesis"
import * as Data from "effect/Data"
import * as Result from "effect/Result"
import * as HashKey from "./HashKey.ts"

/**
 * Why shards could not be turned into a {@link ShardInfo} or a {@link ShardMap}:
 *
 * - `InvalidShard`: a shard lacks an id or has a missing, malformed or inverted hash key range.
 * - `NoOpenShards`: no shard is open.
 * - `Gap`: some hash keys belong to no open shard.
 * - `Overlap`: some hash keys belong to two open shards.
 *
 * A gap or overlap can be transient (ListShards pages read across a reshard); listing again usually fixes it.
 *
 * @example
 * ```ts
 * import { ShardMap } from "@effect-kinesis/core"
 * import { Result } from "effect"
 * const result = ShardMap.fromShards([])
 * Result.isFailure(result) && result.failure.reason // "NoOpenShards"
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class ShardMapInvalid extends Data.TaggedError("ShardMapInvalid")<{
  readonly reason: "InvalidShard" | "NoOpenShards" | "Gap" | "Overlap"
  readonly message: string
}> {}

/**
 * A shard as the library uses it: id, inclusive hash key range as bigints, lineage and, for closed shards, the
 * ending sequence number. Built from the SDK's `Shard` with {@link ShardInfo.fromShard}, for open and closed shards
 * alike, so the consumer can build its shard-lineage graph from the same values the producer routes by.
 *
 * @example
 * ```ts
 * import { ShardMap } from "@effect-kinesis/core"
 * const shard: ShardMap.ShardInfo = {
 *   shardId: "shardId-000000000000",
 *   startingHashKey: 0n,
 *   endingHashKey: 2n ** 128n - 1n
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ShardInfo {
  readonly shardId: string
  readonly startingHashKey: HashKey.HashKey
  readonly endingHashKey: HashKey.HashKey
  readonly parentShardId?: string
  readonly adjacentParentShardId?: string
  /** Set exactly when the shard is closed (split, merged, or its stream shrank). */
  readonly endingSequenceNumber?: string
}

const fromShard = (shard: Shard): Result.Result<ShardInfo, ShardMapInvalid> => {
  const shardId = shard.ShardId
  if (shardId === undefined || shardId === "") return invalidShard("a shard has no ShardId")
  const start = shard.HashKeyRange?.StartingHashKey
  const end = shard.HashKeyRange?.EndingHashKey
  const startingHashKey = start === undefined ? undefined : HashKey.parseExplicit(start)
  const endingHashKey = end === undefined ? undefined : HashKey.parseExplicit(end)
  if (startingHashKey === undefined || endingHashKey === undefined) {
    return invalidShard(`shard ${shardId} has a missing or malformed hash key range [${start}, ${end}]`)
  }
  if (startingHashKey > endingHashKey) {
    return invalidShard(`shard ${shardId} has an empty hash key range [${start}, ${end}]`)
  }
  const info: {
    -readonly [K in keyof ShardInfo]: ShardInfo[K]
  } = { shardId, startingHashKey, endingHashKey }
  if (shard.ParentShardId !== undefined) info.parentShardId = shard.ParentShardId
  if (shard.AdjacentParentShardId !== undefined) info.adjacentParentShardId = shard.AdjacentParentShardId
  const endingSequenceNumber = shard.SequenceNumberRange?.EndingSequenceNumber
  if (endingSequenceNumber !== undefined) info.endingSequenceNumber = endingSequenceNumber
  return Result.succeed(info)
}

const invalidShard = (message: string) => Result.fail(new ShardMapInvalid({ reason: "InvalidShard", message }))

/**
 * Operations on a single {@link ShardInfo}.
 *
 * - `fromShard(shard)`: converts a ListShards `Shard` (open or closed); fails with `InvalidShard` when the id or
 *   hash key range is missing or malformed.
 * - `containsHashKey(shard, key)`: whether the shard's inclusive range holds `key`.
 * - `explicitHashKey(shard)`: a decimal `ExplicitHashKey` that routes to this shard (its starting hash key), for
 *   sending an aggregated record to exactly the shard its user records were predicted for.
 *
 * @example
 * ```ts
 * import { ShardMap } from "@effect-kinesis/core"
 * import { Result } from "effect"
 * const info = ShardMap.ShardInfo.fromShard({
 *   ShardId: "shardId-000000000001",
 *   HashKeyRange: { StartingHashKey: "170141183460469231731687303715884105728", EndingHashKey: "340282366920938463463374607431768211455" },
 *   SequenceNumberRange: { StartingSequenceNumber: "49590338271490256608559692538361571095921575989136588898" }
 * })
 * if (Result.isSuccess(info)) {
 *   ShardMap.ShardInfo.containsHashKey(info.success, 2n ** 127n) // true
 *   ShardMap.ShardInfo.explicitHashKey(info.success) // "170141183460469231731687303715884105728"
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export const ShardInfo: {
  readonly fromShard: (shard: Shard) => Result.Result<ShardInfo, ShardMapInvalid>
  readonly containsHashKey: (shard: ShardInfo, key: HashKey.HashKey) => boolean
  readonly explicitHashKey: (shard: ShardInfo) => string
} = {
  fromShard,
  containsHashKey: (shard, key) => shard.startingHashKey <= key && key <= shard.endingHashKey,
  explicitHashKey: (shard) => HashKey.toDecimal(shard.startingHashKey)
}

/**
 * The open shards of a stream, sorted by starting hash key and known to tile `[0, 2^128 − 1]` exactly.
 *
 * Build one with {@link fromShards}; it is immutable, so refreshing after a reshard means building a new one.
 *
 * @example
 * ```ts
 * import { ShardMap } from "@effect-kinesis/core"
 * declare const map: ShardMap.ShardMap
 * map.shards[0]?.startingHashKey // 0n
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ShardMap {
  /** Open shards in ascending hash key order. */
  readonly shards: ReadonlyArray<ShardInfo>
  /** The same shards, by shard id. */
  readonly shardsById: ReadonlyMap<string, ShardInfo>
}

/**
 * Builds the routing map from ListShards output. Closed shards (those with an `EndingSequenceNumber`) are ignored,
 * so the whole stream listing can be passed as is. Fails with {@link ShardMapInvalid} when a shard is malformed,
 * when no shard is open, or when the open shards leave a gap or overlap in the hash key space.
 *
 * @example
 * ```ts
 * import { ShardMap } from "@effect-kinesis/core"
 * import { Effect } from "effect"
 * import type { Shard } from "@aws-sdk/client-kinesis"
 * declare const listShards: Effect.Effect<ReadonlyArray<Shard>>
 * const program = Effect.gen(function*() {
 *   const map = yield* Effect.fromResult(ShardMap.fromShards(yield* listShards))
 *   return ShardMap.shardForRecord(map, "user-42")?.shardId
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromShards = (shards: Iterable<Shard>): Result.Result<ShardMap, ShardMapInvalid> => {
  const open: Array<ShardInfo> = []
  for (const shard of shards) {
    if (shard.SequenceNumberRange?.EndingSequenceNumber !== undefined) continue
    const info = fromShard(shard)
    if (Result.isFailure(info)) return Result.fail(info.failure)
    open.push(info.success)
  }
  if (open.length === 0) {
    return Result.fail(new ShardMapInvalid({ reason: "NoOpenShards", message: "the stream has no open shards" }))
  }
  open.sort((a, b) => a.startingHashKey < b.startingHashKey ? -1 : a.startingHashKey > b.startingHashKey ? 1 : 0)
  let next = HashKey.MIN
  let previous: ShardInfo | undefined
  for (const shard of open) {
    if (shard.startingHashKey > next) return Result.fail(gap(next, shard.startingHashKey - 1n))
    if (shard.startingHashKey < next) {
      return Result.fail(
        new ShardMapInvalid({
          reason: "Overlap",
          message:
            `open shards ${previous?.shardId} and ${shard.shardId} overlap from hash key ${shard.startingHashKey}`
        })
      )
    }
    next = shard.endingHashKey + 1n
    previous = shard
  }
  if (next <= HashKey.MAX) return Result.fail(gap(next, HashKey.MAX))
  return Result.succeed({ shards: open, shardsById: new Map(open.map((shard) => [shard.shardId, shard])) })
}

const gap = (from: bigint, to: bigint) =>
  new ShardMapInvalid({ reason: "Gap", message: `no open shard covers hash keys [${from}, ${to}]` })

/**
 * The open shard whose range contains `key`, found by binary search in O(log n). Returns `undefined` only when
 * `key` lies outside `[0, 2^128 − 1]`.
 *
 * @example
 * ```ts
 * import { HashKey, ShardMap } from "@effect-kinesis/core"
 * declare const map: ShardMap.ShardMap
 * ShardMap.shardForHashKey(map, HashKey.MAX)?.shardId
 * ```
 *
 * @since 0.1.0
 * @category lookups
 */
export const shardForHashKey = (self: ShardMap, key: HashKey.HashKey): ShardInfo | undefined => {
  if (key < HashKey.MIN || key > HashKey.MAX) return undefined
  const shards = self.shards
  // Last shard starting at or below the key; the tiling guarantees it also ends at or above it.
  let lo = 0
  let hi = shards.length - 1
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1
    if (shards[mid]!.startingHashKey <= key) lo = mid
    else hi = mid - 1
  }
  return shards[lo]
}

/**
 * The open shard Kinesis will put a record in: by its explicit hash key when given, otherwise by the MD5 of its
 * partition key. Returns `undefined` when the explicit hash key is not valid (see `HashKey.parseExplicit`), which
 * Kinesis would reject.
 *
 * @example
 * ```ts
 * import { ShardMap } from "@effect-kinesis/core"
 * declare const map: ShardMap.ShardMap
 * ShardMap.shardForRecord(map, "user-42")?.shardId
 * ShardMap.shardForRecord(map, "user-42", "0")?.shardId // the shard owning hash key 0
 * ```
 *
 * @since 0.1.0
 * @category lookups
 */
export const shardForRecord = (
  self: ShardMap,
  partitionKey: string,
  explicitHashKey?: string
): ShardInfo | undefined => {
  if (explicitHashKey === undefined) return shardForHashKey(self, HashKey.fromPartitionKey(partitionKey))
  const key = HashKey.parseExplicit(explicitHashKey)
  return key === undefined ? undefined : shardForHashKey(self, key)
}

/**
 * The open shard with this id, if any.
 *
 * @example
 * ```ts
 * import { ShardMap } from "@effect-kinesis/core"
 * declare const map: ShardMap.ShardMap
 * ShardMap.get(map, "shardId-000000000000")?.endingHashKey
 * ```
 *
 * @since 0.1.0
 * @category lookups
 */
export const get = (self: ShardMap, shardId: string): ShardInfo | undefined => self.shardsById.get(shardId)

/**
 * Whether a shard with this id is open in the map; a closed or unknown shard is not.
 *
 * @example
 * ```ts
 * import { ShardMap } from "@effect-kinesis/core"
 * declare const map: ShardMap.ShardMap
 * ShardMap.has(map, "shardId-000000000000")
 * ```
 *
 * @since 0.1.0
 * @category lookups
 */
export const has = (self: ShardMap, shardId: string): boolean => self.shardsById.has(shardId)

/**
 * The ids of the open shards, in ascending hash key order.
 *
 * @example
 * ```ts
 * import { ShardMap } from "@effect-kinesis/core"
 * declare const map: ShardMap.ShardMap
 * ShardMap.shardIds(map) // ["shardId-000000000000", ...]
 * ```
 *
 * @since 0.1.0
 * @category getters
 */
export const shardIds = (self: ShardMap): Array<string> => self.shards.map((shard) => shard.shardId)

/**
 * The number of open shards.
 *
 * @example
 * ```ts
 * import { ShardMap } from "@effect-kinesis/core"
 * declare const map: ShardMap.ShardMap
 * ShardMap.size(map)
 * ```
 *
 * @since 0.1.0
 * @category getters
 */
export const size = (self: ShardMap): number => self.shards.length
