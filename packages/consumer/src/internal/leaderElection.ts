/**
 * The leader lock's schedule in leader-based assignment (docs/design/leader-assignment.md): the
 * holder refreshes it every `refreshMillis`, every other worker reads it every `readMillis` and
 * takes it once free or seen expired (`LeaderLock.observer`); a graceful stop deletes it so that
 * another worker leads at its next read, without waiting out the duration. Whether this worker
 * leads is judged on its monotonic clock (`LeaderLock.leadership`). The lock only decides who
 * assigns: every assignment write is conditional on the lease counter the leader read, so two
 * leaders at once would cost refused writes, never two processors of one shard.
 *
 * @internal
 */
import { Duration, Effect, Random } from "effect"
import type { LeaderLock, LeaderLockStore, LeaseConflict, LeaseStoreError } from "../LeaseRepository.ts"
import * as Lock from "./leaderLock.ts"
import { monotonicMillis } from "./monotonicMillis.ts"

/** @internal */
export interface Options {
  readonly workerId: string
  readonly locks: LeaderLockStore
  /** The `leaseDuration` written in the lock. */
  readonly durationMillis: number
  /** How often the holder refreshes it. */
  readonly refreshMillis: number
  /** How often the others read it. */
  readonly readMillis: number
  /** Runs when this worker has just taken the lock. */
  readonly onElected: Effect.Effect<void>
}

/** @internal */
export interface Election {
  readonly isLeader: (now: number) => boolean
  /** The loop: reads, acquires and refreshes on the schedule; never ends. */
  readonly run: Effect.Effect<never>
  /** Deletes the lock if this worker holds it (a graceful stop). */
  readonly release: Effect.Effect<void>
}

/** @internal */
export const make = (options: Options): Election => {
  const { durationMillis, locks, readMillis, refreshMillis, workerId } = options
  const observer = Lock.observer(workerId)
  const leadership = Lock.leadership(durationMillis, refreshMillis)
  let held: LeaderLock | undefined

  const orUndefined = (self: Effect.Effect<LeaderLock, LeaseConflict | LeaseStoreError>) =>
    self.pipe(
      Effect.map((lock): LeaderLock | undefined => lock),
      Effect.catchTag("LeaseConflict", () => Effect.succeed(undefined))
    )

  // One step; returns how long to wait before the next.
  const step = Effect.gen(function*() {
    if (held !== undefined) {
      const sentAt = yield* monotonicMillis
      const refreshed = yield* orUndefined(locks.refresh(held))
      if (refreshed === undefined) {
        held = undefined
        leadership.lost()
        yield* Effect.logInfo("leader lock lost: another worker holds it")
        return readMillis
      }
      held = refreshed
      leadership.refreshed(sentAt)
      return refreshMillis
    }
    const lock = yield* locks.read
    const seen = observer.observe(lock, yield* monotonicMillis)
    if (seen._tag === "held") return readMillis
    const sentAt = yield* monotonicMillis
    // Over the lock read (released, expired, or ours from an earlier run), else where there is none.
    const acquired = yield* orUndefined(locks.acquire(workerId, durationMillis, lock))
    if (acquired === undefined) return readMillis
    held = acquired
    leadership.refreshed(sentAt)
    yield* Effect.annotateLogs(
      Effect.logInfo("leader lock taken: this worker assigns the leases"),
      seen._tag === "expired" ? { previousLeader: seen.lock.owner } : {}
    )
    yield* options.onElected
    return refreshMillis
  }).pipe(
    // A store error: leadership lapses on its own (no successful refresh); try again soon.
    Effect.catch((error) =>
      Effect.as(Effect.logWarning(`leader lock: ${error.message}`), Math.min(refreshMillis, readMillis))
    )
  )

  const run = Effect.gen(function*() {
    const wait = yield* step
    // Jittered, so that the workers' reads spread out.
    const jitter = held === undefined ? 0.9 + 0.2 * (yield* Random.next) : 1
    yield* Effect.sleep(Duration.millis(wait * jitter))
  }).pipe(Effect.forever)

  const release = Effect.suspend(() => {
    const lock = held
    held = undefined
    leadership.lost()
    return lock === undefined ? Effect.void : Effect.andThen(
      Effect.ignore(locks.release(lock)),
      Effect.logInfo("leader lock released")
    )
  })

  return { isLeader: (now) => held !== undefined && leadership.isLeader(now), run, release }
}
