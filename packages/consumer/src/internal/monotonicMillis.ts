/**
 * Milliseconds on Effect's monotonic clock: lease and lock timing is judged on it, never on the
 * wall clock, which may jump.
 *
 * @internal
 */
import { Clock, Effect } from "effect"

/** @internal */
export const monotonicMillis = Effect.map(Clock.monotonicTimeNanos, (nanos) => Number(nanos / 1_000_000n))
