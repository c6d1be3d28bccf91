import type { Entry } from "./entry.ts"
import type { ShardState } from "./shardState.ts"

/**
 * A partition key with records out (claimed for a Kinesis record that is not answered yet) or
 * waiting behind such records. A key with neither is idle: its state is kept for its next record
 * for a while (see `IDLE_LIMIT`), and counts as no state.
 */
export class KeyState {
  readonly partitionKey: string
  /** The Kinesis record (its token, see `KeyOrder`) carrying the key's records now out; 0 when none. */
  out: number
  /**
   * The key's records that wait, in the order they were offered: records sent back by a failed
   * attempt first, then those that came up while the key was out. All older than any record of
   * the key still in a shard's fresh queue.
   */
  waiting: Array<Entry> = []
  /** Records of the key the answer being handled sends back, in order (see `KeyOrder.returnEntry`). */
  returned: Array<Entry> | undefined = undefined
  /** The shard whose `ready` list holds it, if any. */
  readyIn: ShardState | undefined = undefined
  /** False once forgotten: a route that still remembers it (see `KeyOrder.stateOf`) must look again. */
  live = true
  /**
   * Nothing out, nothing waiting: kept (see `KeyOrder.forget`) only so that the key's next record
   * finds it, and counts as no state.
   */
  idle = false
  constructor(partitionKey: string, out: number) {
    this.partitionKey = partitionKey
    this.out = out
  }
}

/**
 * Idle key states kept before they are swept out of the map. Where keys repeat, a state is
 * reused by the key's next record instead of being made and dropped (with a map write each) for
 * every record; where they rarely repeat (random ids), a sweep now and then bounds the memory.
 */
const IDLE_LIMIT = 16_384

/**
 * Per-key order (setting `ordering: "byPartitionKey"`). Kinesis refuses records one by one, even
 * within one request, so a later record of a key could be stored while an earlier one is refused
 * and retried after it. So at most one Kinesis record carrying a key is out at a time: a plain
 * record, or one aggregate (stored or refused whole) holding any number of the key's records in
 * order. Each Kinesis record the engine builds gets a token; a record whose key is out under
 * another token is parked behind the key's earlier records, and when the answer comes the key's
 * records to retry go first, then the parked ones. Other keys keep flowing, and a hot key rides in
 * aggregates, or one record per round trip without aggregation. (An aggregating engine mostly
 * spares this: a shard's next aggregate waits for the answer, see `Engine.waitsForAnswer`.)
 */
export class KeyOrder {
  private readonly keys = new Map<string, KeyState>()
  /** No waiting record was accepted before this (a lower bound, exact after `expire`). */
  private oldest = Number.POSITIVE_INFINITY
  private readonly route: (entry: Entry) => ShardState
  /** The state `park` found for the record it was last asked about, for `take` to use. */
  private found: KeyState | undefined = undefined
  /** States in `keys` that are idle. */
  private idleCount = 0

  constructor(route: (entry: Entry) => ShardState) {
    this.route = route
  }

  /**
   * The state of `entry`'s key. Records of one key share their route (see `PartitionKeyHashes`),
   * which remembers the state last found: two field reads instead of a map lookup per record
   * for each of `park`, `take` and `release`, where keys repeat.
   */
  private stateOf(entry: Entry): KeyState | undefined {
    const route = entry.hashKey
    const known = route.keyState
    if (known !== undefined && known.live && known.partitionKey === entry.partitionKey) return known
    const state = this.keys.get(entry.partitionKey)
    if (state !== undefined) route.keyState = state
    return state
  }

  private create(entry: Entry, out: number): KeyState {
    const state = new KeyState(entry.partitionKey, out)
    this.keys.set(entry.partitionKey, state)
    entry.hashKey.keyState = state
    return state
  }

  /** The key has nothing out and nothing waiting: its state is kept idle, until a sweep. */
  private forget(state: KeyState): void {
    if (state.idle) return
    state.idle = true
    if (++this.idleCount > IDLE_LIMIT) this.sweep()
  }

  /** An idle state in use again. */
  private wake(state: KeyState): void {
    state.idle = false
    this.idleCount--
  }

  private sweep(): void {
    for (const [key, state] of this.keys) {
      if (state.idle) {
        state.live = false
        this.keys.delete(key)
      }
    }
    this.idleCount = 0
  }

  /** Keys with state, idle ones not counted (for tests and leak checks). */
  get size(): number {
    return this.keys.size - this.idleCount
  }

  /**
   * Whether `entry`, just returned by `shard.peek`, must wait: its key is out under another token
   * or has earlier records waiting. Then it is taken from the shard's queue and parked (it stays
   * pending), and the caller peeks again.
   */
  park(shard: ShardState, entry: Entry, token: number): boolean {
    if (shard.peekedKey !== undefined) return false
    const state = this.stateOf(entry)
    this.found = state
    // An idle state (nothing out, nothing waiting) counts as none.
    if (state === undefined || ((state.out === token || state.out === 0) && state.waiting.length === 0)) return false
    shard.take(entry)
    state.waiting.push(entry)
    if (entry.enqueuedAt < this.oldest) this.oldest = entry.enqueuedAt
    return true
  }

  /**
   * Takes `entry` (just peeked, and not parked by `park`, which was called on it last) into the
   * Kinesis record `token`. A key that this claims for `token` is added to `claims`, when given:
   * the keys an aggregate holds, released once each when it is answered (see `releaseKey`).
   */
  take(shard: ShardState, entry: Entry, token: number, claims?: Array<KeyState>): void {
    const state = shard.peekedKey
    if (state !== undefined) {
      state.waiting.shift()
      if (state.out !== token) {
        state.out = token
        claims?.push(state)
      }
      // It stays ready while its next records may join the same aggregate.
      const next = state.waiting[0]
      if (next === undefined || this.route(next) !== shard) this.unready(state)
      return
    }
    shard.take(entry)
    // `park` just found no state, an idle one, or the key out under this token.
    const found = this.found
    if (found === undefined) {
      const created = this.create(entry, token)
      claims?.push(created)
    } else if (found.out === 0) {
      this.wake(found)
      found.out = token
      claims?.push(found)
    }
  }

  /** `entry`, out, is to be sent again: it goes before the key's later records. */
  returnEntry(entry: Entry): void {
    const state = this.stateOf(entry)!
    ;(state.returned ??= []).push(entry)
  }

  /**
   * Records of a key still out go back in front of its waiting ones, without an attempt (see
   * `Engine.isolate`); `entries` are in order and all of one key.
   */
  putBack(entries: ReadonlyArray<Entry>): void {
    const state = this.keys.get(entries[0]!.partitionKey)!
    state.waiting = entries.concat(state.waiting)
    if (entries[0]!.enqueuedAt < this.oldest) this.oldest = entries[0]!.enqueuedAt
  }

  /**
   * The Kinesis record carrying `entry` was answered (or given up): its key is no longer out.
   * Called for every record of it; all but the first call for one key do nothing.
   */
  release(entry: Entry): void {
    const state = this.stateOf(entry)
    if (state !== undefined) this.releaseKey(state)
  }

  /**
   * The Kinesis record carrying the key of `state` (one of the `claims` of `take`) was answered:
   * `release` for each of its records, done once for the key.
   */
  releaseKey(state: KeyState): void {
    if (!state.live || state.out === 0) return
    state.out = 0
    const returned = state.returned
    if (returned !== undefined) {
      state.returned = undefined
      state.waiting = state.waiting.length === 0 ? returned : returned.concat(state.waiting)
      if (returned[0]!.enqueuedAt < this.oldest) this.oldest = returned[0]!.enqueuedAt
    }
    this.place(state)
  }

  /**
   * A record routed anew after resharding, not yet sent: it waits behind its key's records (it is
   * older than any of them still in a shard's fresh queue).
   */
  adopt(entry: Entry): void {
    let state = this.stateOf(entry)
    if (state === undefined) state = this.create(entry, 0)
    else if (state.idle) this.wake(state)
    state.waiting.push(entry)
    if (entry.enqueuedAt < this.oldest) this.oldest = entry.enqueuedAt
    if (state.out === 0) this.place(state)
  }

  /** Puts a key not out in the ready list of its next record's shard, or forgets it. */
  private place(state: KeyState): void {
    const next = state.waiting[0]
    if (next === undefined) {
      this.unready(state)
      if (state.out === 0) this.forget(state)
      return
    }
    const shard = this.route(next)
    if (state.readyIn === shard) return
    this.unready(state)
    shard.ready.push(state)
    state.readyIn = shard
  }

  private unready(state: KeyState): void {
    const shard = state.readyIn
    if (shard === undefined) return
    state.readyIn = undefined
    const ready = shard.ready
    if (ready[0] === state) ready.shift()
    else {
      const i = ready.indexOf(state)
      if (i >= 0) ready.splice(i, 1)
    }
  }

  /** The shards' ready lists are gone (resharding): every ready key finds its shard again. */
  replace(states: ReadonlyArray<KeyState>): void {
    for (const state of states) {
      state.readyIn = undefined
      this.place(state)
    }
  }

  /** Earliest acceptance time of a waiting record (a lower bound). */
  get oldestWaiting(): number {
    return this.oldest
  }

  /** Removes and returns the waiting records accepted at or before `acceptedBy`. */
  expire(acceptedBy: number): Array<Entry> | undefined {
    if (this.oldest > acceptedBy) return undefined
    let expired: Array<Entry> | undefined
    let oldest = Number.POSITIVE_INFINITY
    for (const state of this.keys.values()) {
      const waiting = state.waiting
      let n = 0
      // In offer order, so by acceptance time: only a prefix can be due.
      while (n < waiting.length && waiting[n]!.enqueuedAt <= acceptedBy) n++
      if (n > 0) {
        const gone = waiting.splice(0, n)
        if (expired === undefined) expired = gone
        else for (const entry of gone) expired.push(entry)
        if (state.out === 0) this.place(state)
      }
      if (waiting.length > 0 && waiting[0]!.enqueuedAt < oldest) oldest = waiting[0]!.enqueuedAt
    }
    this.oldest = oldest
    return expired
  }

  /** Removes and returns every waiting record and forgets every key (at close). */
  drain(): Array<Entry> {
    const all: Array<Entry> = []
    for (const state of this.keys.values()) {
      for (const entry of state.waiting) all.push(entry)
      this.unready(state)
      state.live = false
      state.waiting = []
    }
    this.keys.clear()
    this.idleCount = 0
    this.oldest = Number.POSITIVE_INFINITY
    return all
  }
}
