/**
 * A clock ahead of the real one, to age records without waiting.
 */
import { Clock, Effect } from "effect"

/**
 * The live clock, `offset()` milliseconds ahead in wall time only: sleeps and the monotonic time
 * (lease timing) are the real ones.
 */
export const shiftedClock = (offset: () => number): Effect.Effect<Clock.Clock> =>
  Clock.clockWith((live) =>
    Effect.succeed({
      currentTimeMillisUnsafe: () => live.currentTimeMillisUnsafe() + offset(),
      currentTimeMillis: Effect.sync(() => live.currentTimeMillisUnsafe() + offset()),
      currentTimeNanosUnsafe: () => live.currentTimeNanosUnsafe() + BigInt(offset()) * 1_000_000n,
      currentTimeNanos: Effect.sync(() => live.currentTimeNanosUnsafe() + BigInt(offset()) * 1_000_000n),
      monotonicTimeNanosUnsafe: () => live.monotonicTimeNanosUnsafe(),
      monotonicTimeNanos: Effect.sync(() => live.monotonicTimeNanosUnsafe()),
      sleep: (duration) => live.sleep(duration)
    })
  )
