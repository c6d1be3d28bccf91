/**
 * `effect-kinesis leases <application>`: the lease table, one row per lease, with how far behind
 * each shard's checkpoint is (when the stream is known) and when its counter last moved.
 *
 * @internal
 */
import type { ShardIteratorType } from "@aws-sdk/client-kinesis"
import type { Lease, LeaseRepository } from "@effect-kinesis/consumer"
import { Aggregation, Client, ExtendedSequenceNumber, type KinesisError } from "@effect-kinesis/core"
import { DynamoDBClient, DynamoDBLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { Clock, Duration, Effect, Result, Schedule, type Scope, type Stdio, Terminal } from "effect"
import { CommandError, fromKinesis, fromLeaseStore } from "../CommandError.ts"
import * as Format from "./format.ts"
import * as Output from "./output.ts"

/** @internal */
export interface Options {
  readonly application: string
  readonly table: string
  readonly stream: string | undefined
  readonly json: boolean
  readonly watch: boolean
  readonly interval: Duration.Duration
  /** After how long a still counter makes a held lease look expired. */
  readonly expiry: Duration.Duration
}

/**
 * How far behind a shard's checkpoint is: the age of the oldest record after it (its
 * `ApproximateArrivalTimestamp` against now), `0` when there is none (caught up), unknown when the
 * checkpoint is not a position (`LATEST`, `AT_TIMESTAMP`) or reading failed.
 *
 * @internal
 */
export type Lag =
  | { readonly _tag: "CaughtUp" }
  | { readonly _tag: "Behind"; readonly millis: number; readonly oldestUnprocessed: Date }
  | { readonly _tag: "Unknown"; readonly reason: string }

/** @internal */
export type State = "leased" | "unowned" | "waiting" | "expired?" | "finished"

/** @internal */
export interface Row {
  readonly shardId: string
  readonly state: State
  readonly parents: ReadonlyArray<string>
  readonly owner: string | undefined
  readonly counter: number
  readonly checkpoint: ExtendedSequenceNumber.ExtendedSequenceNumber
  readonly lag: Lag | undefined
  /**
   * The counter moved (a take, renewal, checkpoint or release) at most this long ago: it changed between two reads
   * of this process, and this is the time since the earlier one. Unknown until a change was seen.
   */
  readonly renewedWithin: number | undefined
  /** How long this process has read the same counter: a lower bound of the time since the last renewal. */
  readonly counterStillFor: number
}

/** @internal */
export interface Snapshot {
  readonly application: string
  readonly table: string
  readonly stream: string | undefined
  readonly at: Date
  readonly rows: ReadonlyArray<Row>
  /** A refresh that failed in a way the next one may not (the live view keeps going). */
  readonly warning: string | undefined
  /** Items of the table that are not leases this CLI can read (shown beside the rows, not instead of them). */
  readonly unreadable: ReadonlyArray<DynamoDBLeaseRepository.UnreadableItem>
}

// At most this often per shard, whatever the redraw interval: each measurement is one GetShardIterator and one
// GetRecords, and GetRecords shares the shard's 5 calls/s with the application that reads it.
const LAG_REFRESH = Duration.seconds(10)

interface Measured {
  readonly lag: Lag
  /** The checkpoint it was measured at. */
  readonly checkpoint: ExtendedSequenceNumber.ExtendedSequenceNumber
  readonly at: number
}

interface Scanned {
  readonly leases: ReadonlyArray<Lease.Lease>
  readonly unreadable: ReadonlyArray<DynamoDBLeaseRepository.UnreadableItem>
}

interface Watch {
  counter: number
  /** When this process first read the current counter. */
  firstSeen: number
  /** When it last read the counter before the current one: the change happened after this. */
  previousSeen: number | undefined
  /** When it last read this lease. */
  lastSeen: number
}

/**
 * Measures the lag of one checkpoint: GetRecords (2 records) at the checkpoint. The first record is
 * the checkpointed one unless it is a KPL aggregate whose later user records are not processed
 * yet; then it is itself the oldest unprocessed record.
 *
 * @internal
 */
export const measureLag = (
  client: Client.Client["Service"],
  stream: string,
  shardId: string,
  checkpoint: ExtendedSequenceNumber.ExtendedSequenceNumber,
  now: number
): Effect.Effect<Lag, KinesisError.KinesisError> =>
  Effect.gen(function*() {
    const position = checkpoint.sequenceNumber
    if (position === ExtendedSequenceNumber.LATEST || position === ExtendedSequenceNumber.AT_TIMESTAMP) {
      return { _tag: "Unknown", reason: `checkpoint ${position}: no record processed yet` } as const
    }
    const atPosition = position !== ExtendedSequenceNumber.TRIM_HORIZON
    const type: ShardIteratorType = atPosition ? "AT_SEQUENCE_NUMBER" : "TRIM_HORIZON"
    const iterator = yield* client.getShardIterator(stream, {
      shardId,
      type,
      ...(atPosition ? { sequenceNumber: position } : {})
    })
    const page = yield* client.getRecords({ ShardIterator: iterator, Limit: 2 })
    const records = page.Records ?? []
    let oldest = records[0]
    if (atPosition && oldest !== undefined && oldest.SequenceNumber === position) {
      const users = Aggregation.deaggregate({
        partitionKey: oldest.PartitionKey ?? "",
        data: oldest.Data ?? new Uint8Array()
      })
      const count = Result.isSuccess(users) ? users.success.length : 1
      if (checkpoint.subSequenceNumber >= count - 1) oldest = records[1]
    }
    if (oldest === undefined) {
      // An empty page is not proof of the end on a real shard, but MillisBehindLatest is.
      return page.MillisBehindLatest === undefined || page.MillisBehindLatest === 0
        ? { _tag: "CaughtUp" } as const
        : { _tag: "Unknown", reason: `empty read, ${page.MillisBehindLatest} ms behind latest` } as const
    }
    const arrival = oldest.ApproximateArrivalTimestamp
    if (arrival === undefined) return { _tag: "Unknown", reason: "record without an arrival time" } as const
    return { _tag: "Behind", millis: Math.max(0, now - arrival.getTime()), oldestUnprocessed: arrival } as const
  })

/**
 * The shard a lease key names: the key itself, or the last part of a KCL multi-stream key
 * (`account:stream:creationEpoch:shardId`), which may name another stream than the one given.
 *
 * @internal
 */
export const shardOf = (
  leaseKey: string,
  stream: string
): { readonly _tag: "Shard"; readonly shardId: string } | { readonly _tag: "OtherStream"; readonly stream: string } => {
  const parts = leaseKey.split(":")
  if (parts.length !== 4) return { _tag: "Shard", shardId: leaseKey }
  return parts[1] === stream ? { _tag: "Shard", shardId: parts[3]! } : { _tag: "OtherStream", stream: parts[1]! }
}

const stateOf = (lease: Lease.Lease, byKey: ReadonlyMap<string, Lease.Lease>, stillFor: number, expiry: number) => {
  if (ExtendedSequenceNumber.isShardEnd(lease.checkpoint)) return "finished" as const
  if (lease.leaseOwner === undefined) {
    // The KCL's multi-stream leases name their parents by shard id; their keys carry the stream's prefix.
    const colon = lease.leaseKey.lastIndexOf(":")
    const prefix = lease.leaseKey.split(":").length === 4 ? lease.leaseKey.slice(0, colon + 1) : ""
    const pending = lease.parentShardIds.some((parent) => {
      const p = byKey.get(parent) ?? byKey.get(prefix + parent)
      return p !== undefined && !ExtendedSequenceNumber.isShardEnd(p.checkpoint)
    })
    return pending ? "waiting" as const : "unowned" as const
  }
  return stillFor >= expiry ? "expired?" as const : "leased" as const
}

/**
 * The reader of one application's leases: each `snapshot` reads the table (and measures lag when
 * it is due) and remembers the counters, so that later snapshots tell when each counter moved.
 *
 * @internal
 */
export const make = (options: Options): Effect.Effect<
  { readonly snapshot: Effect.Effect<Snapshot, CommandError> },
  CommandError,
  DynamoDBClient.DynamoDBClient | Client.Client
> =>
  Effect.gen(function*() {
    // Checks that the table exists (and waits while it is being created).
    yield* DynamoDBLeaseRepository.make({
      applicationName: options.application,
      tableName: options.table,
      createTableIfMissing: false
    }).pipe(
      Effect.mapError((error) => fromLeaseStore(error, options.table)),
      // The store retries DescribeTable for 30 s, for workers starting; a person at a terminal wants to know sooner.
      Effect.timeoutOrElse({
        duration: "10 seconds",
        orElse: () =>
          Effect.fail(
            new CommandError({
              reason: "Unavailable",
              message:
                `DynamoDB did not answer DescribeTable on table "${options.table}" within 10s: check DYNAMODB_ENDPOINT and the network, then try again`
            })
          )
      })
    )
    const client = yield* Client.Client
    const dynamo = yield* DynamoDBClient.DynamoDBClient
    const stream = options.stream
    // A wrong --stream fails at once rather than as a column of unknowns.
    if (stream !== undefined) {
      yield* client.describeStreamSummary(stream).pipe(Effect.mapError((error) => fromKinesis(error, stream)))
    }
    const watched = new Map<string, Watch>()
    const lags = new Map<string, Measured>()
    let last: Scanned = { leases: [], unreadable: [] }
    const expiry = Duration.toMillis(options.expiry)

    // Measured again when due; in between, a shard still at the same checkpoint behind the same oldest record is only
    // that much older (no call), and any other is shown as measured.
    const due = (lease: Lease.Lease, now: number) => {
      const measured = lags.get(lease.leaseKey)
      return measured === undefined || now - measured.at >= Duration.toMillis(LAG_REFRESH)
    }
    const lagOf = (lease: Lease.Lease, now: number): Lag | undefined => {
      const measured = lags.get(lease.leaseKey)
      if (measured === undefined) return undefined
      const lag = measured.lag
      return lag._tag === "Behind" && ExtendedSequenceNumber.Equivalence(measured.checkpoint, lease.checkpoint)
        ? { ...lag, millis: Math.max(0, now - lag.oldestUnprocessed.getTime()) }
        : lag
    }
    // Kinesis answers ResourceNotFound for a shard the stream does not have (a lease left from an earlier stream of the
    // same name, or a shard trimmed away) as for a missing stream: only a stream that is gone now ends the command.
    const shardNotFound = (error: KinesisError.KinesisError, shardId: string, stream: string) =>
      client.describeStreamSummary(stream).pipe(
        Effect.mapError((described) => fromKinesis(described, stream)),
        Effect.as<Lag>({ _tag: "Unknown", reason: `${error.operation}: shard ${shardId} not found in ${stream}` })
      )
    const refreshLags = (leases: ReadonlyArray<Lease.Lease>, now: number) =>
      stream === undefined
        ? Effect.void
        : Effect.forEach(
          leases.filter((lease) => !ExtendedSequenceNumber.isShardEnd(lease.checkpoint) && due(lease, now)),
          (lease) => {
            const target = shardOf(lease.leaseKey, stream)
            const measured: Effect.Effect<Lag, CommandError> = target._tag === "OtherStream"
              ? Effect.succeed({ _tag: "Unknown", reason: `a lease of stream ${target.stream}` })
              : measureLag(client, stream, target.shardId, lease.checkpoint, now).pipe(
                Effect.catch((error): Effect.Effect<Lag, CommandError> =>
                  error._tag === "AccessDenied"
                    ? Effect.fail(fromKinesis(error, stream))
                    : error._tag === "StreamNotFound"
                    ? shardNotFound(error, target.shardId, stream)
                    : Effect.succeed({ _tag: "Unknown", reason: `${error.operation}: ${error.message}` })
                )
              )
            return measured.pipe(
              Effect.map((lag) => lags.set(lease.leaseKey, { lag, checkpoint: lease.checkpoint, at: now }))
            )
          },
          { concurrency: 8, discard: true }
        )

    const read = (list: Effect.Effect<Scanned, LeaseRepository.LeaseStoreError>) =>
      Effect.gen(function*() {
        const result = yield* Effect.result(list)
        if (Result.isSuccess(result)) {
          last = result.success
          return { ...result.success, warning: undefined }
        }
        const error = result.failure
        // A table that answered once and fails now for a reason that passes: keep showing the last read.
        if (error.retryable && last.leases.length + last.unreadable.length > 0) {
          return { ...last, warning: `reading ${options.table} failed, showing the last read: ${error.message}` }
        }
        return yield* Effect.fail(fromLeaseStore(error, options.table))
      })

    const snapshot = Effect.gen(function*() {
      // Not the repository's `list`, which fails on the first item it cannot read: a viewer shows the rest.
      const { leases, unreadable, warning } = yield* read(
        DynamoDBLeaseRepository.scan({ applicationName: options.application, tableName: options.table }).pipe(
          Effect.provideService(DynamoDBClient.DynamoDBClient, dynamo)
        )
      )
      const now = yield* Clock.currentTimeMillis
      const watchNow = Number((yield* Clock.monotonicTimeNanos) / 1_000_000n)
      for (const lease of leases) {
        const w = watched.get(lease.leaseKey)
        if (w === undefined) {
          watched.set(lease.leaseKey, {
            counter: lease.leaseCounter,
            firstSeen: watchNow,
            previousSeen: undefined,
            lastSeen: watchNow
          })
          continue
        }
        if (w.counter !== lease.leaseCounter) {
          w.counter = lease.leaseCounter
          w.previousSeen = w.lastSeen
          w.firstSeen = watchNow
        }
        w.lastSeen = watchNow
      }
      yield* refreshLags(leases, now)
      const byKey = new Map(leases.map((lease) => [lease.leaseKey, lease]))
      const rows = [...leases].sort((a, b) => a.leaseKey.localeCompare(b.leaseKey)).map((lease): Row => {
        const w = watched.get(lease.leaseKey)!
        const stillFor = watchNow - w.firstSeen
        return {
          shardId: lease.leaseKey,
          state: stateOf(lease, byKey, stillFor, expiry),
          parents: lease.parentShardIds,
          owner: lease.leaseOwner,
          counter: lease.leaseCounter,
          checkpoint: lease.checkpoint,
          lag: ExtendedSequenceNumber.isShardEnd(lease.checkpoint) ? undefined : lagOf(lease, now),
          renewedWithin: w.previousSeen === undefined ? undefined : watchNow - w.previousSeen,
          counterStillFor: stillFor
        }
      })
      return {
        application: options.application,
        table: options.table,
        stream,
        at: new Date(now),
        rows,
        warning,
        unreadable
      } satisfies Snapshot
    })
    return { snapshot }
  })

const lagJson = (lag: Lag | undefined) =>
  lag === undefined
    ? { behindMillis: null, oldestUnprocessedArrival: null }
    : lag._tag === "CaughtUp"
    ? { behindMillis: 0, oldestUnprocessedArrival: null }
    : lag._tag === "Behind"
    ? { behindMillis: lag.millis, oldestUnprocessedArrival: lag.oldestUnprocessed.toISOString() }
    : { behindMillis: null, oldestUnprocessedArrival: null, behindUnknown: lag.reason }

/**
 * The document scripts read (`--json`, or any run whose standard output is not a terminal).
 *
 * @internal
 */
export const toJson = (snapshot: Snapshot) => {
  const owners: Record<string, number> = {}
  for (const row of snapshot.rows) {
    if (row.owner !== undefined && row.state !== "finished") owners[row.owner] = (owners[row.owner] ?? 0) + 1
  }
  return {
    application: snapshot.application,
    table: snapshot.table,
    stream: snapshot.stream ?? null,
    at: snapshot.at.toISOString(),
    owners,
    leases: snapshot.rows.map((row) => ({
      shardId: row.shardId,
      state: row.state,
      parentShardIds: row.parents,
      owner: row.owner ?? null,
      counter: row.counter,
      checkpoint: row.checkpoint.sequenceNumber,
      checkpointSubSequenceNumber: row.checkpoint.subSequenceNumber,
      ...lagJson(row.lag),
      renewedWithinMillis: row.renewedWithin ?? null,
      counterStillForMillis: row.counterStillFor
    })),
    ...(snapshot.unreadable.length === 0 ? {} : { unreadable: snapshot.unreadable }),
    ...(snapshot.warning === undefined ? {} : { warning: snapshot.warning })
  }
}

const lagText = (lag: Lag | undefined, stream: string | undefined) =>
  lag === undefined
    ? stream === undefined ? "" : "-"
    : lag._tag === "CaughtUp"
    ? "0"
    : lag._tag === "Behind"
    ? Format.duration(lag.millis)
    : "?"

// `<4.0s ago`: the counter moved after a read this long ago (an upper bound); `>12s ago`: this process has read the
// same counter for that long without seeing it move (a lower bound); `?` on the first read.
const renewedText = (row: Row): string => {
  if (row.state === "finished") return "-"
  if (row.renewedWithin !== undefined) return `<${Format.duration(row.renewedWithin)} ago`
  return row.counterStillFor === 0 ? "?" : `>${Format.duration(row.counterStillFor)} ago`
}

/**
 * The live view's frame: a title line, the table, and who holds how many leases.
 *
 * @internal
 */
export const render = (snapshot: Snapshot, interval: Duration.Duration): Array<string> => {
  const time = snapshot.at.toISOString().slice(11, 19)
  const title = [
    `effect-kinesis leases ${snapshot.application}`,
    ...(snapshot.table === snapshot.application ? [] : [`table ${snapshot.table}`]),
    ...(snapshot.stream === undefined ? [] : [`stream ${snapshot.stream}`]),
    `${time} UTC`,
    `every ${Duration.format(interval)}, Ctrl-C to quit`
  ].join("  ")
  const header = ["SHARD", "STATE", "PARENTS", "OWNER", "COUNTER", "CHECKPOINT", "BEHIND", "RENEWED"]
  const rows = snapshot.rows.map((row) => [
    row.shardId,
    row.state,
    row.parents.join(",") || "-",
    row.owner ?? "-",
    String(row.counter),
    Format.sequenceNumber(row.checkpoint.sequenceNumber, row.checkpoint.subSequenceNumber),
    lagText(row.lag, snapshot.stream),
    renewedText(row)
  ])
  const owners = new Map<string, number>()
  for (const row of snapshot.rows) {
    if (row.owner !== undefined && row.state !== "finished") owners.set(row.owner, (owners.get(row.owner) ?? 0) + 1)
  }
  const summary = owners.size === 0
    ? "no worker holds a lease"
    : `${owners.size} worker${owners.size === 1 ? "" : "s"}: ${
      [...owners].sort(([a], [b]) => a.localeCompare(b)).map(([owner, n]) => `${owner} (${n})`).join(", ")
    }`
  const notes = [
    ...(snapshot.rows.length === 0 ? ["the table has no leases yet"] : []),
    ...(snapshot.stream === undefined ? ["pass --stream to see how far behind each shard is"] : []),
    ...snapshot.unreadable.map((item) => `! an item this CLI cannot read: ${item.reason}`),
    ...(snapshot.warning === undefined ? [] : [`! ${snapshot.warning}`])
  ]
  return [title, "", ...Format.table([header, ...rows]), "", summary, ...notes]
}

const ESC = "\x1b["

// Fits a frame to the terminal: lines longer than the width would wrap and throw off the count of lines to move
// back over, and a frame taller than the screen cannot be moved back over at all.
const fit = (lines: ReadonlyArray<string>, columns: number, rows: number): Array<string> => {
  const width = Math.max(columns - 1, 20)
  const height = Math.max(rows - 1, 3)
  const cut = lines.map((line) => [...line].length > width ? [...line].slice(0, width - 1).join("") + "…" : line)
  return cut.length > height ? [...cut.slice(0, height - 1), `… ${cut.length - height + 1} more lines`] : cut
}

/**
 * Redraws the view in place every interval until interrupted (Ctrl-C): each frame is one write that moves the
 * cursor back to the first line of the previous frame, overwrites every line (clearing what is left of it) and
 * clears below, so nothing blinks. The cursor is hidden while it runs and shown again however it ends.
 *
 * @internal
 */
const live = (
  snapshot: Effect.Effect<Snapshot, CommandError>,
  interval: Duration.Duration
): Effect.Effect<never, CommandError, Stdio.Stdio | Terminal.Terminal | Scope.Scope> =>
  Effect.gen(function*() {
    const terminal = yield* Terminal.Terminal
    yield* Effect.acquireRelease(
      Output.write(`${ESC}?25l`),
      () => Output.write(`${ESC}?25h`)
    )
    let previous = 0
    return yield* Effect.gen(function*() {
      const frame = fit(render(yield* snapshot, interval), yield* terminal.columns, yield* terminal.rows)
      const back = previous > 0 ? `${ESC}${previous}F` : ""
      yield* Output.write(`${back}${frame.map((line) => `${line}${ESC}K\n`).join("")}${ESC}J`)
      previous = frame.length
    }).pipe(Effect.repeat(Schedule.spaced(interval)), Effect.andThen(Effect.never))
  })

/** @internal */
export const run = (
  options: Options
): Effect.Effect<
  void,
  CommandError,
  DynamoDBClient.DynamoDBClient | Client.Client | Stdio.Stdio | Terminal.Terminal
> =>
  Effect.scoped(Effect.gen(function*() {
    const { snapshot } = yield* make(options)
    const terminal = yield* Output.isTerminal
    if (!options.json && terminal) return yield* live(snapshot, options.interval)
    const once = Effect.flatMap(snapshot, (s) => Output.line(JSON.stringify(toJson(s), null, options.watch ? 0 : 2)))
    if (!options.watch) return yield* once
    yield* once.pipe(Effect.repeat(Schedule.spaced(options.interval)))
  }))
