/**
 * One consumer worker of the chaos run, as its own process: `consumeWith` on the DynamoDB lease table, through the
 * runner's fault proxies. Every processed record is appended to a JSONL file before the handler returns (a
 * synchronous write: the kernel has it even if this process is SIGKILLed right after, and it precedes the checkpoint
 * that covers the record). Lease events go to a second file.
 *
 * SIGTERM is a graceful stop: the consumer is interrupted (final checkpoints, leases released) and the process exits 0
 * once it is done; any failure of the consumer exits 1. The process kills itself when its stdin closes, i.e. when the
 * runner is gone, however it died.
 */
import type { DiagnosticEvent } from "@effect-kinesis/consumer"
import type { ExtendedSequenceNumber as ESN } from "@effect-kinesis/core"
import type { Fiber as F } from "effect"
import { openSync, writeSync } from "node:fs"
import type { WorkerConfig } from "./protocol.ts"

const config = JSON.parse(process.argv[2] ?? "{}") as WorkerConfig

process.stdin.on("end", () => process.kill(process.pid, "SIGKILL"))
process.stdin.on("error", () => process.kill(process.pid, "SIGKILL"))
process.stdin.resume()

const records = openSync(config.recordsFile, "a")
const events = openSync(config.eventsFile, "a")
const event = (line: Record<string, unknown>) => writeSync(events, JSON.stringify({ ...line, t: Date.now() }) + "\n")

// The SIGTERM handler is in place before the libraries load (which takes seconds on a busy machine): a stop that
// arrives while starting is a stop, not a crash.
let stopping = false
let fiber: F.Fiber<void, unknown> | undefined
let interrupt: (() => void) | undefined
process.on("SIGTERM", () => {
  if (stopping) return
  stopping = true
  event({ e: "stopping" })
  interrupt?.()
})
event({ e: "boot", pid: process.pid })

const { Consumer } = await import("@effect-kinesis/consumer")
const { Client, ExtendedSequenceNumber, Serde } = await import("@effect-kinesis/core")
const { DynamoDbClient, DynamoDbLeaseRepository } = await import("@effect-kinesis/lease-dynamodb")
const { Cause, Effect, Exit, Fiber, Layer } = await import("effect")
if (stopping) {
  event({ e: "stopped", before: "start" })
  process.exit(0)
}

const position = (p: ESN.ExtendedSequenceNumber) =>
  ExtendedSequenceNumber.isSentinel(p) ? p.sequenceNumber : `${p.sequenceNumber}.${p.subSequenceNumber}`

const onDiagnostic = (e: DiagnosticEvent.DiagnosticEvent) =>
  Effect.sync(() => {
    switch (e._tag) {
      case "LeaseAcquired":
        return event({ e: e._tag, s: e.shardId, at: position(e.checkpoint), from: e.previousOwner })
      case "LeaseLost":
        return event({ e: e._tag, s: e.shardId, reason: e.reason })
      case "LeaseReleased":
      case "LeaseDeleted":
        return event({ e: e._tag, s: e.shardId })
      case "ShardEnded":
        return event({ e: e._tag, s: e.shardId, children: e.childShardIds })
      case "NewShardDetected":
        return event({ e: e._tag, s: e.shardId, parents: e.parentShardIds })
    }
  })

const clientConfig = { region: config.region, credentials: config.credentials }

const program = Consumer.consumeWith(
  (record) =>
    Effect.sync(() => {
      const data = JSON.parse(record.data) as { readonly id: number; readonly k: string; readonly n: number }
      writeSync(
        records,
        `{"id":${data.id},"k":"${data.k}","n":${data.n},"s":"${record.shardId}","q":"${record.sequenceNumber}",`
          + `"u":${record.subSequenceNumber},"t":${Date.now()}}\n`
      )
    }),
  {
    stream: config.stream,
    applicationName: config.applicationName,
    workerId: config.workerId,
    deserializer: Serde.string,
    fetch: { pollInterval: config.pollInterval },
    lease: config.lease,
    checkpointInterval: config.checkpointInterval,
    checkpointBatchSize: config.checkpointBatchSize,
    onDiagnostic
  }
).pipe(
  Effect.provide(
    Consumer.layer.pipe(
      Layer.provide(DynamoDbLeaseRepository.layer({ applicationName: config.applicationName })),
      Layer.provide(DynamoDbClient.layer({ ...clientConfig, endpoint: config.dynamoEndpoint })),
      Layer.provide(Client.layer({ ...clientConfig, endpoint: config.kinesisEndpoint, httpHandler: "http1" }))
    )
  )
)

event({ e: "start", pid: process.pid })
fiber = Effect.runFork(program)
interrupt = () => Effect.runFork(Fiber.interrupt(fiber!))
fiber.addObserver((exit) => {
  const interrupted = Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)
  if (Exit.isFailure(exit) && !interrupted) {
    process.stderr.write(`worker ${config.workerId} failed:\n${Cause.pretty(exit.cause)}\n`)
    event({ e: "failed", cause: Cause.pretty(exit.cause).slice(0, 2000) })
    process.exit(1)
  }
  event({ e: stopping ? "stopped" : "ended" })
  // Ending without being asked to is a defect of its own: the runner reports exit code 2.
  process.exit(stopping ? 0 : 2)
})
