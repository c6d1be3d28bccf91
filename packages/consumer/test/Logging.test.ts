import { LeaseRepository } from "@effect-kinesis/consumer"
import { Serde } from "@effect-kinesis/core"
import { ConsumerWorker, StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Logger, References } from "effect"
import { eventually, fastLeases, KinesisLive, put, startWorker } from "./fixtures.ts"

interface Line {
  readonly level: string
  readonly message: string
  readonly fields: Record<string, unknown>
}

/** A logger keeping every line at Info and above, with its annotations, instead of printing it. */
const collecting = () => {
  const lines: Array<Line> = []
  const logger = Logger.make(({ fiber, logLevel, message }) => {
    lines.push({
      level: logLevel,
      message: (Array.isArray(message) ? message : [message]).map(String).join(" "),
      fields: { ...fiber.getRef(References.CurrentLogAnnotations) }
    })
  })
  return { lines, layer: Logger.layer([logger]) }
}

const SECRET = "SECRET-PAYLOAD-4711"

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("Logging", (it) => {
  describe("what a person reads", () => {
    it.effect("lease takes, a hand-off, losses and releases are logged at info with shard, worker and counts; nothing per poll", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const repository = yield* LeaseRepository.makeMemory()
        const { layer: loggerLayer, lines } = collecting()
        const first = yield* startWorker({ stream: streamName, workerId: "w1", repository }).pipe(
          Effect.provide(loggerLayer)
        )
        yield* eventually(Effect.sync(() => first.held().size === 2), "20 seconds", "w1 holding both shards")
        const second = yield* startWorker({ stream: streamName, workerId: "w2", repository }).pipe(
          Effect.provide(loggerLayer)
        )
        yield* eventually(
          Effect.sync(() => first.held().size === 1 && second.held().size === 1),
          "20 seconds",
          "one shard each"
        )
        // Idle polling for a while: no info line comes from it.
        const before = lines.length
        yield* Effect.sleep("1500 millis")
        const idle = lines.slice(before).filter((l) => l.level === "Info")
        expect(idle.map((l) => l.message)).toEqual([])
        yield* second.stop
        yield* first.stop

        const info = (message: string, workerId: string) =>
          lines.filter((l) => l.level === "Info" && l.message === message && l.fields.workerId === workerId)
        const taken = info("lease taken", "w1")
        expect(taken.map((l) => l.fields.shardId).sort()).toEqual(["shardId-000000000000", "shardId-000000000001"])
        for (const line of taken) {
          expect(line.fields).toMatchObject({ applicationName: "test", stream: streamName, leaseCounter: 1 })
          expect(typeof line.fields.heldLeases).toBe("number")
        }
        // The lease moved for balance is handed over: w1 checkpoints and lets go, w2 takes it then.
        const moved = info("lease taken after its previous owner handed it over", "w2")
        expect(moved).toHaveLength(1)
        expect(moved[0]!.fields.previousOwner).toBe("w1")
        const handedOver = info("lease handed over", "w1")
        expect(handedOver.map((l) => [l.fields.shardId, l.fields.nextOwner])).toEqual([[
          moved[0]!.fields.shardId,
          "w2"
        ]])
        expect(typeof handedOver[0]!.fields.checkpoint).toBe("string")
        expect(info("lease lost: taken by another worker", "w1")).toEqual([])
        expect(info("worker joined", "w2").map((l) => l.fields.otherWorkerId)).toEqual(["w1"])
        const released = [...info("lease released", "w1"), ...info("lease released", "w2")]
        expect(released).toHaveLength(2)
        for (const line of released) expect(typeof line.fields.checkpoint).toBe("string")
      }))

    it.effect("a record that cannot be decoded is logged without its data (the deserializer's message may quote it)", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const repository = yield* LeaseRepository.makeMemory()
        const { layer: loggerLayer, lines } = collecting()
        // A deserializer whose errors quote the data, as hand-written ones often do.
        const json = Serde.makeSync<{ readonly n: number }>({
          serialize: (value) => new TextEncoder().encode(JSON.stringify(value)),
          deserialize: (bytes) => {
            const text = new TextDecoder().decode(bytes)
            const value = JSON.parse(text)
            if (typeof value?.n !== "number") throw new Error(`not an order: ${text}`)
            return value
          }
        })
        yield* put(streamName, [
          { partitionKey: "a", data: JSON.stringify({ n: 1 }) },
          { partitionKey: "a", data: `{"secret": "${SECRET}"}` },
          { partitionKey: "a", data: JSON.stringify({ n: SECRET }) },
          { partitionKey: "a", data: JSON.stringify({ n: 2 }) }
        ])
        const worker = yield* ConsumerWorker.start({
          stream: streamName,
          applicationName: "test",
          workerId: "w",
          deserializer: json,
          lease: fastLeases,
          fetch: { pollInterval: "100 millis" },
          leases: Layer.succeed(LeaseRepository.LeaseRepository, repository)
        }).pipe(Effect.provide(loggerLayer))
        yield* eventually(Effect.sync(() => worker.seen.length >= 2), "20 seconds", "the two good records")
        yield* worker.stop
        const skipped = lines.filter((l) => l.message.startsWith("skipping a record"))
        expect(skipped).toHaveLength(2)
        expect(skipped.every((l) => l.level === "Warn" && l.fields.shardId === "shardId-000000000000")).toBe(true)
        for (const line of lines) {
          expect(line.message).not.toContain(SECRET)
          expect(JSON.stringify(line.fields)).not.toContain(SECRET)
        }
      }))
  })
})
