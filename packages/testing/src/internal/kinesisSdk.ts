/**
 * The raw AWS SDK calls behind `StreamFixtures`, in one place so they can move onto the core `Client` later.
 *
 * @internal
 */
import {
  CreateStreamCommand,
  DeleteStreamCommand,
  DescribeStreamSummaryCommand,
  KinesisClient,
  ListShardsCommand,
  type Shard
} from "@aws-sdk/client-kinesis"
import { NodeHttpHandler } from "@smithy/node-http-handler"
import type { EmulatorCredentials } from "../Emulator.ts"

/** @internal */
export interface Target {
  readonly endpoint: string
  readonly region: string
  readonly credentials: EmulatorCredentials
}

/** @internal */
export interface OpenShard {
  readonly shardId: string
  readonly startingHashKey: string
  readonly endingHashKey: string
  readonly parentShardId: string | undefined
  readonly adjacentParentShardId: string | undefined
}

/** @internal */
export interface Summary {
  readonly status: string
  readonly streamArn: string
}

/**
 * Runs `f` with a fresh client whose sockets are closed afterwards; fixtures are called rarely, so a shared client's
 * lifetime is not worth managing.
 *
 * @internal
 */
export const withClient = async <A>(
  target: Target,
  f: (client: KinesisClient) => Promise<A>
): Promise<A> => {
  const client = new KinesisClient({
    endpoint: target.endpoint,
    region: target.region,
    credentials: target.credentials,
    requestHandler: new NodeHttpHandler(),
    maxAttempts: 3
  })
  try {
    return await f(client)
  } finally {
    client.destroy()
  }
}

/** @internal */
export const isNotFound = (error: unknown): boolean =>
  error instanceof Error && error.name === "ResourceNotFoundException"

/** @internal */
export const createStream = (
  target: Target,
  streamName: string,
  capacity: { readonly shardCount: number } | "on-demand",
  signal: AbortSignal
): Promise<void> =>
  withClient(target, async (client) => {
    await client.send(
      new CreateStreamCommand(
        capacity === "on-demand"
          ? { StreamName: streamName, StreamModeDetails: { StreamMode: "ON_DEMAND" } }
          : { StreamName: streamName, ShardCount: capacity.shardCount }
      ),
      { abortSignal: signal }
    )
  })

/** @internal */
export const describeSummary = (target: Target, streamName: string, signal: AbortSignal): Promise<Summary> =>
  withClient(target, async (client) => {
    const output = await client.send(new DescribeStreamSummaryCommand({ StreamName: streamName }), {
      abortSignal: signal
    })
    return {
      status: output.StreamDescriptionSummary?.StreamStatus ?? "UNKNOWN",
      streamArn: output.StreamDescriptionSummary?.StreamARN ?? ""
    }
  })

const toOpenShard = (shard: Shard): OpenShard => ({
  shardId: shard.ShardId ?? "",
  startingHashKey: shard.HashKeyRange?.StartingHashKey ?? "",
  endingHashKey: shard.HashKeyRange?.EndingHashKey ?? "",
  parentShardId: shard.ParentShardId ?? undefined,
  adjacentParentShardId: shard.AdjacentParentShardId ?? undefined
})

/** @internal */
export const listOpenShards = (
  target: Target,
  streamName: string,
  signal: AbortSignal
): Promise<ReadonlyArray<OpenShard>> =>
  withClient(target, async (client) => {
    const shards: Array<OpenShard> = []
    let nextToken: string | undefined
    do {
      const output = await client.send(
        new ListShardsCommand(
          nextToken === undefined
            ? { StreamName: streamName, ShardFilter: { Type: "AT_LATEST" } }
            : { NextToken: nextToken }
        ),
        { abortSignal: signal }
      )
      for (const shard of output.Shards ?? []) {
        if (shard.SequenceNumberRange?.EndingSequenceNumber == null) shards.push(toOpenShard(shard))
      }
      nextToken = output.NextToken ?? undefined
    } while (nextToken !== undefined)
    return shards
  })

/** @internal */
export const deleteStream = (target: Target, streamName: string, signal: AbortSignal): Promise<void> =>
  withClient(target, async (client) => {
    await client.send(new DeleteStreamCommand({ StreamName: streamName, EnforceConsumerDeletion: true }), {
      abortSignal: signal
    })
  })
