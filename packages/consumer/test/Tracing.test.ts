import { LeaseRepository } from "@effect-kinesis/consumer"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Option, Tracer } from "effect"
import { eventually, KinesisLive, put, startWorker } from "./fixtures.ts"

/** A tracer that keeps every span it makes, provided as a layer as an exporter's would be. */
const collecting = () => {
  const spans: Array<Tracer.NativeSpan> = []
  const tracer = Tracer.make({
    span: (options) => {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  return { spans, layer: Layer.succeed(Tracer.Tracer, tracer) }
}

const ancestors = (span: Tracer.AnySpan): Array<string> => {
  const names: Array<string> = []
  let current: Option.Option<Tracer.AnySpan> = span._tag === "Span" ? span.parent : Option.none()
  while (Option.isSome(current)) {
    const parent = current.value
    if (parent._tag !== "Span") break
    names.push(parent.name)
    current = parent.parent
  }
  return names
}

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("Tracing", (it) => {
  describe("spans of a consumer", () => {
    it.effect("a fetched batch, the handler per batch, checkpoints and lease take/renew/release, with stream, shard and sequence attributes, under the caller's span", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const repository = yield* LeaseRepository.makeMemory()
        const records = Array.from({ length: 20 }, (_, i) => ({ partitionKey: `key-${i % 8}`, data: `t${i}` }))
        yield* put(streamName, records)
        const { layer: tracerLayer, spans } = collecting()
        const worker = yield* startWorker({ stream: streamName, workerId: "w", repository }).pipe(
          Effect.withSpan("app"),
          Effect.provide(tracerLayer)
        )
        yield* eventually(Effect.sync(() => worker.seen.length >= 20), "30 seconds", "20 records")
        // A renewal round (500 ms) and a checkpoint interval (200 ms).
        yield* Effect.sleep("800 millis")
        yield* worker.stop

        const named = (name: string) => spans.filter((s) => s.name === name)
        const attr = (span: Tracer.NativeSpan, key: string) => span.attributes.get(key)
        const app = named("app")[0]!
        const consumerSpans = spans.filter((s) => s.name.startsWith("kinesis."))
        // Every consumer span belongs to the caller's trace and descends from its span.
        for (const span of consumerSpans) {
          expect(span.traceId).toBe(app.traceId)
          expect(ancestors(span), span.name).toContain("app")
        }

        const shardIds = new Set(worker.seen.map((r) => r.shardId))
        // Fetched batches: stream, shard, Kinesis records and their first/last sequence numbers.
        const batches = named("kinesis.consumer.batch")
        expect(new Set(batches.map((s) => attr(s, "kinesis.shard_id")))).toEqual(shardIds)
        expect(batches.every((s) => attr(s, "kinesis.stream") === streamName)).toBe(true)
        const withRecords = batches.filter((s) => (attr(s, "kinesis.records") as number) > 0)
        expect(withRecords.reduce((n, s) => n + (attr(s, "kinesis.records") as number), 0)).toBe(20)
        for (const shardId of shardIds) {
          const ofShard = worker.seen.filter((r) => r.shardId === shardId)
          const batch = withRecords.find((s) => attr(s, "kinesis.shard_id") === shardId)!
          expect(attr(batch, "kinesis.first_sequence_number")).toBe(ofShard[0]!.sequenceNumber)
          expect(attr(batch, "kinesis.last_sequence_number")).toBe(ofShard.at(-1)!.sequenceNumber)
          expect(typeof attr(batch, "kinesis.millis_behind_latest")).toBe("number")
          expect(attr(batch, "kinesis.user_records")).toBe(ofShard.length)
        }
        // The handler: one span per batch handed to it, covering every record.
        const processed = named("kinesis.consumer.process")
        expect(processed.reduce((n, s) => n + (attr(s, "kinesis.user_records") as number), 0)).toBe(20)
        expect(processed.every((s) => s.status._tag === "Ended")).toBe(true)
        // Checkpoints: the last one of each shard names its last record.
        const checkpoints = named("kinesis.consumer.checkpoint")
        for (const shardId of shardIds) {
          const last = checkpoints.filter((s) => attr(s, "kinesis.shard_id") === shardId).at(-1)!
          expect(attr(last, "kinesis.sequence_number")).toBe(
            worker.seen.filter((r) => r.shardId === shardId).at(-1)!.sequenceNumber
          )
          expect(attr(last, "kinesis.stream")).toBe(streamName)
        }
        // Leases: taken, renewed and released, each with shard, owner and counter.
        const takes = named("kinesis.lease.take")
        expect(new Set(takes.map((s) => attr(s, "kinesis.shard_id")))).toEqual(
          new Set(["shardId-000000000000", "shardId-000000000001"])
        )
        for (const take of takes) {
          expect(attr(take, "kinesis.lease.owner")).toBe("w")
          expect(attr(take, "kinesis.lease.taken")).toBe(true)
          expect(attr(take, "kinesis.lease.how")).toBe("free")
          expect(typeof attr(take, "kinesis.lease.counter")).toBe("number")
        }
        expect(named("kinesis.lease.renew").length).toBeGreaterThan(0)
        expect(new Set(named("kinesis.lease.release").map((s) => attr(s, "kinesis.shard_id")))).toEqual(
          new Set(["shardId-000000000000", "shardId-000000000001"])
        )
      }))
  })
})
