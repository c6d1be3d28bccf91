/**
 * What every example runs on: the embedded kinesis-mock, unless `KINESIS_ENDPOINT` points at
 * another Kinesis (then the client is configured from the environment, see `Client.layerConfig`).
 * Nothing else in an example depends on which.
 */
import { AdminClient, Client } from "@effect-kinesis/core"
import { type Emulator, KinesisEmulator } from "@effect-kinesis/testing"
import { type Config, Effect, Layer } from "effect"

/** Core's `Client` and `AdminClient`, on the emulator or the configured endpoint. */
export const KinesisLive: Layer.Layer<
  Client.Client | AdminClient.AdminClient,
  Config.ConfigError | Emulator.EmulatorStartError
> = process.env.KINESIS_ENDPOINT !== undefined
  ? AdminClient.layer.pipe(Layer.provideMerge(Client.layerConfig))
  : KinesisEmulator.layerClient.pipe(Layer.provide(KinesisEmulator.layer()))

/** Runs an example's program; the process exits 0 when it succeeds and 1 (printing why) when not. */
export const run = <A, E>(program: Effect.Effect<A, E>): void => {
  Effect.runPromise(program).then(
    () => process.exit(0),
    (error) => {
      console.error(error)
      process.exit(1)
    }
  )
}
