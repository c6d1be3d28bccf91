/**
 * Token buckets for the fault proxy's per-shard write limits.
 *
 * @internal
 */

/**
 * Kinesis-style shard budget: `rate` per second, holding at most one second's worth.
 *
 * @internal
 */
export class Bucket {
  #tokens: number
  #at: number
  constructor(rate: number, now: number) {
    this.#tokens = rate
    this.#at = now
  }
  available(rate: number, now: number): number {
    this.#tokens = Math.min(rate, this.#tokens + ((now - this.#at) / 1000) * rate)
    this.#at = now
    return this.#tokens
  }
  take(amount: number): void {
    this.#tokens -= amount
  }
}

/** @internal */
export interface ShardBudget {
  readonly records: Bucket
  readonly bytes: Bucket
}
