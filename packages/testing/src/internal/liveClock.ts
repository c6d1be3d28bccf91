/**
 * Runs an effect on the real clock. Fixtures poll emulators that run in real time, but tests built with
 * `@effect/vitest` provide a `TestClock` that nobody advances while a fixture waits.
 *
 * @internal
 */
import { Clock, Effect } from "effect"

const liveClock = Clock.Clock.defaultValue()

/** @internal */
export const withLiveClock = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.provideService(self, Clock.Clock, liveClock)
