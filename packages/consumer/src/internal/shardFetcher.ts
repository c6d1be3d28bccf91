/**
 * How a shard's Kinesis records reach the consumer. Polling (`GetRecords`) is one implementation;
 * enhanced fan-out (`SubscribeToShard`) will be another. Everything above this interface —
 * deaggregation, dropping records already checkpointed, checkpoints, resharding — is shared.
 *
 * @internal
 */
import type { _Record, ChildShard } from "@aws-sdk/client-kinesis"
import type { ExtendedSequenceNumber, KinesisError } from "@effect-kinesis/core"
import type { Stream } from "effect"
import type { ShardMetrics } from "./consumerMetrics.ts"

/** @internal */
export interface FetchedBatch {
  readonly records: ReadonlyArray<_Record>
  readonly millisBehindLatest: number | undefined
  /** Set on the last batch of a closed shard: the shard has been read to its end. */
  readonly shardEnd: { readonly childShards: ReadonlyArray<ChildShard> } | undefined
}

/** @internal */
export interface FetchFrom {
  /**
   * A sentinel (`TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP`) or the checkpoint. The fetcher starts
   * AT the checkpoint's sequence number (not after it): an aggregate may be partly processed, and
   * the caller drops what is at or before the checkpoint.
   */
  readonly position: ExtendedSequenceNumber.ExtendedSequenceNumber
  /** For `AT_TIMESTAMP`. */
  readonly timestamp: Date | undefined
}

/**
 * A stream of batches of one shard, in order. It ends after the batch carrying `shardEnd`, and
 * never otherwise; it fails only with errors that retrying cannot fix.
 *
 * @internal
 */
export interface ShardFetcher {
  readonly fetch: (
    shardId: string,
    from: FetchFrom,
    /** The shard's metric series (the polling fetcher records `KinesisDataFetcher.getRecords.*`). */
    metrics?: ShardMetrics
  ) => Stream.Stream<FetchedBatch, KinesisError.KinesisError>
}
