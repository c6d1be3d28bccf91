/**
 * The consumer's `LeaseRepository` on a DynamoDB table in the KCL's format: same table name (the application name),
 * same key, same attribute names and types, same conditional-write discipline. A KCL 2.x worker and this library can
 * share one table, and a consumer moving from the KCL resumes from the KCL's checkpoints.
 *
 * @since 0.1.0
 */
import {
  type AttributeValue,
  DeleteItemCommand,
  DescribeTableCommand,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
  UpdateItemCommand
} from "@aws-sdk/client-dynamodb"
import { Lease, LeaseRepository } from "@effect-kinesis/consumer"
import { ExtendedSequenceNumber, type InvalidSetting } from "@effect-kinesis/core"
import { Clock, Config, Data, Duration, Effect, Layer, Option } from "effect"
import * as DynamoDBClient from "./DynamoDBClient.ts"
import * as LeaderLock from "./internal/leaderLock.ts"
import {
  A,
  isLeaseItem,
  type Item,
  LEASE_ENTITY,
  MalformedItem,
  N,
  newLeaseItem,
  S,
  SS,
  toLease
} from "./internal/leaseItem.ts"
import { hasUsableIndex, indexStatus, queryLeaseKeys } from "./internal/ownerIndex.ts"
import { call, type ConditionFailed, type RetryPolicy } from "./internal/sdkCall.ts"
import { ensureTable } from "./internal/table.ts"
import * as ValidateOptions from "./internal/validateOptions.ts"

/**
 * The lease table does not exist and `createTableIfMissing` is `false`.
 *
 * @example
 * ```ts
 * import type { DynamoDBLeaseRepository } from "@effect-kinesis/lease-dynamodb"
 *
 * const text = (e: DynamoDBLeaseRepository.LeaseTableNotFound) => `create ${e.tableName} first`
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class LeaseTableNotFound extends Data.TaggedError("LeaseTableNotFound")<{ readonly tableName: string }> {}

/**
 * How a missing lease table is created. Applied only when this library creates the table; an existing table is
 * used as it is.
 *
 * @example
 * ```ts
 * import type { DynamoDBLeaseRepository } from "@effect-kinesis/lease-dynamodb"
 *
 * const table: DynamoDBLeaseRepository.TableOptions = {
 *   billing: { mode: "PROVISIONED", readCapacityUnits: 10, writeCapacityUnits: 10 },
 *   tags: { team: "payments" },
 *   deletionProtection: true,
 *   pointInTimeRecovery: true
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface TableOptions {
  /** Default on-demand (`PAY_PER_REQUEST`), as the KCL creates it. */
  readonly billing?:
    | { readonly mode: "PAY_PER_REQUEST" }
    | { readonly mode: "PROVISIONED"; readonly readCapacityUnits: number; readonly writeCapacityUnits: number }
    | undefined
  /** Resource tags. Default none. */
  readonly tags?: Readonly<Record<string, string>> | undefined
  /** Deletion protection. Default: DynamoDB's (off). */
  readonly deletionProtection?: boolean | undefined
  /** Point-in-time recovery. Default off. Skipped with a warning where the endpoint does not implement it. */
  readonly pointInTimeRecovery?: boolean | undefined
  /** How long to wait for a new table to become ACTIVE. Default 5 minutes. */
  readonly activeTimeout?: Duration.Input | undefined
}

/**
 * Retry of throttled and failed requests. The defaults keep a renewal well inside the KCL's 10 s failover time, so a
 * worker never believes it holds a lease that has already expired for its peers.
 *
 * @example
 * ```ts
 * import type { DynamoDBLeaseRepository } from "@effect-kinesis/lease-dynamodb"
 *
 * const retry: DynamoDBLeaseRepository.RetryOptions = { budget: "1 second", attemptTimeout: "500 millis" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface RetryOptions {
  /** Longest one operation (or one page of `list`) may take, retries included. Default 2 seconds. */
  readonly budget?: Duration.Input | undefined
  /** Longest one request may take before it is abandoned and retried. Default 1 second. */
  readonly attemptTimeout?: Duration.Input | undefined
  /** First backoff delay; it doubles per retry, with jitter. Default 25 millis. */
  readonly baseDelay?: Duration.Input | undefined
}

/**
 * Options of {@link layer} and {@link make}.
 *
 * @example
 * ```ts
 * import type { DynamoDBLeaseRepository } from "@effect-kinesis/lease-dynamodb"
 *
 * const options: DynamoDBLeaseRepository.Options = { applicationName: "order-processor" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The consumer application's name; the KCL names the lease table after it. */
  readonly applicationName: string
  /** The lease table. Default: `applicationName`, as the KCL. */
  readonly tableName?: string | undefined
  /** Create the table when it does not exist. Default `true`; when `false` a missing table is a `LeaseTableNotFound`. */
  readonly createTableIfMissing?: boolean | undefined
  /** How a missing table is created. */
  readonly table?: TableOptions | undefined
  /** Retry of data-plane requests (reads and lease writes). */
  readonly retry?: RetryOptions | undefined
  /**
   * KCL 3.x's `LeaseOwnerToLeaseKeyIndex` (leaseOwner → leaseKey, keys only), through which a worker finds its own
   * leases with a Query instead of a Scan. `"use"` (default): used when the table has it (a KCL 3.x table does);
   * `"create"`: also created when missing, with a new table or added to an existing one as KCL 3.x does (DynamoDB
   * builds it in the background; it is used once ACTIVE); `"ignore"`: never used.
   */
  readonly leaseOwnerIndex?: "use" | "create" | "ignore" | undefined
}

const duration = (input: Duration.Input | undefined, fallback: Duration.Input): Duration.Duration =>
  Duration.fromInputUnsafe(input ?? fallback)

const policyOf = (retry: RetryOptions | undefined): RetryPolicy => ({
  budget: duration(retry?.budget, "2 seconds"),
  attemptTimeout: duration(retry?.attemptTimeout, "1 second"),
  baseDelay: duration(retry?.baseDelay, "25 millis")
})

// Table creation and description are rare and not on a lease's clock, so they get a longer budget.
const controlPolicy: RetryPolicy = {
  budget: Duration.seconds(30),
  attemptTimeout: Duration.seconds(10),
  baseDelay: Duration.millis(100)
}

type Service = LeaseRepository.LeaseRepository["Service"]

// An UpdateExpression/ConditionExpression with placeholders registered as they are used: DynamoDB rejects
// ExpressionAttributeNames or ExpressionAttributeValues that no expression mentions.
class Expressions {
  readonly names: Record<string, string> = {}
  readonly values: Record<string, AttributeValue> = {}
  private count = 0
  name(attribute: string): string {
    this.names[`#${attribute}`] = attribute
    return `#${attribute}`
  }
  value(value: AttributeValue): string {
    const placeholder = `:v${this.count++}`
    this.values[placeholder] = value
    return placeholder
  }
  get params() {
    return {
      ExpressionAttributeNames: this.names,
      ...(this.count === 0 ? {} : { ExpressionAttributeValues: this.values })
    }
  }
}

type OwnerCondition = "owned" | "asRead" | "any"

// The item is the lease the caller read: same counter (unless `counter` is false) and owners, and a lease rather
// than another KCL entity.
const leaseCondition = (x: Expressions, lease: Lease.Lease, owner: OwnerCondition, counter = true): string => {
  const parts = [
    `attribute_exists(${x.name(A.leaseKey)})`,
    `(attribute_not_exists(${x.name(A.entityType)}) OR ${x.name(A.entityType)} = ${x.value(S(LEASE_ENTITY))})`
  ]
  if (counter) parts.push(`${x.name(A.leaseCounter)} = ${x.value(N(lease.leaseCounter))}`)
  if (owner !== "any") {
    const is = (attribute: string, value: string | undefined) =>
      value === undefined
        ? `attribute_not_exists(${x.name(attribute)})`
        : `${x.name(attribute)} = ${x.value(S(value))}`
    parts.push(is(A.leaseOwner, lease.leaseOwner), is(A.checkpointOwner, lease.checkpointOwner))
  }
  return parts.join(" AND ")
}

/**
 * The lease store on an existing `DynamoDBClient`, after making sure the table exists (creating it if allowed) and
 * is ACTIVE: the value {@link layer} provides, as `make` in every package.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { DynamoDBClient, DynamoDBLeaseRepository } from "@effect-kinesis/lease-dynamodb"
 *
 * const leases = Effect.gen(function*() {
 *   const repo = yield* DynamoDBLeaseRepository.make({ applicationName: "order-processor" })
 *   return yield* repo.list
 * }).pipe(Effect.provide(DynamoDBClient.layer({ region: "eu-west-1" })))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(options: Options) {
  const invalid = ValidateOptions.validate(options)
  if (invalid !== undefined) return yield* invalid
  const { sdk } = yield* DynamoDBClient.DynamoDBClient
  const tableName = options.tableName ?? options.applicationName
  const policy = policyOf(options.retry)

  const ownerIndex = options.leaseOwnerIndex ?? "use"
  const description = yield* ensureTable({
    sdk,
    tableName,
    createIfMissing: options.createTableIfMissing ?? true,
    table: options.table ?? {},
    policy: controlPolicy,
    notFound: () => new LeaseTableNotFound({ tableName }),
    createOwnerIndex: ownerIndex === "create"
  })
  // An index still being built is looked at again, at most once a minute, until it is ACTIVE.
  let indexState: "active" | "building" | "none" = ownerIndex === "ignore" || !hasUsableIndex(description)
    ? "none"
    : indexStatus(description) === "ACTIVE"
    ? "active"
    : "building"
  let indexCheckedAt = yield* Clock.currentTimeMillis
  const indexActive = Effect.gen(function*() {
    if (indexState !== "building") return indexState === "active"
    const now = yield* Clock.currentTimeMillis
    if (now - indexCheckedAt < 60_000) return false
    indexCheckedAt = now
    const table = yield* call(
      controlPolicy,
      "DescribeTable",
      (abortSignal) => sdk.send(new DescribeTableCommand({ TableName: tableName }), { abortSignal })
    ).pipe(
      Effect.map((out) => out.Table),
      Effect.orElseSucceed(() => undefined)
    )
    if (hasUsableIndex(table) && indexStatus(table) === "ACTIVE") indexState = "active"
    return indexState === "active"
  })

  const read = (operation: string, item: Item): Effect.Effect<Lease.Lease, LeaseRepository.LeaseStoreError> => {
    const lease = toLease(item)
    return lease instanceof MalformedItem
      ? Effect.fail(
        new LeaseRepository.LeaseStoreError({
          operation,
          message: `malformed lease item in ${tableName}: ${lease.message}`,
          retryable: false
        })
      )
      : Effect.succeed(lease)
  }

  const list: Service["list"] = Effect.flatMap(
    scanLeaseItems(sdk, tableName, policy),
    (items) => Effect.forEach(items, (item) => read("Scan", item))
  )

  const listEventuallyConsistent: Service["listEventuallyConsistent"] = Effect.flatMap(
    scanLeaseItems(sdk, tableName, policy, false),
    (items) => Effect.forEach(items, (item) => read("Scan", item))
  )

  // The index holds keys only: each lease is then read consistently, and kept only if it still names the owner.
  const listOwnedBy: NonNullable<Service["listOwnedBy"]> = (owner) =>
    Effect.gen(function*() {
      if (!(yield* indexActive)) return (yield* list).filter((lease) => lease.leaseOwner === owner)
      const keys = yield* queryLeaseKeys(sdk, tableName, policy, owner)
      const leases = yield* Effect.forEach(keys, (key) => get(key), { concurrency: 8 })
      return leases.filter((lease): lease is Lease.Lease => lease !== undefined && lease.leaseOwner === owner)
    })

  // Keys only: a worker then reads just the leases it does not hold yet.
  const listOwnedKeys: NonNullable<Service["listOwnedKeys"]> = (owner) =>
    Effect.gen(function*() {
      if (!(yield* indexActive)) {
        return (yield* list).flatMap((lease) => lease.leaseOwner === owner ? [lease.leaseKey] : [])
      }
      return yield* queryLeaseKeys(sdk, tableName, policy, owner)
    })

  const get: Service["get"] = (leaseKey) =>
    call(policy, "GetItem", (abortSignal) =>
      sdk.send(
        new GetItemCommand({ TableName: tableName, Key: { [A.leaseKey]: S(leaseKey) }, ConsistentRead: true }),
        { abortSignal }
      )).pipe(
        Effect.catchTag("ConditionFailed", conditionOnRead("GetItem")),
        Effect.flatMap((out) =>
          out.Item === undefined || !isLeaseItem(out.Item) ? Effect.succeed(undefined) : read("GetItem", out.Item)
        )
      )

  const create: Service["create"] = (lease) =>
    Effect.gen(function*() {
      const item = newLeaseItem(lease)
      const created = yield* read("PutItem", item)
      const ambiguous = { value: false }
      yield* call(policy, "PutItem", (abortSignal) =>
        sdk.send(
          new PutItemCommand({
            TableName: tableName,
            Item: item,
            ConditionExpression: "attribute_not_exists(#leaseKey)",
            ExpressionAttributeNames: { "#leaseKey": A.leaseKey }
          }),
          { abortSignal }
        ), ambiguous).pipe(
          Effect.catchTag("ConditionFailed", () => {
            const exists = new LeaseRepository.LeaseExists({ leaseKey: lease.leaseKey })
            // Our own earlier attempt may be what exists now; an untouched new lease is as good as ours.
            return ambiguous.value
              ? Effect.flatMap(get(lease.leaseKey), (stored) =>
                stored !== undefined && stored.leaseCounter === 0 && stored.leaseOwner === undefined &&
                  ExtendedSequenceNumber.Equivalence(stored.checkpoint, created.checkpoint)
                  ? Effect.void
                  : Effect.fail(exists))
              : Effect.fail(exists)
          })
        )
      return created
    })

  // Both owners as our write left them: during a hand-off, a take by the next owner moves the counter
  // as our renewal would, and only its removed `checkpointOwner` tells the two apart.
  const sameOwners = (stored: Lease.Lease, lease: Lease.Lease) =>
    stored.leaseOwner === lease.leaseOwner && stored.checkpointOwner === lease.checkpointOwner

  // One conditional UpdateItem. When an earlier attempt may have been applied before the condition failed on a
  // retry, the stored lease is checked against what our write would have produced, so that a renewal that landed
  // but whose answer was lost does not look like a lost lease.
  const update = (
    operation: "take" | "renew" | "checkpoint" | "release" | "handOff",
    lease: Lease.Lease,
    owner: OwnerCondition,
    build: (x: Expressions) => string,
    landed: (stored: Lease.Lease) => boolean
  ): Effect.Effect<Lease.Lease, LeaseRepository.LeaseConflict | LeaseRepository.LeaseStoreError> => {
    const conflict = new LeaseRepository.LeaseConflict({ leaseKey: lease.leaseKey, operation })
    if (owner === "owned" && lease.leaseOwner === undefined) return Effect.fail(conflict)
    // A hand-off leaves the counter as it is (as KCL 3.x): the owner's renewals go on meanwhile.
    const counted = operation !== "handOff"
    return Effect.suspend(() => {
      const x = new Expressions()
      const updateExpression = build(x)
      const conditionExpression = leaseCondition(x, lease, owner, counted)
      const ambiguous = { value: false }
      return call(policy, "UpdateItem", (abortSignal) =>
        sdk.send(
          new UpdateItemCommand({
            TableName: tableName,
            Key: { [A.leaseKey]: S(lease.leaseKey) },
            UpdateExpression: updateExpression,
            ConditionExpression: conditionExpression,
            ...x.params,
            ReturnValues: "ALL_NEW"
          }),
          { abortSignal }
        ), ambiguous).pipe(
          Effect.flatMap((out) => read("UpdateItem", out.Attributes ?? {})),
          Effect.catchTag(
            "ConditionFailed",
            (): Effect.Effect<Lease.Lease, LeaseRepository.LeaseConflict | LeaseRepository.LeaseStoreError> =>
              ambiguous.value
                ? Effect.flatMap(
                  get(lease.leaseKey),
                  (stored) =>
                    stored !== undefined && stored.leaseCounter === lease.leaseCounter + (counted ? 1 : 0) &&
                      landed(stored)
                      ? Effect.succeed(stored)
                      : Effect.fail(conflict)
                )
                : Effect.fail(conflict)
          )
        )
    })
  }

  const add = (x: Expressions, attribute: string, n: number) =>
    `${x.name(attribute)} = if_not_exists(${x.name(attribute)}, ${x.value(N(0))}) + ${x.value(N(n))}`

  const take: Service["take"] = (lease, owner) =>
    update("take", lease, "asRead", (x) => {
      const sets = [`${x.name(A.leaseOwner)} = ${x.value(S(owner))}`, add(x, A.leaseCounter, 1)]
      // As the KCL counts it: taking an unowned lease is not a switch.
      if (lease.leaseOwner !== undefined && lease.leaseOwner !== owner) {
        sets.push(add(x, A.ownerSwitchesSinceCheckpoint, 1))
      }
      // A KCL 3.x graceful handoff in progress ends when someone takes the lease.
      return `SET ${sets.join(", ")} REMOVE ${x.name(A.checkpointOwner)}`
    }, (stored) => stored.leaseOwner === owner && stored.checkpointOwner === undefined)

  // The throughput rides the renewal's UpdateItem, as KCL 3.x writes it (a number, KB/s).
  const renew: Service["renew"] = (lease, throughputKBps) =>
    update(
      "renew",
      lease,
      "owned",
      (x) =>
        throughputKBps === undefined
          ? `SET ${add(x, A.leaseCounter, 1)}`
          : `SET ${add(x, A.leaseCounter, 1)}, ${x.name(A.throughputKBps)} = ${x.value(N(throughputKBps))}`,
      (stored) => sameOwners(stored, lease)
    )

  const checkpoint: Service["checkpoint"] = (lease, position, childShardIds) =>
    update("checkpoint", lease, "owned", (x) => {
      const sets = [
        add(x, A.leaseCounter, 1),
        `${x.name(A.checkpoint)} = ${x.value(S(position.sequenceNumber))}`,
        `${x.name(A.checkpointSubSequenceNumber)} = ${x.value(N(position.subSequenceNumber))}`,
        `${x.name(A.ownerSwitchesSinceCheckpoint)} = ${x.value(N(0))}`
      ]
      const children = SS(childShardIds ?? [])
      if (children !== undefined) sets.push(`${x.name(A.childShardIds)} = ${x.value(children)}`)
      // A completed checkpoint supersedes a KCL two-phase checkpoint in progress, as in the KCL.
      const removes = [A.pendingCheckpoint, A.pendingCheckpointSubSequenceNumber, A.pendingCheckpointState]
      return `SET ${sets.join(", ")} REMOVE ${removes.map((name) => x.name(name)).join(", ")}`
    }, (stored) => sameOwners(stored, lease) && ExtendedSequenceNumber.Equivalence(stored.checkpoint, position))

  // During a hand-off the lease goes to its `leaseOwner`: the checkpoint owner lets go of it by removing itself, as
  // KCL 3.x's eviction of a lease pending checkpoint does.
  const release: Service["release"] = (lease) =>
    lease.checkpointOwner !== undefined
      ? update(
        "release",
        lease,
        "owned",
        (x) =>
          `SET ${add(x, A.leaseCounter, 1)}, ${add(x, A.ownerSwitchesSinceCheckpoint, 1)} REMOVE ${
            x.name(A.checkpointOwner)
          }`,
        (stored) => stored.leaseOwner === lease.leaseOwner && stored.checkpointOwner === undefined
      )
      : update(
        "release",
        lease,
        "owned",
        (x) => `SET ${add(x, A.leaseCounter, 1)} REMOVE ${x.name(A.leaseOwner)}`,
        (stored) => stored.leaseOwner === undefined
      )

  // KCL 3.x's `initiateGracefulLeaseHandoff`: the lease names its next owner, and its current owner as checkpoint
  // owner, who checkpoints and then removes itself (`release`).
  // Handing it back to the checkpoint owner calls a hand-off under way off.
  const handOff: NonNullable<Service["handOff"]> = (lease, to) =>
    lease.leaseOwner === undefined || lease.leaseOwner === to ||
      (lease.checkpointOwner !== undefined && lease.checkpointOwner !== to)
      ? Effect.fail(new LeaseRepository.LeaseConflict({ leaseKey: lease.leaseKey, operation: "handOff" }))
      : lease.checkpointOwner !== undefined
      ? update(
        "handOff",
        lease,
        "asRead",
        (x) => `SET ${x.name(A.leaseOwner)} = ${x.value(S(to))} REMOVE ${x.name(A.checkpointOwner)}`,
        (stored) => stored.leaseOwner === to && stored.checkpointOwner === undefined
      )
      : update(
        "handOff",
        lease,
        "asRead",
        (x) =>
          `SET ${x.name(A.leaseOwner)} = ${x.value(S(to))}, ${x.name(A.checkpointOwner)} = ${
            x.value(S(lease.leaseOwner!))
          }`,
        (stored) => stored.leaseOwner === to && stored.checkpointOwner === lease.leaseOwner
      )

  const remove: Service["delete"] = (lease) =>
    Effect.suspend(() => {
      const x = new Expressions()
      const conditionExpression = leaseCondition(x, lease, "any")
      const ambiguous = { value: false }
      return call(policy, "DeleteItem", (abortSignal) =>
        sdk.send(
          new DeleteItemCommand({
            TableName: tableName,
            Key: { [A.leaseKey]: S(lease.leaseKey) },
            ConditionExpression: conditionExpression,
            ...x.params
          }),
          { abortSignal }
        ), ambiguous).pipe(
          Effect.asVoid,
          Effect.catchTag("ConditionFailed", () => {
            const conflict = new LeaseRepository.LeaseConflict({ leaseKey: lease.leaseKey, operation: "delete" })
            // Gone after an attempt that may have landed: most likely our own delete.
            return ambiguous.value
              ? Effect.flatMap(get(lease.leaseKey), (stored) =>
                stored === undefined ? Effect.void : Effect.fail(conflict))
              : Effect.fail(conflict)
          })
        )
    })

  return LeaseRepository.LeaseRepository.of({
    list,
    listEventuallyConsistent,
    get,
    create,
    take,
    renew,
    checkpoint,
    release,
    handOff,
    listOwnedBy,
    listOwnedKeys,
    delete: remove,
    leaderLock: LeaderLock.make(sdk, tableName, policy),
    // A consumer of another application must not take this one's leases.
    applicationName: options.applicationName
  })
})

// Every lease item of the table (other KCL entities left out), page by page, consistently unless told.
const scanLeaseItems = (
  sdk: DynamoDBClient.DynamoDBClient["Service"]["sdk"],
  tableName: string,
  policy: RetryPolicy,
  consistent = true
): Effect.Effect<Array<Item>, LeaseRepository.LeaseStoreError> =>
  Effect.gen(function*() {
    const items: Array<Item> = []
    let startKey: Item | undefined = undefined
    do {
      const page = yield* call(policy, "Scan", (abortSignal) =>
        sdk.send(
          new ScanCommand({ TableName: tableName, ConsistentRead: consistent, ExclusiveStartKey: startKey }),
          { abortSignal }
        )).pipe(Effect.catchTag("ConditionFailed", conditionOnRead("Scan")))
      for (const item of page.Items ?? []) if (isLeaseItem(item)) items.push(item)
      startKey = page.LastEvaluatedKey
    } while (startKey !== undefined)
    return items
  })

/**
 * An item of a lease table that is not a lease this library can read (a position it does not know, a number that is
 * not an integer…): its `leaseKey` when it has one, and why.
 *
 * @example
 * ```ts
 * import type { DynamoDBLeaseRepository } from "@effect-kinesis/lease-dynamodb"
 *
 * const line = (item: DynamoDBLeaseRepository.UnreadableItem) => `${item.leaseKey ?? "?"}: ${item.reason}`
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface UnreadableItem {
  readonly leaseKey: string | undefined
  readonly reason: string
}

/**
 * Reads a whole lease table for a tool that shows it (the `effect-kinesis leases` command): the leases, and beside
 * them the items it cannot read, where the repository's `list` fails on the first such item (a consumer must not act
 * on a lease it misreads; a viewer should still show the rest). The table is not created nor checked; a missing one
 * fails with a `LeaseStoreError`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { DynamoDBClient, DynamoDBLeaseRepository } from "@effect-kinesis/lease-dynamodb"
 *
 * const program = Effect.gen(function*() {
 *   const { leases, unreadable } = yield* DynamoDBLeaseRepository.scan({ applicationName: "order-processor" })
 *   return `${leases.length} leases, ${unreadable.length} unreadable items`
 * }).pipe(Effect.provide(DynamoDBClient.layer({ region: "eu-west-1" })))
 * ```
 *
 * @since 0.2.0
 * @category inspection
 */
export const scan = (options: Pick<Options, "applicationName" | "tableName" | "retry">): Effect.Effect<
  { readonly leases: ReadonlyArray<Lease.Lease>; readonly unreadable: ReadonlyArray<UnreadableItem> },
  LeaseRepository.LeaseStoreError,
  DynamoDBClient.DynamoDBClient
> =>
  Effect.gen(function*() {
    const { sdk } = yield* DynamoDBClient.DynamoDBClient
    const items = yield* scanLeaseItems(sdk, options.tableName ?? options.applicationName, policyOf(options.retry))
    const leases: Array<Lease.Lease> = []
    const unreadable: Array<UnreadableItem> = []
    for (const item of items) {
      const lease = toLease(item)
      if (lease instanceof MalformedItem) unreadable.push({ leaseKey: item[A.leaseKey]?.S, reason: lease.message })
      else leases.push(lease)
    }
    return { leases, unreadable }
  })

// Reads carry no condition; DynamoDB cannot answer one with a condition failure.
const conditionOnRead = (operation: string) => (_: ConditionFailed) =>
  Effect.fail(
    new LeaseRepository.LeaseStoreError({ operation, message: "unexpected condition failure", retryable: false })
  )

/**
 * The lease store as a layer on a {@link DynamoDBClient.DynamoDBClient}.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { DynamoDBClient, DynamoDBLeaseRepository } from "@effect-kinesis/lease-dynamodb"
 *
 * const LeasesLive = DynamoDBLeaseRepository.layer({ applicationName: "order-processor" }).pipe(
 *   Layer.provide(DynamoDBClient.layer({ region: "eu-west-1" }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<
  LeaseRepository.LeaseRepository,
  LeaseTableNotFound | LeaseRepository.LeaseStoreError | InvalidSetting.InvalidSetting,
  DynamoDBClient.DynamoDBClient
> => Layer.effect(LeaseRepository.LeaseRepository, make(options))

/**
 * The lease store's identity read from Effect `Config` (environment variables by default), the
 * same `KINESIS_APPLICATION_NAME` as `Consumer.config`, so that the name is given once:
 *
 * | variable | meaning |
 * |---|---|
 * | `KINESIS_APPLICATION_NAME` | application name (required) |
 * | `KINESIS_LEASE_TABLE` | lease table (default: the application name, as the KCL) |
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { DynamoDBClient, DynamoDBLeaseRepository } from "@effect-kinesis/lease-dynamodb"
 *
 * // The names from the environment, the table settings in code.
 * const LeasesLive = Layer.unwrap(Effect.map(DynamoDBLeaseRepository.config, (identity) =>
 *   DynamoDBLeaseRepository.layer({ ...identity, table: { pointInTimeRecovery: true } }))).pipe(
 *     Layer.provide(DynamoDBClient.layerConfig)
 *   )
 * ```
 *
 * @since 0.2.0
 * @category config
 */
export const config: Config.Config<{ readonly applicationName: string; readonly tableName: string | undefined }> =
  Config.all({
    applicationName: Config.String("KINESIS_APPLICATION_NAME"),
    tableName: Config.option(Config.String("KINESIS_LEASE_TABLE"))
  }).pipe(Config.map((c) => ({ applicationName: c.applicationName, tableName: Option.getOrUndefined(c.tableName) })))

/**
 * The lease store with its own DynamoDB client, both configured from the environment: the
 * application and table from {@link config} (`KINESIS_APPLICATION_NAME`, as the consumer's
 * `Consumer.config`), the client from `DynamoDBClient.config` (`DYNAMODB_ENDPOINT`, `AWS_REGION`).
 * A value, as every `layerConfig`.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Consumer } from "@effect-kinesis/consumer"
 * import { DynamoDBLeaseRepository } from "@effect-kinesis/lease-dynamodb"
 *
 * const ConsumerLive = Consumer.layerConfig.pipe(Layer.provide(DynamoDBLeaseRepository.layerConfig))
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig: Layer.Layer<
  LeaseRepository.LeaseRepository,
  LeaseTableNotFound | LeaseRepository.LeaseStoreError | InvalidSetting.InvalidSetting | Config.ConfigError
> = Layer.unwrap(Effect.map(config, layer)).pipe(Layer.provide(DynamoDBClient.layerConfig))

/**
 * Whether a lease may be deleted now: the consumer's `Lease.isFinished` (read to its end, no
 * parent lease left, every child leased or consumed and at least one under way), here for
 * convenience. The consumer deletes finished leases itself at every shard sync
 * (`LeaseSettings.cleanupFinished`).
 *
 * @example
 * ```ts
 * import { LeaseRepository } from "@effect-kinesis/consumer"
 * import { DynamoDBLeaseRepository } from "@effect-kinesis/lease-dynamodb"
 * import { Effect } from "effect"
 *
 * const finished = Effect.gen(function*() {
 *   const leases = yield* (yield* LeaseRepository.LeaseRepository).list
 *   const byKey = new Map(leases.map((lease) => [lease.leaseKey, lease]))
 *   return leases.filter((lease) => DynamoDBLeaseRepository.isFinished(lease, byKey))
 * })
 * ```
 *
 * @since 0.1.0
 * @category cleanup
 */
export const isFinished: (
  lease: Lease.Lease,
  all: ReadonlyArray<Lease.Lease> | ReadonlyMap<string, Lease.Lease>
) => boolean = Lease.isFinished

/**
 * Deletes every finished lease (`Lease.isFinished`) of the table, parents before children, each
 * conditionally on the counter it was listed with (a lease that changed meanwhile is left for the
 * next round, and so are its descendants). Returns the deleted lease keys in the order deleted.
 * Works with any `LeaseRepository`; a running consumer does this itself.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { DynamoDBLeaseRepository } from "@effect-kinesis/lease-dynamodb"
 *
 * const cleanup = DynamoDBLeaseRepository.deleteFinished.pipe(
 *   Effect.tap((keys) => Effect.logInfo(`deleted ${keys.length} finished leases`))
 * )
 * ```
 *
 * @since 0.1.0
 * @category cleanup
 */
export const deleteFinished: Effect.Effect<
  ReadonlyArray<string>,
  LeaseRepository.LeaseStoreError,
  LeaseRepository.LeaseRepository
> = Effect.gen(function*() {
  const repo = yield* LeaseRepository.LeaseRepository
  return yield* LeaseRepository.deleteFinished(repo, yield* repo.list)
})
