/**
 * Where leases live. The consumer talks to leases only through this service, so swapping the
 * store (in memory for tests, DynamoDB in production, or a backend of your own) changes nothing
 * else. Every write is conditional on the lease counter the caller last saw, so two workers can
 * never both believe they own a shard.
 *
 * @since 0.1.0
 */
import type { ExtendedSequenceNumber } from "@effect-kinesis/core"
import { Context, Data, Effect, Layer } from "effect"
import * as ApplicationLeases from "./internal/applicationLeases.ts"
import * as FinishedLeases from "./internal/finishedLeases.ts"
import type { Lease } from "./Lease.ts"

/**
 * A conditional write failed because the lease changed since it was read: another worker took,
 * renewed, checkpointed or released it (or it was deleted). The caller no longer owns it.
 *
 * @example
 * ```ts
 * import type { LeaseRepository } from "@effect-kinesis/consumer"
 *
 * const text = (e: LeaseRepository.LeaseConflict) => `${e.leaseKey}: ${e.operation} lost the race`
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class LeaseConflict extends Data.TaggedError("LeaseConflict")<{
  readonly leaseKey: string
  readonly operation: "take" | "renew" | "checkpoint" | "release" | "update" | "delete" | "handOff" | "leaderLock"
}> {}

/**
 * `create` found a lease with that key already.
 *
 * @example
 * ```ts
 * import type { LeaseRepository } from "@effect-kinesis/consumer"
 *
 * const text = (e: LeaseRepository.LeaseExists) => `${e.leaseKey} exists`
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class LeaseExists extends Data.TaggedError("LeaseExists")<{ readonly leaseKey: string }> {}

/**
 * The store itself failed (network, throttling, missing table…). `retryable` says whether trying
 * again can help.
 *
 * @example
 * ```ts
 * import type { LeaseRepository } from "@effect-kinesis/consumer"
 *
 * const text = (e: LeaseRepository.LeaseStoreError) => `${e.operation}: ${e.message}`
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class LeaseStoreError extends Data.TaggedError("LeaseStoreError")<{
  readonly operation: string
  readonly message: string
  readonly retryable: boolean
  readonly cause?: unknown
}> {}

/**
 * The lease store operations. Each write returns the lease as stored afterwards (with its new
 * counter), which the caller uses for its next conditional write.
 *
 * - `take`: owner := `owner`, counter + 1, ownerSwitchesSinceCheckpoint + 1 when the owner
 *   changes, checkpointOwner removed (a hand-off in progress ends); conditional on the counter
 *   of `lease`.
 * - `renew`: counter + 1, and `throughputKBps` := `throughputKBps` when given (else left as
 *   stored); conditional on counter and owners (leaseOwner and checkpointOwner).
 * - `checkpoint`: checkpoint := `checkpoint`, ownerSwitchesSinceCheckpoint := 0, counter + 1,
 *   `childShardIds` written when given (shard end); conditional on counter and owners.
 * - `release`: owner removed, counter + 1; conditional on counter and owners. A lease read
 *   with a `checkpointOwner` (a hand-off under way) keeps its `leaseOwner` and loses its
 *   `checkpointOwner` instead, with ownerSwitchesSinceCheckpoint + 1: that completes the
 *   hand-off (KCL 3.x's eviction of a lease pending checkpoint does the same).
 * - `handOff` (optional): starts a graceful hand-off as KCL 3.x does: leaseOwner := `to`,
 *   checkpointOwner := the current owner, counter unchanged (the owner's renewals go on);
 *   conditional on the lease existing, its owners being the ones read and no hand-off under
 *   way. Given a lease under hand-off and its checkpoint owner as `to`, it calls the hand-off
 *   off instead: leaseOwner := `to`, checkpointOwner removed, counter unchanged.
 * - `delete`: removes the lease; conditional on counter.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { LeaseRepository } from "@effect-kinesis/consumer"
 *
 * const owners = Effect.gen(function*() {
 *   const repo = yield* LeaseRepository.LeaseRepository
 *   const leases = yield* repo.list
 *   return leases.map((lease) => [lease.leaseKey, lease.leaseOwner] as const)
 * })
 * ```
 *
 * @since 0.1.0
 * @category services
 */
export class LeaseRepository extends Context.Service<LeaseRepository, LeaseStore>()(
  "@effect-kinesis/consumer/LeaseRepository"
) {}

/**
 * The operations of a {@link LeaseRepository} (its `Service`), named so that a store of several
 * applications can hand out the store of one.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { LeaseRepository } from "@effect-kinesis/consumer"
 *
 * const ownedBy = (store: LeaseRepository.LeaseStore, owner: string) =>
 *   Effect.map(store.list, (leases) => leases.filter((lease) => lease.leaseOwner === owner))
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface LeaseStore {
  /** Every lease, read consistently. */
  readonly list: Effect.Effect<ReadonlyArray<Lease>, LeaseStoreError>
  /**
   * Every lease, read eventually consistently: may miss the latest writes, for half the read
   * capacity of `list` on DynamoDB. Optional (`list` serves without it). The leader of
   * leader-based assignment reads the table this way: every write it makes is conditional on
   * the counter it read, so a stale lease costs one refused write.
   */
  readonly listEventuallyConsistent?: Effect.Effect<ReadonlyArray<Lease>, LeaseStoreError> | undefined
  readonly get: (leaseKey: string) => Effect.Effect<Lease | undefined, LeaseStoreError>
  /** Creates an unowned lease with counter 0; fails with `LeaseExists` if the key exists. */
  readonly create: (lease: Lease) => Effect.Effect<Lease, LeaseExists | LeaseStoreError>
  readonly take: (lease: Lease, owner: string) => Effect.Effect<Lease, LeaseConflict | LeaseStoreError>
  readonly renew: (
    lease: Lease,
    throughputKBps?: number | undefined
  ) => Effect.Effect<Lease, LeaseConflict | LeaseStoreError>
  readonly checkpoint: (
    lease: Lease,
    checkpoint: ExtendedSequenceNumber.ExtendedSequenceNumber,
    childShardIds?: ReadonlyArray<string>
  ) => Effect.Effect<Lease, LeaseConflict | LeaseStoreError>
  readonly release: (lease: Lease) => Effect.Effect<Lease, LeaseConflict | LeaseStoreError>
  readonly delete: (lease: Lease) => Effect.Effect<void, LeaseConflict | LeaseStoreError>
  /**
   * The application whose leases the store holds (DynamoDB's: its `applicationName`). A consumer
   * with another application name fails at start with `InvalidSetting` rather than share leases.
   * Unset: the store does not say.
   */
  readonly applicationName?: string | undefined
  /**
   * For a store holding several applications' leases (the in-memory one): the store of one. A
   * consumer uses the store of its own application.
   */
  readonly forApplication?: ((applicationName: string) => LeaseStore) | undefined
  /**
   * Starts a graceful hand-off of `lease` (owned by another worker) to `to`. Optional: without
   * it the consumer moves leases for balance by `take` (the new owner resumes at the last
   * checkpoint, repeating what the owner processed since).
   */
  readonly handOff?: ((lease: Lease, to: string) => Effect.Effect<Lease, LeaseConflict | LeaseStoreError>) | undefined
  /**
   * The leases whose `leaseOwner` is `owner`, each read consistently; a lease taken by `owner`
   * a moment ago may be missing (an index is eventually consistent). Optional: the consumer
   * filters `list` without it. The DynamoDB store answers it from KCL 3.x's
   * `LeaseOwnerToLeaseKeyIndex` when the table has it, instead of scanning the table.
   */
  readonly listOwnedBy?: ((owner: string) => Effect.Effect<ReadonlyArray<Lease>, LeaseStoreError>) | undefined
  /**
   * The keys of the leases whose `leaseOwner` is `owner`, without reading the leases (so a
   * worker reads only those it does not hold yet); eventually consistent like `listOwnedBy`.
   * Optional. The DynamoDB store answers it from `LeaseOwnerToLeaseKeyIndex` when the table has it.
   */
  readonly listOwnedKeys?: ((owner: string) => Effect.Effect<ReadonlyArray<string>, LeaseStoreError>) | undefined
  /**
   * The leader lock of leader-based assignment (KCL 3.x's `LeaderLock` item). Optional: without
   * it every worker assigns for itself.
   */
  readonly leaderLock?: LeaderLockStore | undefined
}

/**
 * The leader lock as stored: KCL 3.x's `LeaderLock` item (key `Leader`, `entityType` `LEADER`),
 * with the DynamoDB lock client's attributes. Whether it has expired is for each reader to judge
 * on its own clock: it has once its `recordVersionNumber` has stood still for `leaseDurationMillis`.
 *
 * @example
 * ```ts
 * import type { LeaseRepository } from "@effect-kinesis/consumer"
 *
 * const text = (lock: LeaseRepository.LeaderLock) => `${lock.owner} leads (${lock.recordVersionNumber})`
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface LeaderLock {
  /** The leader's worker id (`ownerName`). */
  readonly owner: string
  /** A fresh value on every acquire and refresh (`recordVersionNumber`). */
  readonly recordVersionNumber: string
  /** `leaseDuration`. */
  readonly leaseDurationMillis: number
  /** Given up without being deleted (`isReleased`, as the lock client may leave it). */
  readonly released: boolean
}

/**
 * The operations on the leader lock ({@link LeaseStore.leaderLock}). Every write is conditional
 * on the `recordVersionNumber` the caller read, and fails with `LeaseConflict` (operation
 * `leaderLock`, key `Leader`) when it changed.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { LeaseRepository } from "@effect-kinesis/consumer"
 *
 * // Takes the lock when there is none.
 * const lead = (locks: LeaseRepository.LeaderLockStore, workerId: string) =>
 *   Effect.flatMap(locks.read, (lock) => lock === undefined ? locks.acquire(workerId, 20_000, undefined) : Effect.succeed(lock))
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface LeaderLockStore {
  /**
   * The lock, or `undefined` when there is none; may be a moment stale (DynamoDB's: an eventually
   * consistent read): a lock's expiry is judged over many reads, and every write is conditional.
   */
  readonly read: Effect.Effect<LeaderLock | undefined, LeaseStoreError>
  /**
   * Writes a lock held by `owner`, with a new `recordVersionNumber`: when there is none
   * (`expected` `undefined`), or over `expected` (released, or seen expired) if it is still there.
   */
  readonly acquire: (
    owner: string,
    leaseDurationMillis: number,
    expected: LeaderLock | undefined
  ) => Effect.Effect<LeaderLock, LeaseConflict | LeaseStoreError>
  /** A new `recordVersionNumber` for the lock `held`, if it is still that one. */
  readonly refresh: (held: LeaderLock) => Effect.Effect<LeaderLock, LeaseConflict | LeaseStoreError>
  /** Deletes the lock `held`, if it is still that one. */
  readonly release: (held: LeaderLock) => Effect.Effect<void, LeaseConflict | LeaseStoreError>
}

/**
 * Options of {@link makeMemory}.
 *
 * @example
 * ```ts
 * import { ExtendedSequenceNumber } from "@effect-kinesis/core"
 * import { LeaseRepository } from "@effect-kinesis/consumer"
 *
 * let failures = 2
 * const options: LeaseRepository.MemoryOptions = {
 *   leases: [{
 *     leaseKey: "shardId-000000000000",
 *     leaseOwner: undefined,
 *     leaseCounter: 0,
 *     checkpoint: ExtendedSequenceNumber.trimHorizon,
 *     pendingCheckpoint: undefined,
 *     ownerSwitchesSinceCheckpoint: 0,
 *     parentShardIds: [],
 *     childShardIds: [],
 *     hashKeyRange: undefined
 *   }],
 *   // the next two renewals fail as if the store were throttling
 *   fault: (operation) =>
 *     operation === "renew" && failures-- > 0
 *       ? new LeaseRepository.LeaseStoreError({ operation, message: "throttled", retryable: true })
 *       : undefined
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface MemoryOptions {
  /**
   * The application the store belongs to: a consumer of another fails at start. Default: none,
   * and the store keeps each application's leases apart, its own operations acting on those of
   * the first application a consumer used it for (where `leases` are). A copy with operations
   * replaced (`{ ...store, checkpoint }`) is that first application's only.
   */
  readonly applicationName?: string | undefined
  /** Leases the store starts with, stored as given. */
  readonly leases?: Iterable<Lease> | undefined
  /**
   * Consulted before every operation; returning an error fails that operation with it, leaving the store untouched.
   * For tests of how callers handle an unavailable store.
   */
  readonly fault?:
    | ((
      operation:
        | "list"
        | "get"
        | "create"
        | "take"
        | "renew"
        | "checkpoint"
        | "release"
        | "delete"
        | "handOff"
        | "listOwnedBy"
        | "listOwnedKeys"
        | "leaderLock",
      leaseKey: string | undefined
    ) => LeaseStoreError | undefined)
    | undefined
}

/**
 * An in-memory lease store with the same conditional semantics as the DynamoDB one: for tests, and for a single
 * process that needs no durable checkpoints. Operations are linearizable.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { LeaseRepository } from "@effect-kinesis/consumer"
 *
 * const program = Effect.gen(function*() {
 *   const repo = yield* LeaseRepository.makeMemory()
 *   return yield* repo.list
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory = (options: MemoryOptions = {}): Effect.Effect<LeaseRepository["Service"]> =>
  Effect.sync(() => LeaseRepository.of(ApplicationLeases.memory(options)))

/**
 * A fresh, empty in-memory {@link LeaseRepository} per layer build, keeping each application's
 * leases apart.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { LeaseRepository } from "@effect-kinesis/consumer"
 *
 * const count = Effect.gen(function*() {
 *   const repo = yield* LeaseRepository.LeaseRepository
 *   return (yield* repo.list).length
 * }).pipe(Effect.provide(LeaseRepository.layerMemory))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<LeaseRepository> = Layer.effect(LeaseRepository, makeMemory())

/**
 * Deletes the given leases that are finished (`Lease.isFinished`) among them, parents before
 * children (a lease whose parent is deleted here is checked again after it), each conditionally
 * on the counter it was listed with: a lease that changed meanwhile is left for the next round,
 * and so are its descendants. Returns the deleted lease keys, in the order deleted. The consumer
 * does this itself at every shard sync unless `LeaseSettings.cleanupFinished` is `false`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { LeaseRepository } from "@effect-kinesis/consumer"
 *
 * const cleanup = Effect.gen(function*() {
 *   const repo = yield* LeaseRepository.LeaseRepository
 *   const deleted = yield* LeaseRepository.deleteFinished(repo, yield* repo.list)
 *   yield* Effect.logInfo(`deleted ${deleted.length} finished leases`)
 * })
 * ```
 *
 * @since 0.1.0
 * @category cleanup
 */
export const deleteFinished = (
  repository: LeaseRepository["Service"],
  leases: ReadonlyArray<Lease>
): Effect.Effect<ReadonlyArray<string>, LeaseStoreError> => FinishedLeases.deleteFinished(repository, leases)
