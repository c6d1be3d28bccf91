import { Effect } from "effect"
import type { Lease } from "../Lease.ts"
import type { LeaderLock, LeaderLockStore, LeaseRepository, MemoryOptions } from "../LeaseRepository.ts"
import { LeaseConflict, LeaseExists, type LeaseStoreError } from "../LeaseRepository.ts"

type Service = LeaseRepository["Service"]
type Operation = Parameters<NonNullable<MemoryOptions["fault"]>>[0]

/** @internal */
export const make = (options: MemoryOptions = {}): Service => {
  const leases = new Map<string, Lease>()
  for (const lease of options.leases ?? []) leases.set(lease.leaseKey, lease)

  // Each operation reads, checks and writes in one synchronous step, so the store is linearizable without locks.
  const atomically = <A, E>(
    operation: Operation,
    leaseKey: string | undefined,
    body: () => Effect.Effect<A, E>
  ): Effect.Effect<A, E | LeaseStoreError> =>
    Effect.suspend((): Effect.Effect<A, E | LeaseStoreError> => {
      const fault = options.fault?.(operation, leaseKey)
      return fault === undefined ? body() : Effect.fail(fault)
    })

  // The conditional write of every operation but `create`: the stored lease must still be the one the caller read
  // (its counter, and for "owned" and "asRead" its owners; `handOff` leaves the counter out, as KCL 3.x does).
  const conditional = (
    operation: "take" | "renew" | "checkpoint" | "release" | "delete" | "handOff",
    lease: Lease,
    owner: "owned" | "asRead" | "any",
    update: (stored: Lease) => Lease | undefined
  ): Effect.Effect<Lease | undefined, LeaseConflict | LeaseStoreError> =>
    atomically(operation, lease.leaseKey, () => {
      const stored = leases.get(lease.leaseKey)
      if (
        stored === undefined || (operation !== "handOff" && stored.leaseCounter !== lease.leaseCounter) ||
        (owner === "owned" && lease.leaseOwner === undefined) ||
        (owner !== "any" &&
          (stored.leaseOwner !== lease.leaseOwner || stored.checkpointOwner !== lease.checkpointOwner))
      ) {
        return Effect.fail(new LeaseConflict({ leaseKey: lease.leaseKey, operation }))
      }
      const next = update(stored)
      if (next === undefined) leases.delete(lease.leaseKey)
      else leases.set(lease.leaseKey, next)
      return Effect.succeed(next)
    })

  const written = Effect.map((lease: Lease | undefined) => lease!)

  return {
    list: atomically("list", undefined, () => Effect.succeed(Array.from(leases.values()))),
    listOwnedBy: (owner) =>
      atomically(
        "listOwnedBy",
        undefined,
        () => Effect.succeed(Array.from(leases.values()).filter((lease) => lease.leaseOwner === owner))
      ),
    listOwnedKeys: (owner) =>
      atomically(
        "listOwnedKeys",
        undefined,
        () => Effect.succeed(Array.from(leases.values()).flatMap((l) => l.leaseOwner === owner ? [l.leaseKey] : []))
      ),
    get: (leaseKey) => atomically("get", leaseKey, () => Effect.succeed(leases.get(leaseKey))),
    create: (lease) =>
      atomically("create", lease.leaseKey, () => {
        if (leases.has(lease.leaseKey)) return Effect.fail(new LeaseExists({ leaseKey: lease.leaseKey }))
        const stored: Lease = {
          ...lease,
          leaseOwner: undefined,
          leaseCounter: 0,
          pendingCheckpoint: undefined,
          ownerSwitchesSinceCheckpoint: 0,
          checkpointOwner: undefined
        }
        leases.set(lease.leaseKey, stored)
        return Effect.succeed(stored)
      }),
    take: (lease, owner) =>
      conditional("take", lease, "asRead", (stored) => ({
        ...stored,
        leaseOwner: owner,
        leaseCounter: stored.leaseCounter + 1,
        // As the KCL counts it: taking an unowned lease is not a switch.
        ownerSwitchesSinceCheckpoint: stored.ownerSwitchesSinceCheckpoint +
          (stored.leaseOwner !== undefined && stored.leaseOwner !== owner ? 1 : 0),
        checkpointOwner: undefined
      })).pipe(written),
    renew: (lease, throughputKBps) =>
      conditional("renew", lease, "owned", (stored) => ({
        ...stored,
        leaseCounter: stored.leaseCounter + 1,
        ...(throughputKBps === undefined ? {} : { throughputKBps })
      })).pipe(written),
    checkpoint: (lease, checkpoint, childShardIds) =>
      conditional("checkpoint", lease, "owned", (stored) => ({
        ...stored,
        leaseCounter: stored.leaseCounter + 1,
        checkpoint,
        pendingCheckpoint: undefined,
        ownerSwitchesSinceCheckpoint: 0,
        childShardIds: childShardIds !== undefined && childShardIds.length > 0 ? childShardIds : stored.childShardIds
      })).pipe(written),
    // During a hand-off the lease goes to its `leaseOwner`: only the checkpoint owner lets go.
    release: (lease) =>
      conditional("release", lease, "owned", (stored) =>
        stored.checkpointOwner !== undefined
          ? {
            ...stored,
            checkpointOwner: undefined,
            leaseCounter: stored.leaseCounter + 1,
            ownerSwitchesSinceCheckpoint: stored.ownerSwitchesSinceCheckpoint + 1
          }
          : { ...stored, leaseOwner: undefined, leaseCounter: stored.leaseCounter + 1 }).pipe(written),
    // To the checkpoint owner of a hand-off under way: the hand-off is called off.
    handOff: (lease, to) =>
      Effect.suspend(() =>
        lease.leaseOwner === undefined || lease.leaseOwner === to ||
          (lease.checkpointOwner !== undefined && lease.checkpointOwner !== to)
          ? Effect.fail(new LeaseConflict({ leaseKey: lease.leaseKey, operation: "handOff" }))
          : conditional("handOff", lease, "asRead", (stored) =>
            stored.checkpointOwner === undefined
              ? { ...stored, leaseOwner: to, checkpointOwner: stored.leaseOwner }
              : { ...stored, leaseOwner: to, checkpointOwner: undefined }).pipe(written)
      ),
    delete: (lease) => conditional("delete", lease, "any", () => undefined).pipe(Effect.asVoid),
    leaderLock: leaderLock(atomically)
  }
}

// The leader lock: one per store (per application), each write conditional on the version read.
const leaderLock = (
  atomically: <A, E>(
    operation: Operation,
    leaseKey: string | undefined,
    body: () => Effect.Effect<A, E>
  ) => Effect.Effect<A, E | LeaseStoreError>
): LeaderLockStore => {
  let lock: LeaderLock | undefined
  let versions = 0
  const conflict = () => Effect.fail(new LeaseConflict({ leaseKey: LEADER_KEY, operation: "leaderLock" }))
  const fresh = (owner: string, leaseDurationMillis: number): LeaderLock => ({
    owner,
    recordVersionNumber: `v${++versions}`,
    leaseDurationMillis,
    released: false
  })
  return {
    read: atomically("leaderLock", LEADER_KEY, () => Effect.succeed(lock)),
    acquire: (owner, leaseDurationMillis, expected) =>
      atomically("leaderLock", LEADER_KEY, () => {
        if (lock?.recordVersionNumber !== expected?.recordVersionNumber) return conflict()
        lock = fresh(owner, leaseDurationMillis)
        return Effect.succeed(lock)
      }),
    refresh: (held) =>
      atomically("leaderLock", LEADER_KEY, () => {
        if (lock === undefined || lock.recordVersionNumber !== held.recordVersionNumber || lock.owner !== held.owner) {
          return conflict()
        }
        lock = fresh(lock.owner, lock.leaseDurationMillis)
        return Effect.succeed(lock)
      }),
    release: (held) =>
      atomically("leaderLock", LEADER_KEY, () => {
        if (lock === undefined || lock.recordVersionNumber !== held.recordVersionNumber) return conflict()
        lock = undefined
        return Effect.void
      })
  }
}

/** The lock item's key, as KCL 3.x names it (`LeaderLock.LEADER_HASH_KEY`). */
const LEADER_KEY = "Leader"
