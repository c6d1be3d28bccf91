/** The window a limit per second holds over (ms). */
export const SECOND_MS = 1000

/**
 * One of a shard's hard write limits (its records or its bytes), as Kinesis states them: no
 * second holds more than `perSecond`. A log of what the shard was sent in the last second (a
 * sliding window) says how much more may go now.
 *
 * A token bucket alone does not hold every second to the limit: the tokens it banked before a
 * second (while the shard idled, or while the event loop was busy elsewhere) go on top of the rate
 * within it. The window bounds every one-second window; a longer window of T seconds holds at most
 * `perSecond × ⌈T⌉`. A shard that lagged may still catch up within its second: holding every
 * longer window to the exact rate as well would lose each timer's lateness for good (about a fifth
 * of the rate, measured with the plain producer on the bench's fake server).
 */
export class SecondLimit {
  readonly perSecond: number
  /** Everything counted so far. */
  private sent = 0
  /** Of it, what was counted a second or longer ago. */
  private aged = 0
  /** What the last second was sent, oldest first, as (time, amount) pairs. */
  private log: Array<number> = []
  private head = 0
  /** What may be sent now, as of the last `update` (less what was counted since). */
  room: number

  constructor(perSecond: number) {
    this.perSecond = perSecond
    this.room = perSecond
  }

  /** Ages the log to `now` and sets `room`. */
  update(now: number): void {
    const log = this.log
    let head = this.head
    while (head < log.length && log[head]! <= now - SECOND_MS) {
      this.aged += log[head + 1]!
      head += 2
    }
    if (head === log.length) {
      log.length = 0
      head = 0
    } else if (head > 2048 && head * 2 > log.length) {
      this.log = log.slice(head)
      head = 0
    }
    this.head = head
    this.room = this.perSecond - (this.sent - this.aged)
  }

  /** Counts `amount` sent at `now`. */
  count(amount: number, now: number): void {
    this.sent += amount
    this.room -= amount
    const log = this.log
    const last = log.length - 2
    // One entry per request: a request's records are counted at one `now`.
    if (last >= this.head && log[last] === now) log[last + 1]! += amount
    else log.push(now, amount)
  }

  /**
   * Moves what was counted at `since` or later to `now`: the records of a request held back since
   * then go only now.
   */
  restamp(since: number, now: number): void {
    const log = this.log
    let i = log.length - 2
    if (i < this.head || log[i]! < since) return
    let amount = 0
    for (; i >= this.head && log[i]! >= since; i -= 2) amount += log[i + 1]!
    log.length = i + 2
    log.push(now, amount)
  }

  /**
   * Takes back `amount` counted at `at` (or moved later by `restamp`), if it is still in the log:
   * nothing of a request Kinesis refused as a whole was written.
   */
  refund(amount: number, at: number, now: number): void {
    if (at <= now - SECOND_MS) return
    const log = this.log
    let i = this.head
    while (i < log.length && log[i]! < at) i += 2
    if (i >= log.length) return
    const taken = Math.min(amount, log[i + 1]!)
    log[i + 1]! -= taken
    this.sent -= taken
    this.room += taken
  }

  /** When `room` reaches `need` (a whole second's worth at most) if nothing more is sent. */
  readyAt(need: number, now: number): number {
    const wanted = Math.min(need, this.perSecond)
    const log = this.log
    let inWindow = this.sent - this.aged
    let at = now
    for (let i = this.head; i < log.length && this.perSecond - inWindow < wanted; i += 2) {
      inWindow -= log[i + 1]!
      at = log[i]! + SECOND_MS
    }
    return at
  }
}
