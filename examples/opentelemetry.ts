/**
 * Traces and metrics of a producer and a consumer exported over OTLP/HTTP with Effect's own
 * exporter (`effect/observability`): the library's spans (PutRecords requests, fetched batches,
 * handlers, checkpoints, lease operations) and its KPL/KCL metrics.
 *
 *   node --conditions=@effect-kinesis/source examples/opentelemetry.ts [records=500]
 *
 * Sends to `OTEL_EXPORTER_OTLP_ENDPOINT` (an OpenTelemetry Collector, Jaeger, Honeycomb…) when
 * set; otherwise to a small OTLP receiver started here, which prints what arrived. Exits non-zero
 * when the receiver got no span of the producer or of the consumer.
 */
import { Consumer, LeaseRepository } from "@effect-kinesis/consumer"
import { AdminClient, MetricsCollector, Serde } from "@effect-kinesis/core"
import { Producer } from "@effect-kinesis/producer"
import { Deferred, Effect, Fiber, Layer } from "effect"
import { FetchHttpClient } from "effect/http"
import { Otlp } from "effect/observability"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { KinesisLive, run } from "./live.ts"

const records = Number(process.argv[2] ?? 500)
const stream = `opentelemetry-${Date.now()}`

/** Span and metric names received, by signal. */
interface Received {
  readonly spans: Map<string, number>
  readonly metrics: Set<string>
}

// A stand-in for a collector: accepts OTLP/HTTP JSON and keeps the names it saw.
const receiver = Effect.acquireRelease(
  Effect.callback<{ readonly url: string; readonly received: Received; readonly server: Http.Server }>((resume) => {
    const received: Received = { spans: new Map(), metrics: new Set() }
    const server = Http.createServer((request, response) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      request.on("end", () => {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}")
        for (const resource of body.resourceSpans ?? []) {
          for (const scope of resource.scopeSpans ?? []) {
            for (const span of scope.spans ?? []) {
              received.spans.set(span.name, (received.spans.get(span.name) ?? 0) + 1)
            }
          }
        }
        for (const resource of body.resourceMetrics ?? []) {
          for (const scope of resource.scopeMetrics ?? []) {
            for (const metric of scope.metrics ?? []) received.metrics.add(metric.name)
          }
        }
        response.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        received,
        server
      })))
  }),
  ({ server }) =>
    Effect.callback<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
)

const workload = Effect.gen(function*() {
  yield* (yield* AdminClient.AdminClient).createStream(stream, { shardCount: 2 })
  yield* Effect.scoped(Effect.gen(function*() {
    const producer = yield* Producer.make({ stream, serializer: Serde.string })
    yield* producer.produceChunk(
      Array.from({ length: records }, (_, i) => ({ partitionKey: `device-${i % 50}`, data: `reading ${i}` }))
    )
  })).pipe(Effect.withSpan("produce readings"))

  let seen = 0
  const done = yield* Deferred.make<void>()
  const fiber = yield* Effect.forkChild(
    Consumer.consumeWith(
      () => ++seen === records ? Deferred.succeed(done, undefined) : Effect.void,
      {
        stream,
        applicationName: "opentelemetry-example",
        deserializer: Serde.string,
        fetch: { pollInterval: "200 millis" }
      }
    ).pipe(Effect.provide(Consumer.layer.pipe(Layer.provide(LeaseRepository.layerMemory))))
  )
  yield* Deferred.await(done).pipe(Effect.timeout("60 seconds"))
  yield* Fiber.interrupt(fiber)
  console.log(`produced and consumed ${records} records`)
})

const program = Effect.gen(function*() {
  const configured = process.env.OTEL_EXPORTER_OTLP_ENDPOINT
  const local = configured === undefined ? yield* receiver : undefined
  const baseUrl = configured ?? local!.url

  // The exporter flushes what it holds when its layer closes, so the workload runs inside it.
  yield* workload.pipe(
    Effect.provide(
      Layer.mergeAll(
        Otlp.layerJson({
          baseUrl,
          resource: { serviceName: "effect-kinesis-example" },
          tracerExportInterval: "1 second",
          metricsExportInterval: "1 second"
        }),
        MetricsCollector.layerEffectMetrics({ interval: "1 second" })
      ).pipe(Layer.provide(FetchHttpClient.layer))
    )
  )

  if (local === undefined) return
  const spans = [...local.received.spans].sort(([a], [b]) => a.localeCompare(b))
  for (const [name, count] of spans) console.log(`span ${name}: ${count}`)
  const metrics = local.received.metrics
  console.log(
    `${metrics.size} metrics, among them UserRecordsPut: ${metrics.has("UserRecordsPut")}, RecordsProcessed: ${
      metrics.has("RecordsProcessed")
    }`
  )
  const has = (prefix: string) => spans.some(([name]) => name.startsWith(prefix))
  if (!has("kinesis.producer") || !has("kinesis.consumer") || !metrics.has("UserRecordsPut")) {
    return yield* Effect.fail(new Error("the receiver got no producer span, consumer span or KPL metric"))
  }
})

run(Effect.scoped(program).pipe(Effect.provide(KinesisLive)))
