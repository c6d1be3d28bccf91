/**
 * The enhanced fan-out stream consumer of an application: registered once and shared by all of
 * its workers (one per worker would cost a consumer-shard-hour each and soon reach the limit of
 * 20 consumers per stream).
 *
 * @internal
 */
import type { ConsumerDescription } from "@aws-sdk/client-kinesis"
import type { Client, KinesisError } from "@effect-kinesis/core"
import { Duration, Effect, Schedule, type Scope } from "effect"
import type { Settings } from "../EnhancedFanOut.ts"

/** @internal */
export interface RegistrationSettings {
  /** Wait between `DescribeStreamConsumer` calls while the consumer is CREATING or DELETING. */
  readonly pollInterval: Duration.Duration
}

/** @internal */
export const resolveSettings = (
  settings: Settings = {}
): RegistrationSettings & { readonly deregisterOnShutdown: boolean } => ({
  pollInterval: Duration.fromInputUnsafe(settings.registrationPollInterval ?? "500 millis"),
  deregisterOnShutdown: settings.deregisterOnShutdown ?? false
})

type Step =
  | { readonly _tag: "Active"; readonly consumer: ConsumerDescription }
  | { readonly _tag: "Wait" }
  | { readonly _tag: "Register" }

/**
 * Returns the stream consumer `consumerName` once it is ACTIVE, registering it when it does not
 * exist. Safe to run from many workers at once: a registration lost to another worker's
 * (`ResourceInUse`) just means the consumer exists; a consumer still DELETING (an earlier
 * deployment deregistered it) is waited out and registered again.
 *
 * @internal
 */
export const ensureActive = (
  client: Client.Client["Service"],
  stream: Client.StreamId,
  consumerName: string,
  settings: RegistrationSettings
): Effect.Effect<ConsumerDescription, KinesisError.KinesisError> => {
  // Control-plane calls are limited to a few per second per stream (account-wide for
  // DescribeStreamSummary): many workers starting together are throttled, and waiting is the cure.
  const retryThrottled = <A>(call: Effect.Effect<A, KinesisError.KinesisError>) =>
    Effect.retry(call, { while: (error) => error.retryable, schedule: throttledBackoff(settings.pollInterval) })

  const step = (streamArn: string): Effect.Effect<Step, KinesisError.KinesisError> =>
    client.describeStreamConsumer({ stream: streamArn, consumerName }).pipe(
      Effect.map((consumer): Step =>
        consumer.ConsumerStatus === "ACTIVE" ? { _tag: "Active", consumer } : { _tag: "Wait" }
      ),
      // Not found: the consumer (or the stream; registering then says which) does not exist.
      Effect.catchTag("StreamNotFound", () =>
        client.registerStreamConsumer(streamArn, consumerName).pipe(
          Effect.as<Step>({ _tag: "Wait" }),
          // Another worker registered it first, or it is still being deleted.
          Effect.catchTag("ResourceInUse", () => Effect.succeed<Step>({ _tag: "Wait" }))
        ))
    ).pipe(retryThrottled)

  return Effect.gen(function*() {
    // Once, so that each look costs one call.
    const streamArn = yield* retryThrottled(client.streamArn(stream))
    while (true) {
      const next = yield* step(streamArn)
      if (next._tag === "Active") return next.consumer
      yield* Effect.sleep(settings.pollInterval)
    }
  })
}

const throttledBackoff = (base: Duration.Duration) =>
  Schedule.exponential(Duration.max(base, Duration.millis(100))).pipe(
    Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(10)))),
    Schedule.jittered
  )

/**
 * Deregisters the stream consumer; one that is already gone counts as done.
 *
 * @internal
 */
export const deregister = (
  client: Client.Client["Service"],
  stream: Client.StreamId,
  consumerName: string
): Effect.Effect<void, KinesisError.KinesisError> =>
  client.deregisterStreamConsumer({ stream, consumerName }).pipe(
    Effect.catchTag("StreamNotFound", () => Effect.void)
  )

/**
 * {@link ensureActive} for the life of a scope; with `deregisterOnShutdown`, the consumer is
 * deregistered when the scope closes (its other workers lose their subscriptions then, so this is
 * for the last worker of an application, or an application that is going away).
 *
 * @internal
 */
export const acquire = (
  client: Client.Client["Service"],
  stream: Client.StreamId,
  consumerName: string,
  settings: RegistrationSettings & { readonly deregisterOnShutdown: boolean }
): Effect.Effect<ConsumerDescription, KinesisError.KinesisError, Scope.Scope> =>
  settings.deregisterOnShutdown
    ? Effect.acquireRelease(
      ensureActive(client, stream, consumerName, settings),
      () =>
        deregister(client, stream, consumerName).pipe(
          Effect.catch((error) =>
            Effect.logWarning(`deregistering stream consumer ${consumerName} failed: ${error.message}`)
          )
        )
    )
    : ensureActive(client, stream, consumerName, settings)
