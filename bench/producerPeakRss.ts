/**
 * The peak-RSS scenario of `bench/producer.ts`, in a process of its own (spawned by it) so that
 * earlier scenarios do not inflate it, and importing only what a producing application imports
 * (no emulator, no test fixtures):
 *
 *   node bench/producerPeakRss.ts <producer|raw-sdk> <endpoint> <records>
 *
 * Prints its result as JSON on stdout.
 */
import { Client, Serde } from "@effect-kinesis/core"
import { Producer } from "@effect-kinesis/producer"
import { Effect } from "effect"
import { BATCH, credentials, jsonFromChild, measure, rawSdkLoop, record, STREAM } from "./fakeKinesis.ts"

/** 1M records as fast as possible with the default settings and buffer (`offerAll` of 500). */
const peakRss = async (which: "producer" | "raw-sdk", endpoint: string, total: number) => {
  // What the process holds before the producer exists: Node, the loaded modules, the inputs.
  const baseline = process.memoryUsage().rss
  let peak = baseline
  // Where the memory was at the peak: V8 heap, or buffers outside it.
  let atPeak = process.memoryUsage()
  const sample = () => {
    const usage = process.memoryUsage()
    if (usage.rss > peak) {
      peak = usage.rss
      atPeak = usage
    }
  }
  const sampler = setInterval(sample, 20)
  const failures = { count: 0 }
  const measured = await measure(total, () =>
    which === "raw-sdk"
      ? rawSdkLoop(endpoint, total)
      : Effect.runPromise(
        Effect.scoped(Effect.gen(function*() {
          const producer = yield* Producer.make({
            stream: STREAM,
            serde: Serde.bytes,
            onError: () => Effect.sync(() => failures.count++)
          })
          for (let c = 0; c < total / BATCH; c++) {
            const chunk = []
            for (let i = c * BATCH; i < (c + 1) * BATCH; i++) chunk.push(record(i))
            yield* producer.offerAll(chunk)
          }
        })).pipe(Effect.provide(Client.layer({ endpoint, region: "us-east-1", credentials, httpHandler: "http1" })))
      ))
  clearInterval(sampler)
  sample()
  if (failures.count > 0) throw new Error(`${failures.count} records failed`)
  const mb = (bytes: number) => Math.round(bytes / 1024 / 1024)
  return {
    ...measured,
    peakRssMb: peak / 1024 / 1024,
    baselineRssMb: baseline / 1024 / 1024,
    atPeakMb: {
      heapTotal: mb(atPeak.heapTotal),
      heapUsed: mb(atPeak.heapUsed),
      external: mb(atPeak.external),
      arrayBuffers: mb(atPeak.arrayBuffers)
    }
  }
}

export type PeakRss = Awaited<ReturnType<typeof peakRss>>

/** Runs the scenario in a fresh child process. */
export const peakRssInChild = (which: "producer" | "raw-sdk", endpoint: string, total: number): Promise<PeakRss> =>
  jsonFromChild("producerPeakRss", [which, endpoint, String(total)])

if (import.meta.main) {
  const [which, endpoint, total] = process.argv.slice(2)
  const result = await peakRss(which === "raw-sdk" ? "raw-sdk" : "producer", endpoint!, Number(total))
  process.stdout.write(JSON.stringify(result))
}
