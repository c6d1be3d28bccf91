/**
 * What every benchmark shares: the median of its runs, the embedded kinesis-mock with a client
 * on it, and its results file (bench/results/<name>.json) stamped with the date and the machine.
 */
import { Client } from "@effect-kinesis/core"
import { KinesisEmulator } from "@effect-kinesis/testing"
import { Effect, Layer } from "effect"
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus } from "node:os"
import { join } from "node:path"

/** The middle value (the upper one of an even count). */
export const median = (values: ReadonlyArray<number>): number =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

/** A `Client` on the embedded kinesis-mock, started for the life of the layer. */
export const KinesisLive = Layer.unwrap(
  Effect.map(Effect.service(KinesisEmulator.KinesisEmulator), (emulator) => Client.layer(emulator.clientConfig))
).pipe(Layer.provideMerge(KinesisEmulator.layer()))

/** Writes bench/results/`name`.json: the date, the machine, then `results`' own fields. */
export const write = (name: string, results: Record<string, unknown>): void => {
  const dir = join(import.meta.dirname, "results")
  mkdirSync(dir, { recursive: true })
  const environment = { node: process.version, cpu: cpus()[0]?.model ?? "unknown", cores: cpus().length }
  writeFileSync(
    join(dir, `${name}.json`),
    JSON.stringify({ date: new Date().toISOString(), environment, ...results }, null, 2) + "\n"
  )
}
