/**
 * The leases of one stream in a multi-stream application's table, in the KCL's format: lease key
 * `account:streamName:creationEpoch:shardId`, attributes `streamName` (the serialized stream
 * identifier, `account:streamName:creationEpoch`) and `shardId`. Parent and child shard ids stay
 * plain shard ids, as the KCL writes them. The view shows the stream's leases keyed by shard id,
 * so that a lease coordinator written for one stream runs unchanged on each stream of the table.
 *
 * @internal
 */
import { Cause, Deferred, Duration, Effect, Exit } from "effect"
import type { Lease } from "../Lease.ts"
import { LeaseConflict, LeaseExists, type LeaseRepository, type LeaseStoreError } from "../LeaseRepository.ts"
import { monotonicMillis } from "./monotonicMillis.ts"

type Service = LeaseRepository["Service"]

/** A stream as the KCL identifies it in a multi-stream table. @internal */
export interface StreamIdentity {
  readonly accountId: string
  readonly streamName: string
  readonly creationEpoch: number
}

/** `account:streamName:creationEpoch`, the KCL's `StreamIdentifier.serialize()`. @internal */
export const serialize = (id: StreamIdentity): string => `${id.accountId}:${id.streamName}:${id.creationEpoch}`

// The KCL's `STREAM_IDENTIFIER_PATTERN`; a stream name has no colon.
const identifierPattern = /^([0-9]+):([^:]+):([0-9]+)$/

/** The KCL's `StreamIdentifier.multiStreamInstance(String)`: undefined when the text is not one. @internal */
export const parse = (text: string): StreamIdentity | undefined => {
  const match = identifierPattern.exec(text)
  if (match === null) return undefined
  const creationEpoch = Number(match[3])
  return Number.isSafeInteger(creationEpoch) && creationEpoch > 0
    ? { accountId: match[1]!, streamName: match[2]!, creationEpoch }
    : undefined
}

/**
 * The stream identifier of a multi-stream lease: its `streamName` attribute, else its key without
 * the shard id (the KCL writes both; a key is enough).
 *
 * @internal
 */
export const streamOf = (lease: Lease): string | undefined => {
  if (lease.streamName !== undefined) return lease.streamName
  const at = lease.leaseKey.lastIndexOf(":")
  return at > 0 && parse(lease.leaseKey.slice(0, at)) !== undefined ? lease.leaseKey.slice(0, at) : undefined
}

/**
 * The store of one stream's leases, keyed by shard id, over a store holding the leases of many.
 * Only the operations the lease store defines today are mapped; an optional one added later is
 * absent here (the consumer falls back without it) rather than passed through unmapped.
 *
 * @internal
 */
export const view = (store: Service, streamIdentifier: string): Service => {
  const prefix = `${streamIdentifier}:`
  const mine = (lease: Lease) =>
    lease.streamName === undefined ? lease.leaseKey.startsWith(prefix) : lease.streamName === streamIdentifier
  const outward = (lease: Lease): Lease => ({
    ...lease,
    leaseKey: lease.shardId ?? lease.leaseKey.slice(prefix.length)
  })
  const inward = (lease: Lease): Lease => ({
    ...lease,
    leaseKey: prefix + lease.leaseKey,
    streamName: streamIdentifier,
    shardId: lease.leaseKey
  })
  const shardIdOf = (leaseKey: string) => leaseKey.startsWith(prefix) ? leaseKey.slice(prefix.length) : leaseKey
  const listed = (leases: ReadonlyArray<Lease>) => leases.filter(mine).map(outward)
  const conflicts = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    Effect.mapError(effect, (error) =>
      error instanceof LeaseConflict
        ? new LeaseConflict({ leaseKey: shardIdOf(error.leaseKey), operation: error.operation }) as E
        : error instanceof LeaseExists
        ? new LeaseExists({ leaseKey: shardIdOf(error.leaseKey) }) as E
        : error)
  const written = <E>(effect: Effect.Effect<Lease, E>) => Effect.map(conflicts(effect), outward)
  const listOwnedBy = store.listOwnedBy
  const handOff = store.handOff
  return {
    list: Effect.map(store.list, listed),
    get: (shardId) =>
      Effect.map(store.get(prefix + shardId), (lease) => lease === undefined ? undefined : outward(lease)),
    create: (lease) => written(store.create(inward(lease))),
    take: (lease, owner) => written(store.take(inward(lease), owner)),
    renew: (lease, throughputKBps) => written(store.renew(inward(lease), throughputKBps)),
    checkpoint: (lease, checkpoint, childShardIds) =>
      written(store.checkpoint(inward(lease), checkpoint, childShardIds)),
    release: (lease) => written(store.release(inward(lease))),
    delete: (lease) => conflicts(store.delete(inward(lease))),
    applicationName: store.applicationName,
    handOff: handOff === undefined ? undefined : (lease, to) => written(handOff(inward(lease), to)),
    listOwnedBy: listOwnedBy === undefined ? undefined : (owner) => Effect.map(listOwnedBy(owner), listed)
  }
}

/**
 * The store with its `list` shared by the callers that ask within `window` of each other: one
 * scan of the table answers them all. Every stream's coordinator lists the whole table on its own
 * schedule; without this, N streams cost N scans per scan interval. A caller joins a scan that has
 * not started yet, or reuses one that started less than `window` ago after every write through
 * this store had been answered, so it still reads every write it made before asking (the
 * coordinators' rounds are jittered apart, so most callers come just after a scan rather than
 * during the wait before one). The first caller scans in its own fiber (no background fiber to
 * outlive the consumer); if it is interrupted, the others ask again.
 *
 * @internal
 */
export const shareScans = (store: Service, window: Duration.Duration): Service => {
  const windowMillis = Duration.toMillis(window)
  let next: Deferred.Deferred<ReadonlyArray<Lease>, LeaseStoreError> | undefined
  // The last scan answered, from when it started; writes in flight and when the last was answered.
  let recent: { readonly startedAt: number; readonly leases: ReadonlyArray<Lease> } | undefined
  let writing = 0
  let lastWrittenAt = Number.NEGATIVE_INFINITY
  const write = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    Effect.suspend(() => {
      writing++
      return effect.pipe(Effect.onExit(() =>
        Effect.map(monotonicMillis, (at) => {
          writing--
          lastWrittenAt = at
        })
      ))
    })
  const list: Effect.Effect<ReadonlyArray<Lease>, LeaseStoreError> = Effect.flatMap(monotonicMillis, (at) => {
    if (
      recent !== undefined && writing === 0 && recent.startedAt > lastWrittenAt && at - recent.startedAt < windowMillis
    ) return Effect.succeed(recent.leases)
    const pending = next
    if (pending !== undefined) {
      return Effect.flatMap(
        Effect.exit(Deferred.await(pending)),
        (exit) => Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? list : exit
      )
    }
    const answer = Deferred.makeUnsafe<ReadonlyArray<Lease>, LeaseStoreError>()
    next = answer
    // From the scan's start on, a caller waits for the next one: this one may miss its writes.
    const close = Effect.sync(() => {
      if (next === answer) next = undefined
    })
    return Effect.sleep(window).pipe(
      Effect.andThen(close),
      Effect.andThen(monotonicMillis),
      Effect.flatMap((startedAt) =>
        store.list.pipe(Effect.tap((leases) =>
          Effect.sync(() => {
            if (writing === 0 && startedAt > lastWrittenAt) recent = { startedAt, leases }
          })
        ))
      ),
      Effect.onExit((exit) => Effect.andThen(close, Deferred.done(answer, exit)))
    )
  })
  const handOff = store.handOff
  return {
    ...store,
    list,
    create: (lease) => write(store.create(lease)),
    take: (lease, owner) => write(store.take(lease, owner)),
    renew: (lease, throughputKBps) => write(store.renew(lease, throughputKBps)),
    checkpoint: (lease, checkpoint, childShardIds) => write(store.checkpoint(lease, checkpoint, childShardIds)),
    release: (lease) => write(store.release(lease)),
    delete: (lease) => write(store.delete(lease)),
    handOff: handOff === undefined ? undefined : (lease, to) => write(handOff(lease, to))
  }
}
