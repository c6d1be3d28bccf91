/**
 * When the leader lock may be taken, and when its holder must stop acting as leader (leader-based
 * assignment, see docs/design/leader-assignment.md). Counter-based like leases and like the KCL's
 * lock client: no wall clock crosses machines. An observer starts timing a `recordVersionNumber`
 * when a read that returned it completed; the holder times its leadership from when it sent the
 * last refresh that succeeded. The write a read returns landed before the read completed, and
 * after its refresh was sent: so an observer's wait starts after the holder's, and the holder,
 * which stops one refresh interval early, has stopped before any observer may take the lock.
 *
 * @internal
 */

/** The lock item as read (KCL `LeaderLock` through the DynamoDB lock client). @internal */
export interface LockView {
  readonly owner: string
  readonly recordVersionNumber: string
  readonly leaseDurationMillis: number
  /** `isReleased` = "1": given up without being deleted. */
  readonly released: boolean
}

/**
 * What an observer may do: `free` (absent or released: acquire if absent or still released),
 * `expired` (acquire, conditional on the number it stood still at), `held` (wait), `mine`.
 *
 * @internal
 */
export type Observation =
  | { readonly _tag: "free" }
  | { readonly _tag: "held"; readonly owner: string }
  | { readonly _tag: "expired"; readonly lock: LockView }
  | { readonly _tag: "mine" }

/** @internal */
export const observer = (self: string) => {
  let seen: { readonly recordVersionNumber: string; readonly since: number } | undefined
  return {
    /** A read of the lock that completed at `completedAt` (monotonic, this worker's clock). */
    observe: (lock: LockView | undefined, completedAt: number): Observation => {
      if (lock === undefined || lock.released) {
        seen = undefined
        return { _tag: "free" }
      }
      if (lock.owner === self) {
        seen = undefined
        return { _tag: "mine" }
      }
      if (seen === undefined || seen.recordVersionNumber !== lock.recordVersionNumber) {
        seen = { recordVersionNumber: lock.recordVersionNumber, since: completedAt }
      }
      // The item's own duration: a KCL leader's 120 s is honoured.
      return completedAt - seen.since >= lock.leaseDurationMillis
        ? { _tag: "expired", lock }
        : { _tag: "held", owner: lock.owner }
    }
  }
}

/**
 * The holder's side: leader while its last successful refresh (or acquire) was sent less than
 * `durationMillis - refreshMillis` ago.
 *
 * @internal
 */
export const leadership = (durationMillis: number, refreshMillis: number) => {
  let sentAt = Number.NEGATIVE_INFINITY
  return {
    /** A refresh or acquire sent at `at` succeeded. */
    refreshed: (at: number): void => {
      sentAt = Math.max(sentAt, at)
    },
    lost: (): void => {
      sentAt = Number.NEGATIVE_INFINITY
    },
    isLeader: (now: number): boolean => now - sentAt < durationMillis - refreshMillis
  }
}
