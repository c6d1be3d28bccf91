import {
  BatchProcessing,
  Consumer,
  ConsumerControl,
  type ConsumerRecord,
  ErrorHandling
} from "@effect-kinesis/consumer"
import { AdminClient, Client, KinesisError, Serde } from "@effect-kinesis/core"
import { DynamoDbClient, DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { ConsumerWorker, DynamoEmulator, KinesisEmulator, StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Cause, type Duration, Effect, Exit, Fiber, Layer } from "effect"
import { randomUUID } from "node:crypto"

const DynamoClientLive = Layer.unwrap(
  Effect.map(Effect.service(DynamoEmulator.DynamoEmulator), (dynamo) => DynamoDbClient.layer(dynamo.clientConfig))
)

const Env = Layer.mergeAll(
  KinesisEmulator.layerClient.pipe(Layer.provideMerge(KinesisEmulator.layer())),
  DynamoClientLive.pipe(Layer.provideMerge(DynamoEmulator.layer()))
)

const { eventually, fastLeases } = ConsumerWorker
const put = StreamFixtures.putInOrder

const uniqueTable = (label: string) => `control-${label}-${randomUUID().slice(0, 8)}`

const records = (prefix: string, from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({ partitionKey: `key-${(from + i) % 8}`, data: `${prefix}-${from + i}` }))

type Seen = ReadonlyArray<ConsumerRecord.ConsumerRecord<string>>

/** How often each datum was handled, over all the given workers. */
const tally = (seen: Seen) => {
  const counts = new Map<string, number>()
  for (const record of seen) counts.set(record.data, (counts.get(record.data) ?? 0) + 1)
  return counts
}

/** Every datum in `expected` handled exactly once, and nothing else. */
const expectExactlyOnce = (seen: Seen, expected: ReadonlyArray<string>) => {
  const counts = tally(seen)
  expect([...counts].filter(([, n]) => n !== 1)).toEqual([])
  expect([...counts.keys()].sort()).toEqual([...expected].sort())
}

const startWorker = (options: {
  readonly stream: string
  readonly table: string
  readonly workerId: string
  readonly control?: ConsumerControl.ConsumerControl | undefined
  readonly handler?: ((record: ConsumerRecord.ConsumerRecord<string>) => Effect.Effect<void>) | undefined
  readonly lease?: Consumer.LeaseSettings | undefined
  readonly checkpointInterval?: Duration.Input | undefined
  readonly errorHandling?: ErrorHandling.Options<string, never, never> | undefined
}) =>
  ConsumerWorker.start({
    stream: options.stream,
    applicationName: options.table,
    workerId: options.workerId,
    deserializer: Serde.string,
    fetch: { pollInterval: "100 millis" },
    lease: options.lease ?? fastLeases,
    checkpointBatchSize: 100_000,
    checkpointInterval: options.checkpointInterval ?? "200 millis",
    handler: options.handler,
    control: options.control,
    errorHandling: options.errorHandling,
    leases: DynamoDbLeaseRepository.layer({ applicationName: options.table })
  })

/** Puts `batch` records every `every` in the background until interrupted; `produced` lists what was put. */
const produce = (stream: string, prefix: string, batch: number, every: Duration.Input) =>
  Effect.gen(function*() {
    const produced: Array<string> = []
    // Uninterruptible: a stop between the put and its note would leave records unlisted.
    const fiber = yield* Effect.uninterruptible(Effect.suspend(() => {
      const next = records(prefix, produced.length, batch)
      return Effect.andThen(
        put(stream, next),
        Effect.sync(() => produced.push(...next.map((r) => r.data)))
      )
    })).pipe(Effect.andThen(Effect.sleep(every)), Effect.forever, Effect.forkScoped)
    return { produced, stop: Fiber.interrupt(fiber) }
  })

/** A client whose shard iterators expire after 1 second, as Kinesis's do after 5 minutes. */
const shortLivedIterators = Effect.map(Client.Client, (client) => {
  const issued = new Map<string, number>()
  let expired = 0
  const note = (iterator: string | undefined) => {
    if (iterator !== undefined) issued.set(iterator, Date.now())
  }
  return {
    expired: () => expired,
    client: Client.Client.of({
      ...client,
      getShardIterator: (stream, options) =>
        Effect.tap(client.getShardIterator(stream, options), (iterator) => Effect.sync(() => note(iterator))),
      getRecords: (input) =>
        Effect.suspend(() => {
          const at = issued.get(input.ShardIterator!)
          if (at !== undefined && Date.now() - at > 1000) {
            expired++
            return Effect.fail(
              new KinesisError.ExpiredIterator({ operation: "GetRecords", message: "Iterator expired" })
            )
          }
          return Effect.tap(client.getRecords(input), (out) => Effect.sync(() => note(out.NextShardIterator)))
        })
    })
  }
})

const lastOn = (seen: Seen, shardId: string) => seen.filter((r) => r.shardId === shardId).at(-1)?.sequenceNumber

layer(Env, { excludeTestServices: true, timeout: "60 seconds" })("ConsumerControl", (it) => {
  describe("stopShard / startShard", () => {
    it.effect("a stopped shard is checkpointed and released; another worker resumes it at that checkpoint, and after startShard the first takes it again", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const table = uniqueTable("stop")
        // Only releases move leases; no checkpoint but the final one (interval far beyond the
        // test), so a next owner starting anywhere but at the stop's checkpoint repeats records.
        const lease = { ...fastLeases, expiry: "1 minute", renewInterval: "1 second" } as const
        const controlA = yield* ConsumerControl.make
        const controlB = yield* ConsumerControl.make
        const handler = () => Effect.sleep("2 millis")
        const a = yield* startWorker({
          stream: streamName,
          table,
          workerId: "a",
          control: controlA,
          handler,
          lease,
          checkpointInterval: "10 minutes"
        })
        yield* eventually(Effect.sync(() => a.held().size === 2), "20 seconds", "a holding both shards")
        const b = yield* startWorker({ stream: streamName, table, workerId: "b", control: controlB, handler, lease })
        yield* eventually(Effect.sync(() => a.held().size === 1 && b.held().size === 1), "20 seconds", "1 + 1")

        const producer = yield* produce(streamName, "r", 10, "50 millis")
        const shard = [...a.held()][0]!
        yield* eventually(
          Effect.sync(() => a.seen.filter((r) => r.shardId === shard).length >= 20),
          "20 seconds",
          "a processing its shard"
        )
        yield* controlA.stopShard(shard)
        // Completes once released: a holds it no more, and it names no owner or b.
        expect(a.held().has(shard)).toBe(false)
        const released = a.events.filter((e) => e._tag === "LeaseReleased" && e.shardId === shard)
        expect(released).toHaveLength(1)
        const stoppedAt = a.events.length
        const aLast = lastOn(a.seen, shard)

        yield* eventually(Effect.sync(() => b.held().has(shard)), "10 seconds", "b taking the stopped shard")
        const takenByB = b.events.find((e) => e._tag === "LeaseAcquired" && e.shardId === shard)
        expect(takenByB?._tag === "LeaseAcquired" && takenByB.checkpoint.sequenceNumber).toBe(aLast)
        expect((yield* controlA.status).stoppedShards).toEqual([shard])
        yield* eventually(
          Effect.sync(() => b.seen.filter((r) => r.shardId === shard).length >= 20),
          "20 seconds",
          "b processing the shard"
        )

        // Started again on a, stopped on b: a takes it back.
        const startedAt = a.events.length
        yield* controlA.startShard(shard)
        yield* controlB.stopShard(shard)
        yield* eventually(Effect.sync(() => a.held().has(shard)), "10 seconds", "a taking the shard again")
        expect(a.events.slice(stoppedAt, startedAt).filter((e) => e._tag === "LeaseAcquired")).toEqual([])

        yield* producer.stop
        const all = () => [...a.seen, ...b.seen]
        yield* eventually(
          Effect.sync(() => tally(all()).size === producer.produced.length),
          "20 seconds",
          "every record"
        )
        yield* Effect.sleep("500 millis")
        expectExactlyOnce(all(), producer.produced)
        // A stop hands the shard to the others: a, now below its share, stole nothing from b.
        expect(a.events.slice(stoppedAt).filter((e) => e._tag === "LeaseAcquired" && e.shardId !== shard)).toEqual([])
        // b's first record of the shard is the one after a's last.
        const onShard = [...a.seen, ...b.seen].filter((r) => r.shardId === shard).map((r) => r.sequenceNumber)
        const sorted = [...onShard].sort((x, y) => x.length - y.length || (x < y ? -1 : x > y ? 1 : 0))
        expect(sorted[sorted.indexOf(aLast!) + 1]).toBe(b.seen.find((r) => r.shardId === shard)?.sequenceNumber)
      }))

    it.effect("a stop during a split: another worker finishes the parent, the children follow it, nothing lost or repeated", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const parent = shards[0]!.shardId
        const table = uniqueTable("split")
        const control = yield* ConsumerControl.make
        // The order records were handled in, over both workers.
        const order: Array<string> = []
        const handler = (record: ConsumerRecord.ConsumerRecord<string>) =>
          Effect.andThen(Effect.sleep("2 millis"), Effect.sync(() => order.push(record.data)))
        // No steals (full take rounds only at the start): a steal repeats what its victim processed
        // since its last checkpoint, which is no concern of this test.
        const lease = { ...fastLeases, takeInterval: "5 minutes" } as const
        const a = yield* startWorker({ stream: streamName, table, workerId: "a", control, handler, lease })
        yield* eventually(Effect.sync(() => a.held().has(parent)), "20 seconds", "a holding the shard")
        const b = yield* startWorker({ stream: streamName, table, workerId: "b", handler, lease })

        const first = records("p", 0, 60)
        yield* put(streamName, first)
        yield* eventually(Effect.sync(() => a.seen.length >= 10), "20 seconds", "a processing")
        yield* Effect.all([admin.splitShard(streamName, parent), control.stopShard(parent)], { concurrency: 2 })
        const second = records("c", 60, 60)
        yield* put(streamName, second)

        const expected = [...first, ...second].map((r) => r.data)
        yield* eventually(Effect.sync(() => new Set(order).size === expected.length), "30 seconds", "every record")
        yield* Effect.sleep("500 millis")
        expectExactlyOnce([...a.seen, ...b.seen], expected)
        // Per key in the order put: the parent's records before its children's.
        const position = new Map(order.map((data, i) => [data, i]))
        for (let key = 0; key < 8; key++) {
          const ofKey = expected.filter((_, i) => i % 8 === key).map((data) => position.get(data)!)
          expect(ofKey).toEqual([...ofKey].sort((x, y) => x - y))
        }
        expect(b.events.some((e) => e._tag === "LeaseAcquired" && e.shardId === parent)).toBe(true)
        expect(a.events.filter((e) => e._tag === "LeaseAcquired" && e.shardId === parent)).toHaveLength(1)
      }))

    it.effect("with errorHandling, stopping one shard ends that shard only; the worker goes on with the others", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const table = uniqueTable("stop-eh")
        const control = yield* ConsumerControl.make
        const w = yield* startWorker({
          stream: streamName,
          table,
          workerId: "w",
          control,
          handler: () => Effect.sleep("3 millis"),
          errorHandling: { mode: ErrorHandling.retryAndSkip(1) }
        })
        yield* eventually(Effect.sync(() => w.held().size === 2), "20 seconds", "both shards")
        // A backlog: the stop comes while a large batch is being handled.
        const first = records("a", 0, 200)
        yield* put(streamName, first)
        yield* eventually(Effect.sync(() => w.seen.length >= 20), "20 seconds", "processing")
        const [stopped, kept] = shards.map((s) => s.shardId)
        yield* control.stopShard(stopped!)
        expect(w.held().has(stopped!)).toBe(false)
        const second = records("b", 200, 40)
        yield* put(streamName, second)
        yield* eventually(
          Effect.sync(() => w.seen.some((r) => r.data.startsWith("b") && r.shardId === kept)),
          "20 seconds",
          `records of ${kept} put after the stop`
        )
        expect(w.fiber.pollUnsafe()).toBeUndefined()
        expect(new Set(w.seen.map((r) => r.data)).size).toBe(w.seen.length)
      }))
  })

  describe("pause / resume", () => {
    it.effect("while paused no record reaches the handler, leases stay held and renewed, checkpoints are written; resume goes on where it stopped", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const table = uniqueTable("pause")
        const leases = yield* DynamoDbLeaseRepository.make({ applicationName: table })
        const control = yield* ConsumerControl.make
        // Paused before it attaches: the worker takes no lease.
        yield* control.pause
        let paused = false
        let startedWhilePaused = 0
        const w = yield* startWorker({
          stream: streamName,
          table,
          workerId: "w",
          control,
          // Renewals late under load must not move a lease in this test.
          lease: { ...fastLeases, expiry: "1 minute", renewInterval: "1 second" },
          handler: () =>
            Effect.andThen(
              Effect.sync(() => {
                if (paused) startedWhilePaused++
              }),
              Effect.sleep("5 millis")
            )
        })
        yield* Effect.sleep("1500 millis")
        expect(w.held().size).toBe(0)
        expect((yield* control.status).workerId).toBe("w")
        yield* control.resume
        yield* eventually(Effect.sync(() => w.held().size === 2), "20 seconds", "both shards taken after resume")

        // A backlog, so that each shard hands on one large batch: the pause must stop within it.
        const backlog = records("backlog", 0, 300)
        yield* put(streamName, backlog)
        yield* eventually(Effect.sync(() => w.seen.length >= 20), "20 seconds", "processing")
        yield* control.pause
        // Handler calls already running finish.
        yield* Effect.sleep("300 millis")
        paused = true
        const frozen = w.seen.length
        expect(frozen).toBeLessThan(200)
        const renewedBefore = w.events.filter((e) => e._tag === "LeaseRenewed").length
        // Records arriving during the pause.
        const producer = yield* produce(streamName, "r", 10, "50 millis")
        yield* Effect.sleep("2 seconds")
        expect(producer.produced.length).toBeGreaterThan(0)
        expect(w.seen.length).toBe(frozen)
        expect(startedWhilePaused).toBe(0)
        expect(w.held().size).toBe(2)
        expect(w.events.filter((e) => e._tag === "LeaseRenewed").length).toBeGreaterThan(renewedBefore)
        // What was processed before the pause is checkpointed during it.
        const stored = yield* leases.list
        for (const lease of stored) {
          expect(lease.leaseOwner).toBe("w")
          // A shard whose first batch met the pause has processed nothing yet.
          expect(lease.checkpoint.sequenceNumber).toBe(lastOn(w.seen, lease.leaseKey) ?? "TRIM_HORIZON")
        }
        const status = yield* control.status
        expect(status.paused).toBe(true)
        expect(status.shards.map((s) => s.state)).toEqual(["paused", "paused"])

        paused = false
        yield* control.resume
        yield* producer.stop
        const expected = [...backlog.map((r) => r.data), ...producer.produced]
        yield* eventually(
          Effect.sync(() => tally(w.seen).size === expected.length),
          "20 seconds",
          "every record after resume"
        )
        yield* Effect.sleep("300 millis")
        expect(w.events.filter((e) => e._tag === "LeaseLost")).toEqual([])
        expectExactlyOnce(w.seen, expected)

        // A shutdown while paused within a batch does not wait out the grace period (10 s) for
        // the loop waiting to resume; it checkpoints what was processed and releases.
        yield* put(streamName, records("last", 0, 300))
        yield* eventually(Effect.sync(() => w.seen.length >= expected.length + 20), "20 seconds", "processing")
        yield* control.pause
        yield* w.stop.pipe(
          Effect.timeoutOrElse({ duration: "5 seconds", orElse: () => Effect.fail(new Error("stop took too long")) })
        )
        expect(w.seen.length).toBeLessThan(expected.length + 300)
        for (const lease of yield* leases.list) {
          expect(lease.leaseOwner).toBeUndefined()
          expect(lease.checkpoint.sequenceNumber).toBe(lastOn(w.seen, lease.leaseKey))
        }
      }))

    for (const path of ["parallelism", "errorHandling", "batches"] as const) {
      it.effect(`a pause holds back ${path} too: nothing starts while paused, resume goes on, status counts records`, () =>
        Effect.gen(function*() {
          const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
          const table = uniqueTable(`pause-${path}`)
          const control = yield* ConsumerControl.make
          const seen: Array<ConsumerRecord.ConsumerRecord<string>> = []
          let paused = false
          let startedWhilePaused = 0
          const started = () =>
            Effect.sync(() => {
              if (paused) startedWhilePaused++
            })
          const handle = (record: ConsumerRecord.ConsumerRecord<string>) =>
            Effect.andThen(started(), Effect.as(Effect.sleep("5 millis"), record)).pipe(
              Effect.andThen((r) => Effect.sync(() => seen.push(r)))
            )
          const options = {
            stream: streamName,
            applicationName: table,
            workerId: "w",
            deserializer: Serde.string,
            fetch: { pollInterval: "100 millis" },
            lease: { ...fastLeases, expiry: "1 minute", renewInterval: "1 second" },
            checkpointInterval: "200 millis",
            control
          } as const
          const run = path === "batches"
            ? BatchProcessing.consumeBatchesWith(
              (batch) => Effect.forEach(batch, handle, { discard: true }),
              { ...options, batchSize: 10 }
            )
            : Consumer.consumeWith(handle, {
              ...options,
              ...(path === "parallelism"
                ? { parallelism: 4 }
                : { errorHandling: { mode: ErrorHandling.retryAndSkip(1) } })
            })
          yield* run.pipe(
            Effect.provide(
              Consumer.layer.pipe(Layer.provide(DynamoDbLeaseRepository.layer({ applicationName: table })))
            ),
            Effect.forkScoped
          )
          // One large batch from the shard: the pause must stop within it.
          const backlog = records("backlog", 0, 300)
          yield* put(streamName, backlog)
          yield* eventually(Effect.sync(() => seen.length >= 20), "20 seconds", "processing")
          yield* control.pause
          // Calls already running (a batch of 10 at 5 ms each) finish.
          yield* Effect.sleep("300 millis")
          paused = true
          const frozen = seen.length
          yield* Effect.sleep("1 second")
          expect(seen.length).toBe(frozen)
          expect(startedWhilePaused).toBe(0)
          expect(frozen).toBeLessThan(300)
          paused = false
          yield* control.resume
          yield* eventually(Effect.sync(() => seen.length >= 300), "20 seconds", "every record after resume")
          expectExactlyOnce(seen, backlog.map((r) => r.data))
          yield* eventually(
            Effect.map(control.status, (status) => status.shards[0]?.recordsProcessed === 300),
            "5 seconds",
            "status counting every record"
          )
          const status = yield* control.status
          expect(status.shards.map((s) => s.shardId)).toEqual([shards[0]!.shardId])
          expect(status.shards[0]!.processed.sequenceNumber).toBe(seen.at(-1)!.sequenceNumber)
        }))
    }

    it.effect("a pause longer than the shard iterator's lifetime resumes without skipping or repeating", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const table = uniqueTable("expiry")
        const shortLived = yield* shortLivedIterators
        const control = yield* ConsumerControl.make
        const w = yield* startWorker({ stream: streamName, table, workerId: "w", control }).pipe(
          Effect.provideService(Client.Client, shortLived.client)
        )
        const first = records("a", 0, 30)
        yield* put(streamName, first)
        yield* eventually(Effect.sync(() => w.seen.length === 30), "20 seconds", "first records")
        yield* control.pause
        // Put once the fetcher has filled its buffer and stopped: only a new iterator reaches them.
        yield* Effect.sleep("1 second")
        const second = records("b", 30, 30)
        yield* put(streamName, second)
        yield* Effect.sleep("1500 millis")
        expect(w.seen.length).toBe(30)
        yield* control.resume
        yield* eventually(Effect.sync(() => w.seen.length >= 60), "20 seconds", "records put during the pause")
        yield* Effect.sleep("300 millis")
        expectExactlyOnce(w.seen, [...first, ...second].map((r) => r.data))
        expect(shortLived.expired()).toBeGreaterThan(0)
      }))

    it.effect("from LATEST with nothing read yet, a pause longer than the iterator's lifetime skips nothing put during it", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const table = uniqueTable("latest")
        const shortLived = yield* shortLivedIterators
        const control = yield* ConsumerControl.make
        const w = yield* ConsumerWorker.start({
          stream: streamName,
          applicationName: table,
          workerId: "w",
          deserializer: Serde.string,
          initialPosition: "LATEST",
          fetch: { pollInterval: "100 millis" },
          lease: fastLeases,
          control,
          leases: DynamoDbLeaseRepository.layer({ applicationName: table })
        }).pipe(Effect.provideService(Client.Client, shortLived.client))
        yield* eventually(
          Effect.sync(() => w.events.some((e) => e._tag === "PollComplete")),
          "20 seconds",
          "the shard polled from LATEST"
        )
        yield* control.pause
        // The fetcher fills its buffer with empty batches and stops; its iterator then expires.
        yield* Effect.sleep("1 second")
        const during = records("d", 0, 30)
        yield* put(streamName, during)
        yield* Effect.sleep("1500 millis")
        expect(w.seen.length).toBe(0)
        yield* control.resume
        yield* eventually(Effect.sync(() => w.seen.length >= 30), "20 seconds", "the records put during the pause")
        yield* Effect.sleep("300 millis")
        expectExactlyOnce(w.seen, during.map((r) => r.data))
        expect(shortLived.expired()).toBeGreaterThan(0)
      }))
  })

  describe("swappable", () => {
    it.effect("swapping under load: every record handled once by exactly one handler, an old handler never runs after its swap returned", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const table = uniqueTable("swap")
        const handledBy = new Map<string, Array<number>>()
        const retired: Array<boolean> = []
        let violations = 0
        // Slow enough that a swap finds calls running on both shards.
        const version = (v: number) => (record: ConsumerRecord.ConsumerRecord<string>) =>
          Effect.gen(function*() {
            if (retired[v] === true) violations++
            yield* Effect.sleep("10 millis")
            if (retired[v] === true) violations++
            handledBy.set(record.data, [...(handledBy.get(record.data) ?? []), v])
          })
        const swappable = yield* ConsumerControl.swappable(version(0))
        const w = yield* startWorker({
          stream: streamName,
          table,
          workerId: "w",
          handler: (record) => Effect.asVoid(swappable.handler(record))
        })
        yield* eventually(Effect.sync(() => w.held().size === 2), "20 seconds", "both shards")
        const producer = yield* produce(streamName, "r", 5, "50 millis")
        for (let v = 1; v <= 5; v++) {
          yield* Effect.sleep("400 millis")
          yield* swappable.swap(version(v))
          retired[v - 1] = true
        }
        yield* producer.stop
        yield* eventually(
          Effect.sync(() => handledBy.size === producer.produced.length),
          "20 seconds",
          "every record"
        )
        yield* Effect.sleep("300 millis")
        expect(violations).toBe(0)
        expect([...handledBy].filter(([, versions]) => versions.length !== 1)).toEqual([])
        expectExactlyOnce(w.seen, producer.produced)
        const perVersion = [0, 1, 2, 3, 4, 5].map((v) => [...handledBy.values()].filter(([x]) => x === v).length)
        expect(perVersion.every((n) => n > 0)).toBe(true)
      }))
  })

  describe("status", () => {
    it.effect("status tells the worker, pause, stopped shards and per shard the checkpoint, position, lag and count; a stopped shard is not taken again on this worker", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const table = uniqueTable("status")
        const leases = yield* DynamoDbLeaseRepository.make({ applicationName: table })
        const control = yield* ConsumerControl.make
        expect(yield* control.status).toEqual({ workerId: undefined, paused: false, stoppedShards: [], shards: [] })

        const w = yield* startWorker({ stream: streamName, table, workerId: "w", control })
        yield* eventually(Effect.sync(() => w.held().size === 2), "20 seconds", "both shards")
        const data = records("r", 0, 40)
        yield* put(streamName, data)
        yield* eventually(Effect.sync(() => w.seen.length === 40), "20 seconds", "all records")
        const shardIds = shards.map((s) => s.shardId).sort()
        yield* eventually(
          Effect.map(
            control.status,
            (status) => status.shards.every((s) => s.checkpoint.sequenceNumber === lastOn(w.seen, s.shardId))
          ),
          "10 seconds",
          "checkpoints written"
        )
        const status = yield* control.status
        expect(status.workerId).toBe("w")
        expect(status.paused).toBe(false)
        expect(status.shards.map((s) => s.shardId)).toEqual(shardIds)
        for (const shard of status.shards) {
          const ofShard = w.seen.filter((r) => r.shardId === shard.shardId)
          expect(shard.state).toBe("processing")
          expect(shard.processed.sequenceNumber).toBe(ofShard.at(-1)?.sequenceNumber)
          expect(shard.recordsProcessed).toBe(ofShard.length)
          expect(shard.millisBehindLatest).toBe(0)
        }

        // One consumer per handle.
        const second = yield* Consumer.consumeWith(() => Effect.void, {
          stream: streamName,
          applicationName: table,
          workerId: "second",
          deserializer: Serde.string,
          control
        }).pipe(
          Effect.provide(Consumer.layer.pipe(Layer.provide(DynamoDbLeaseRepository.layer({ applicationName: table })))),
          Effect.exit
        )
        expect(Exit.isFailure(second) && Cause.pretty(second.cause)).toContain("already attached")

        // Stopped: released, and not taken again although this worker is alone and below its share.
        const stopped = shardIds[0]!
        yield* control.stopShard(stopped)
        const stoppedAt = w.events.length
        // Past the take interval (1 s), after which an orphan is taken even beyond the share.
        yield* Effect.sleep("2500 millis")
        expect(w.held().has(stopped)).toBe(false)
        expect(w.events.slice(stoppedAt).filter((e) => e._tag === "LeaseAcquired")).toEqual([])
        const stored = (yield* leases.list).find((l) => l.leaseKey === stopped)!
        expect(stored.leaseOwner).toBeUndefined()
        expect(stored.checkpoint.sequenceNumber).toBe(lastOn(w.seen, stopped))
        const afterStop = yield* control.status
        expect(afterStop.stoppedShards).toEqual([stopped])
        expect(afterStop.shards.map((s) => s.shardId)).toEqual([shardIds[1]])
        yield* control.pause
        expect((yield* control.status).shards.map((s) => s.state)).toEqual(["paused"])
        yield* control.resume

        yield* control.startShard(stopped)
        yield* eventually(Effect.sync(() => w.held().has(stopped)), "10 seconds", "taken again after startShard")
        expect((yield* control.status).stoppedShards).toEqual([])
        yield* w.stop
        expect((yield* control.status).workerId).toBeUndefined()
      }))
  })
})
