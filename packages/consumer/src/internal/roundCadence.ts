/**
 * When a take round reads the whole lease table. A scan costs read capacity in proportion to the
 * table, and every worker scans: at 500 ms per worker, 20 workers on 1,000 leases read the table
 * 2,400 times a minute. So the table is read when there is something to find: at once after a
 * round that found work in motion (leases taken or lost to a race, orphans), on request (a shard
 * ended: its children wait), when a lease whose counter stood still at the last look would expire
 * (so a dead worker's leases are taken over one expiry after a worker first saw them stand still,
 * as before), and otherwise at a pace that spends about one read unit (4 KB, some 16 leases) per
 * scan interval: every scan interval on a small table (a lease released at a shutdown is taken
 * within it, as before), up to once per take interval on a large one, jittered so that the
 * workers' scans spread out.
 * What the scan found between times comes cheaper: a hand-off asked of this worker or a lease
 * taken from it, from its renewal's refused write; a hand-off toward it, by reading those leases
 * alone.
 *
 * @internal
 */

/** The shortest time between two scheduled full rounds, as a share of the take interval. @internal */
export const MIN_SHARE = 0.8

/** Leases in one 4 KB read unit, about. */
const LEASES_PER_READ_UNIT = 16

/** @internal */
export interface RoundCadence {
  /** Whether this round reads the whole table. */
  readonly due: (now: number) => boolean
  /** The next round reads the whole table. */
  readonly wake: () => void
  /**
   * A full round ended, having read `leases`; `busy` when it found work in motion, `followUpAt`
   * when a lease standing still would expire. `random` in [0, 1) for the jitter.
   */
  readonly done: (now: number, leases: number, busy: boolean, followUpAt: number, random: number) => void
}

/** @internal */
export const make = (scanMillis: number, takeMillis: number): RoundCadence => {
  let woken = true
  let nextAt = 0
  return {
    due: (now) => woken || now >= nextAt,
    wake: () => {
      woken = true
    },
    done: (now, leases, busy, followUpAt, random) => {
      woken = busy
      const interval = Math.min(takeMillis, scanMillis * Math.ceil(Math.max(leases, 1) / LEASES_PER_READ_UNIT))
      nextAt = Math.min(now + interval * (MIN_SHARE + 2 * (1 - MIN_SHARE) * random), followUpAt)
    }
  }
}
