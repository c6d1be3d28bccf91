/**
 * What the metrics benchmarks put in the context: a `MetricsCollector` drained every second, as a
 * publisher does, so that recording and draining are both paid for in the measurement.
 */
import { MetricsCollector } from "@effect-kinesis/core"
import { type Duration, Effect, Fiber, Schedule } from "effect"

/**
 * Runs `self` with a fresh collector drained every second and once at the end; `onDrained` gets
 * the datums of each interval. Dies when nothing at all was recorded, since a benchmark of
 * metrics that recorded none measures nothing.
 */
export const withDrainedCollector = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  onDrained: (datums: number) => void = () => {}
): Effect.Effect<A, E, Exclude<R, MetricsCollector.MetricsCollector>> =>
  Effect.gen(function*() {
    const collector = yield* MetricsCollector.make
    let datums = 0
    const drain = Effect.map(collector.drain, (interval) => {
      datums += interval.datums.length
      onDrained(interval.datums.length)
    })
    // A publisher drains once a minute by default; every second (the default here) costs more.
    const every = process.env["BENCH_DRAIN_EVERY"] ?? "1 second"
    const publisher = yield* drain.pipe(Effect.repeat(Schedule.spaced(every as Duration.Input)), Effect.forkChild)
    const result = yield* Effect.provideService(self, MetricsCollector.MetricsCollector, collector)
    yield* Fiber.interrupt(publisher)
    yield* drain
    if (datums === 0) return yield* Effect.die(new Error("no metric was recorded"))
    return result
  })
