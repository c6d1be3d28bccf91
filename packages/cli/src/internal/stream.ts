/**
 * `effect-kinesis stream <name>`: the stream's status, mode and retention (DescribeStreamSummary)
 * and every shard ListShards returns, open and closed, with its hash range and parents.
 *
 * @internal
 */
import { Client } from "@effect-kinesis/core"
import { Effect, type Stdio, Stream } from "effect"
import { CommandError, fromKinesis } from "../CommandError.ts"
import * as Format from "./format.ts"
import * as Output from "./output.ts"

/** @internal */
export interface ShardView {
  readonly shardId: string
  readonly open: boolean
  readonly parentShardId: string | null
  readonly adjacentParentShardId: string | null
  readonly startingHashKey: string
  readonly endingHashKey: string
  readonly startingSequenceNumber: string | null
  readonly endingSequenceNumber: string | null
}

/** @internal */
export interface StreamView {
  readonly streamName: string
  readonly streamArn: string | null
  readonly status: string | null
  readonly mode: "PROVISIONED" | "ON_DEMAND" | null
  readonly retentionHours: number | null
  readonly openShardCount: number | null
  readonly consumerCount: number | null
  readonly encryption: string | null
  readonly createdAt: string | null
  readonly shards: ReadonlyArray<ShardView>
}

/** @internal */
export const describe = (stream: string): Effect.Effect<StreamView, CommandError, Client.Client> =>
  Effect.gen(function*() {
    const client = yield* Client.Client
    const summary = yield* client.describeStreamSummary(stream)
    const shards = yield* Stream.runCollect(client.listShards(stream))
    const mode = summary.StreamModeDetails?.StreamMode
    return {
      streamName: summary.StreamName ?? stream,
      streamArn: summary.StreamARN ?? null,
      status: summary.StreamStatus ?? null,
      // Streams created before on-demand existed have no mode details: they are provisioned.
      mode: mode === "ON_DEMAND" ? "ON_DEMAND" : mode === "PROVISIONED" || mode === undefined ? "PROVISIONED" : null,
      retentionHours: summary.RetentionPeriodHours ?? null,
      openShardCount: summary.OpenShardCount ?? null,
      consumerCount: summary.ConsumerCount ?? null,
      encryption: summary.EncryptionType ?? null,
      createdAt: summary.StreamCreationTimestamp?.toISOString() ?? null,
      shards: shards.map((shard): ShardView => ({
        shardId: shard.ShardId ?? "",
        open: shard.SequenceNumberRange?.EndingSequenceNumber == null,
        parentShardId: shard.ParentShardId ?? null,
        adjacentParentShardId: shard.AdjacentParentShardId ?? null,
        startingHashKey: shard.HashKeyRange?.StartingHashKey ?? "0",
        endingHashKey: shard.HashKeyRange?.EndingHashKey ?? "0",
        startingSequenceNumber: shard.SequenceNumberRange?.StartingSequenceNumber ?? null,
        endingSequenceNumber: shard.SequenceNumberRange?.EndingSequenceNumber ?? null
      }))
    } satisfies StreamView
  }).pipe(Effect.mapError((error) => fromKinesis(error, stream)))

/** The text form: a header, then one line per shard. @internal */
export const render = (view: StreamView): Array<string> => {
  const open = view.shards.filter((shard) => shard.open).length
  const header = [
    `stream ${view.streamName}`,
    view.status ?? "?",
    view.mode === "ON_DEMAND" ? "on-demand" : view.mode === "PROVISIONED" ? "provisioned" : "mode ?",
    `retention ${view.retentionHours ?? "?"}h`,
    `${open} open / ${view.shards.length - open} closed shards`,
    ...(view.consumerCount === null || view.consumerCount === 0
      ? []
      : [`${view.consumerCount} enhanced fan-out consumer${view.consumerCount === 1 ? "" : "s"}`]),
    ...(view.encryption === null || view.encryption === "NONE" ? [] : [`encryption ${view.encryption}`])
  ].join("  ")
  const rows = [
    ["SHARD", "STATE", "PARENTS", "HASH RANGE (hex)", "KEYS"],
    ...view.shards.map((shard) => {
      const range = Format.hashRange(shard.startingHashKey, shard.endingHashKey)
      const parents = [shard.parentShardId, shard.adjacentParentShardId].filter((p) => p !== null)
      return [shard.shardId, shard.open ? "open" : "closed", parents.join(",") || "-", range.hex, range.share]
    })
  ]
  return [header, ...(view.streamArn === null ? [] : [view.streamArn]), "", ...Format.table(rows)]
}

/** @internal */
export const run = (
  options: { readonly stream: string; readonly json: boolean }
): Effect.Effect<void, CommandError, Client.Client | Stdio.Stdio> =>
  Effect.gen(function*() {
    const view = yield* describe(options.stream)
    yield* Output.line(options.json ? JSON.stringify(view, null, 2) : render(view).join("\n"))
  })
