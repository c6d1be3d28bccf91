import { type AttributeValue, CreateTableCommand, DescribeTableCommand, PutItemCommand } from "@aws-sdk/client-dynamodb"
import type { Lease } from "@effect-kinesis/consumer"
import { AdminClient, Aggregation, Client, ExtendedSequenceNumber, Serde } from "@effect-kinesis/core"
import { DynamoDbClient, DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { ConsumerWorker, StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Schedule, Stream } from "effect"
import { randomUUID } from "node:crypto"
import * as Http from "node:http"
import { Env, runCli } from "./fixtures.ts"

const byKeyOf = (doc: { readonly leases: ReadonlyArray<LeaseJson> }) =>
  new Map(doc.leases.map((lease) => [lease.shardId, lease]))

const uniqueApp = (label: string) => `${label}-${randomUUID().slice(0, 8)}`

const startWorker = (stream: string, applicationName: string, workerId: string) =>
  ConsumerWorker.start({
    stream,
    applicationName,
    workerId,
    deserializer: Serde.string,
    fetch: { pollInterval: "100 millis" },
    lease: ConsumerWorker.fastLeases,
    checkpointBatchSize: 1000,
    checkpointInterval: "200 millis",
    leases: DynamoDbLeaseRepository.layer({ applicationName })
  })

const records = (prefix: string, n: number, keys = 12) =>
  Array.from({ length: n }, (_, i) => ({ partitionKey: `key-${i % keys}`, data: `${prefix}${i}` }))

interface LeaseJson {
  readonly shardId: string
  readonly state: string
  readonly parentShardIds: ReadonlyArray<string>
  readonly owner: string | null
  readonly counter: number
  readonly checkpoint: string
  readonly behindMillis: number | null
  readonly oldestUnprocessedArrival: string | null
  readonly counterStillForMillis: number
  readonly counterChangeObserved: boolean
}

interface LeasesJson {
  readonly application: string
  readonly stream: string | null
  readonly owners: Record<string, number>
  readonly leases: ReadonlyArray<LeaseJson>
}

layer(Env, { excludeTestServices: true, timeout: "90 seconds" })("effect-kinesis", (it) => {
  describe("leases", () => {
    it.effect("while two workers run on DynamoDB leases, the JSON shows both owners, their checkpoints and no lag; stopped, the lag of new records", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 4 })
        const app = uniqueApp("leases")
        yield* StreamFixtures.putInOrder(streamName, records("a", 40))
        const workers = yield* Effect.forEach(["w1", "w2"], (id) => startWorker(streamName, app, id))
        yield* ConsumerWorker.eventually(
          Effect.sync(() =>
            workers.every((w) => w.held().size === 2) &&
            workers.reduce((n, w) => n + w.seen.length, 0) >= 40
          ),
          "40 seconds",
          "2 + 2 leases and all 40 records"
        )
        // The checkpoint of each shard's last record is written within the checkpoint interval.
        const lastPerShard = new Map<string, string>()
        for (const w of workers) for (const r of w.seen) lastPerShard.set(r.shardId, r.sequenceNumber)
        const repo = yield* DynamoDbLeaseRepository.make({ applicationName: app, createTableIfMissing: false })
        yield* ConsumerWorker.eventually(
          Effect.map(
            repo.list,
            (all) => all.every((l) => l.checkpoint.sequenceNumber === lastPerShard.get(l.leaseKey))
          ),
          "20 seconds",
          "every shard checkpointed at its last record"
        )

        const run = yield* runCli(["leases", app, "--stream", streamName, "--json"])
        expect(run.stderr).toEqual([])
        expect(Exit.isSuccess(run.exit)).toBe(true)
        const doc = JSON.parse(run.stdout) as LeasesJson
        expect(doc.application).toBe(app)
        expect(doc.owners).toEqual({ w1: 2, w2: 2 })
        expect(doc.leases).toHaveLength(4)
        for (const lease of doc.leases) {
          expect(lease.state).toBe("leased")
          expect(new Set(workers.find((w) => w.workerId === lease.owner)?.held())).toContain(lease.shardId)
          expect(lease.checkpoint).toBe(lastPerShard.get(lease.shardId))
          expect(lease.behindMillis).toBe(0)
        }

        // Stopped workers release their leases; records written since wait behind the checkpoints.
        yield* Effect.forEach(workers, (w) => w.stop, { discard: true })
        yield* StreamFixtures.putInOrder(streamName, records("b", 12))
        yield* Effect.sleep("1 second")
        const after = JSON.parse(
          (yield* runCli(["leases", app, "--stream", streamName, "--json"])).stdout
        ) as LeasesJson
        expect(after.owners).toEqual({})
        const behind = after.leases.filter((lease) => lease.behindMillis !== null && lease.behindMillis >= 1000)
        expect(after.leases.every((lease) => lease.state === "unowned" && lease.owner === null)).toBe(true)
        // Every shard with a new record shows it as the oldest unprocessed one, at least the second slept ago.
        const shardsWithNew = new Set<string>()
        const client = yield* Client.Client
        for (const lease of after.leases) {
          const iterator = yield* client.getShardIterator(streamName, {
            shardId: lease.shardId,
            type: "AFTER_SEQUENCE_NUMBER",
            sequenceNumber: lease.checkpoint
          })
          const page = yield* client.getRecords({ ShardIterator: iterator })
          if ((page.Records ?? []).length > 0) shardsWithNew.add(lease.shardId)
        }
        expect(shardsWithNew.size).toBeGreaterThan(0)
        expect(new Set(behind.map((lease) => lease.shardId))).toEqual(shardsWithNew)
        for (const lease of after.leases) {
          if (!shardsWithNew.has(lease.shardId)) expect(lease.behindMillis).toBe(0)
        }

        // Watched, a shard stuck behind the same record falls further behind from one document to the next.
        const watched = yield* runCli(["leases", app, "--stream", streamName, "--watch", "--interval", "500ms"], {
          stopAfter: "1800 millis"
        })
        const documents = watched.stdout.trimEnd().split("\n").map((line) => JSON.parse(line) as LeasesJson)
        expect(documents.length).toBeGreaterThanOrEqual(3)
        const stuck = behind[0]!.shardId
        const lagOf = (doc: LeasesJson) => doc.leases.find((lease) => lease.shardId === stuck)!.behindMillis!
        for (let i = 1; i < documents.length; i++) {
          const arrival = documents[i]!.leases.find((lease) => lease.shardId === stuck)!.oldestUnprocessedArrival
          expect(arrival).toBe(behind[0]!.oldestUnprocessedArrival)
          expect(lagOf(documents[i]!)).toBeGreaterThan(lagOf(documents[i - 1]!))
        }
      }))

    it.effect("on a terminal, the view is redrawn in place: cursor hidden, each frame moves back over the last, cursor shown at Ctrl-C", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const app = uniqueApp("live")
        yield* StreamFixtures.putInOrder(streamName, records("a", 10))
        const worker = yield* startWorker(streamName, app, "worker-1")
        yield* ConsumerWorker.eventually(Effect.sync(() => worker.seen.length >= 10), "30 seconds", "all records")
        const run = yield* runCli(["leases", app, "--stream", streamName, "--interval", "500ms"], {
          terminal: true,
          columns: 120,
          stopAfter: "4 seconds"
        })
        expect(run.stderr).toEqual([])
        expect(Exit.hasInterrupts(run.exit)).toBe(true)
        const frames = run.writes.slice(1, -1)
        expect(run.writes[0]).toBe("\x1b[?25l")
        expect(run.writes.at(-1)).toBe("\x1b[?25h")
        expect(frames.length).toBeGreaterThanOrEqual(3)
        // The first frame starts where the cursor is; every later one first moves up over the frame before.
        const lines = (frame: string) => frame.split("\n").length - 1
        expect(frames[0]!.startsWith("effect-kinesis leases")).toBe(true)
        for (let i = 1; i < frames.length; i++) {
          expect(frames[i]!.startsWith(`\x1b[${lines(frames[i - 1]!)}F`)).toBe(true)
        }
        const last = frames.at(-1)!
        expect(last.endsWith("\x1b[J")).toBe(true)
        expect(last).toContain("1 worker: worker-1 (2)")
        for (const shardId of worker.held()) expect(last).toMatch(new RegExp(`${shardId}\\s+leased\\s+-\\s+worker-1`))
        // No line is wider than the terminal.
        const plain = last.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "")
        for (const line of plain.split("\n")) expect([...line].length).toBeLessThan(120)
      }))

    it.effect("states: a held lease whose counter stands still past --expiry turns expired?, a child waits for its parent, SHARD_END is finished", () =>
      Effect.gen(function*() {
        const app = uniqueApp("states")
        const repo = yield* DynamoDbLeaseRepository.make({ applicationName: app })
        const lease = (leaseKey: string, parentShardIds: ReadonlyArray<string>, checkpoint: string): Lease.Lease => ({
          leaseKey,
          leaseOwner: undefined,
          leaseCounter: 0,
          checkpoint: ExtendedSequenceNumber.make(checkpoint),
          pendingCheckpoint: undefined,
          ownerSwitchesSinceCheckpoint: 0,
          parentShardIds,
          childShardIds: [],
          hashKeyRange: undefined
        })
        const parent = yield* repo.create(lease("shardId-000000000000", [], "TRIM_HORIZON"))
        yield* repo.take(parent, "ghost")
        yield* repo.create(lease("shardId-000000000001", ["shardId-000000000000"], "TRIM_HORIZON"))
        yield* repo.create(lease("shardId-000000000002", [], "SHARD_END"))
        yield* repo.create(lease("shardId-000000000003", [], "TRIM_HORIZON"))

        const run = yield* runCli(["leases", app, "--interval", "500ms", "--expiry", "1s"], {
          terminal: true,
          columns: 120,
          stopAfter: "4 seconds"
        })
        const frames = run.writes.slice(1, -1).map((frame) => frame.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, ""))
        const row = (frame: string, shardId: string) => frame.split("\n").find((line) => line.startsWith(shardId))
        expect(row(frames[0]!, "shardId-000000000000")).toMatch(
          /^shardId-000000000000\s+leased\s+-\s+ghost\s+1\s+TRIM_HORIZON\s+\?$/
        )
        const last = frames.at(-1)!
        expect(row(last, "shardId-000000000000")).toMatch(
          /^shardId-000000000000\s+expired\?\s+-\s+ghost\s+1\s+TRIM_HORIZON\s+>\d\.\ds ago$/
        )
        expect(row(last, "shardId-000000000001")).toMatch(
          /^shardId-000000000001\s+waiting\s+shardId-000000000000\s+-\s+0\s+TRIM_HORIZON/
        )
        expect(row(last, "shardId-000000000002")).toMatch(
          /^shardId-000000000002\s+finished\s+-\s+-\s+0\s+SHARD_END\s+-$/
        )
        expect(row(last, "shardId-000000000003")).toMatch(/^shardId-000000000003\s+unowned\s+-\s+-\s+0\s+TRIM_HORIZON/)
        expect(last).toContain("1 worker: ghost (1)")
        expect(last).toContain("pass --stream to see how far behind each shard is")
      }))

    it.effect("a table the KCL wrote: sub-sequence checkpoints, parent sets, owner switches, a multi-stream key and a lease of a shard the stream no longer has are rows, an item it cannot read is listed apart: not a failure", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const client = yield* Client.Client
        const [shard] = yield* Stream.runCollect(client.listShards(streamName))
        yield* StreamFixtures.putInOrder(streamName, records("k", 3))
        const iterator = yield* client.getShardIterator(streamName, { shardId: shard!.ShardId!, type: "TRIM_HORIZON" })
        const stored = (yield* client.getRecords({ ShardIterator: iterator })).Records ?? []
        const app = uniqueApp("kcl")
        const { sdk } = yield* DynamoDbClient.DynamoDbClient
        yield* Effect.promise(() =>
          sdk.send(
            new CreateTableCommand({
              TableName: app,
              KeySchema: [{ AttributeName: "leaseKey", KeyType: "HASH" }],
              AttributeDefinitions: [{ AttributeName: "leaseKey", AttributeType: "S" }],
              BillingMode: "PAY_PER_REQUEST"
            })
          )
        )
        const items: ReadonlyArray<Record<string, AttributeValue>> = [
          {
            leaseKey: { S: shard!.ShardId! },
            leaseOwner: { S: "kcl-worker-1" },
            leaseCounter: { N: "12" },
            checkpoint: { S: stored[1]!.SequenceNumber! },
            checkpointSubSequenceNumber: { N: "4" },
            ownerSwitchesSinceCheckpoint: { N: "3" },
            throughputKBps: { N: "12.75" },
            startingHashKey: { S: shard!.HashKeyRange!.StartingHashKey! },
            endingHashKey: { S: shard!.HashKeyRange!.EndingHashKey! }
          },
          // A shard of an earlier stream of the same name, or trimmed away: GetShardIterator answers ResourceNotFound.
          {
            leaseKey: { S: "shardId-000000000099" },
            leaseCounter: { N: "3" },
            checkpoint: { S: stored[0]!.SequenceNumber! },
            checkpointSubSequenceNumber: { N: "0" },
            parentShardId: { SS: ["shardId-000000000097", "shardId-000000000098"] }
          },
          // The KCL's multi-stream mode: `account:stream:creationEpoch:shardId`.
          // A multi-stream child whose parent (named by shard id, as the KCL does) is not finished.
          {
            leaseKey: { S: `123456789012:${streamName}:1700000000:shardId-000000000042` },
            leaseCounter: { N: "0" },
            checkpoint: { S: "TRIM_HORIZON" },
            parentShardId: { SS: ["shardId-000000000041"] }
          },
          {
            leaseKey: { S: `123456789012:${streamName}:1700000000:shardId-000000000041` },
            leaseOwner: { S: "kcl-worker-2" },
            leaseCounter: { N: "9" },
            checkpoint: { S: "TRIM_HORIZON" }
          },
          {
            leaseKey: { S: `123456789012:${streamName}:1700000000:${shard!.ShardId!}` },
            leaseOwner: { S: "kcl-worker-2" },
            leaseCounter: { N: "4" },
            checkpoint: { S: stored[0]!.SequenceNumber! },
            checkpointSubSequenceNumber: { N: "0" }
          },
          {
            leaseKey: { S: "123456789012:other-stream:1700000000:shardId-000000000000" },
            leaseCounter: { N: "1" },
            checkpoint: { S: "AT_TIMESTAMP" }
          },
          // A position this library does not know (a newer KCL's, or written by hand): listed apart, not fatal.
          { leaseKey: { S: "shardId-000000000098" }, leaseCounter: { N: "1" }, checkpoint: { S: "SOME_NEW_SENTINEL" } }
        ]
        // The table is CREATING for a moment.
        for (const item of items) {
          yield* Effect.tryPromise(() => sdk.send(new PutItemCommand({ TableName: app, Item: item }))).pipe(
            Effect.retry({ schedule: Schedule.spaced("200 millis"), times: 50 })
          )
        }

        const run = yield* runCli(["leases", app, "--stream", streamName, "--json"])
        expect(run.stderr).toEqual([])
        expect(Exit.isSuccess(run.exit)).toBe(true)
        const doc = JSON.parse(run.stdout) as LeasesJson
        expect((doc as unknown as { unreadable: unknown }).unreadable).toEqual([{
          leaseKey: "shardId-000000000098",
          reason: "shardId-000000000098: checkpoint is not a position: SOME_NEW_SENTINEL"
        }])
        const multiStream = `123456789012:${streamName}:1700000000:${shard!.ShardId!}`
        expect(doc.leases.map((lease) => lease.shardId)).toEqual([
          "123456789012:other-stream:1700000000:shardId-000000000000",
          multiStream,
          `123456789012:${streamName}:1700000000:shardId-000000000041`,
          `123456789012:${streamName}:1700000000:shardId-000000000042`,
          shard!.ShardId!,
          "shardId-000000000099"
        ])
        expect(byKeyOf(doc).get(`123456789012:${streamName}:1700000000:shardId-000000000042`)!.state).toBe("waiting")
        const byKey = byKeyOf(doc)
        // The multi-stream lease of this stream is measured on its shard; one of another stream is not.
        expect(byKey.get(multiStream)!.oldestUnprocessedArrival).toBe(
          stored[1]!.ApproximateArrivalTimestamp!.toISOString()
        )
        expect(byKey.get("123456789012:other-stream:1700000000:shardId-000000000000")).toMatchObject({
          behindMillis: null,
          behindUnknown: "a lease of stream other-stream"
        })
        const kcl = byKey.get(shard!.ShardId!)!
        expect(kcl).toMatchObject({ owner: "kcl-worker-1", counter: 12, checkpoint: stored[1]!.SequenceNumber })
        // Checkpointed inside the second (plain) record: the third is the oldest unprocessed.
        expect(kcl.oldestUnprocessedArrival).toBe(stored[2]!.ApproximateArrivalTimestamp!.toISOString())
        expect(byKey.get("shardId-000000000099")).toMatchObject({
          parentShardIds: ["shardId-000000000097", "shardId-000000000098"],
          behindMillis: null,
          behindUnknown: `GetShardIterator: shard shardId-000000000099 not found in ${streamName}`
        })
      }))

    it.effect("a missing lease table is one line saying what to check, and the table is not created", () =>
      Effect.gen(function*() {
        const app = uniqueApp("missing")
        const run = yield* runCli(["leases", app, "--json"])
        expect(Exit.isFailure(run.exit)).toBe(true)
        expect(run.stdout).toBe("")
        expect(run.stderr).toEqual([
          `effect-kinesis: lease table "${app}" not found: check the application name (or --table), AWS_REGION and DYNAMODB_ENDPOINT`
        ])
        const { sdk } = yield* DynamoDbClient.DynamoDbClient
        const described = yield* Effect.exit(
          Effect.tryPromise(() => sdk.send(new DescribeTableCommand({ TableName: app })))
        )
        expect(Exit.isFailure(described)).toBe(true)
      }))
  })

  describe("stream", () => {
    it.effect("after a split, lists the closed parent and its two open children with their hash ranges", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const parent = shards[0]!.shardId
        yield* admin.splitShard(streamName, parent)
        const run = yield* runCli(["stream", streamName, "--json"])
        expect(run.stderr).toEqual([])
        const view = JSON.parse(run.stdout) as {
          status: string
          mode: string
          retentionHours: number
          shards: ReadonlyArray<
            {
              shardId: string
              open: boolean
              parentShardId: string | null
              startingHashKey: string
              endingHashKey: string
            }
          >
        }
        expect(view.status).toBe("ACTIVE")
        expect(view.mode).toBe("PROVISIONED")
        expect(view.retentionHours).toBe(24)
        expect(view.shards).toHaveLength(3)
        const [closed, ...children] = [...view.shards].sort((a, b) => a.shardId.localeCompare(b.shardId))
        expect(closed).toMatchObject({ shardId: parent, open: false, parentShardId: null })
        expect(children.map((c) => [c.open, c.parentShardId])).toEqual([[true, parent], [true, parent]])
        // The children tile the parent's range.
        const sorted = children.sort((a, b) => (BigInt(a.startingHashKey) < BigInt(b.startingHashKey) ? -1 : 1))
        expect(sorted[0]!.startingHashKey).toBe(closed!.startingHashKey)
        expect(BigInt(sorted[0]!.endingHashKey) + 1n).toBe(BigInt(sorted[1]!.startingHashKey))
        expect(sorted[1]!.endingHashKey).toBe(closed!.endingHashKey)

        const text = yield* runCli(["stream", streamName])
        expect(text.stdout).toContain(
          `stream ${streamName}  ACTIVE  provisioned  retention 24h  2 open / 1 closed shards`
        )
        expect(text.stdout).toMatch(new RegExp(`${parent}\\s+closed\\s+-\\s+00000000–ffffffff\\s+100.0%`))
        expect(text.stdout).toMatch(new RegExp(`open\\s+${parent}\\s+00000000–7fffffff\\s+50.0%`))
      }))

    it.effect("a missing stream is one line saying what to check", () =>
      Effect.gen(function*() {
        const run = yield* runCli(["stream", "no-such-stream"])
        expect(Exit.isFailure(run.exit)).toBe(true)
        expect(run.stdout).toBe("")
        expect(run.stderr).toEqual([
          `effect-kinesis: stream "no-such-stream" not found: check the name, AWS_REGION and KINESIS_ENDPOINT`
        ])
        const tail = yield* runCli(["tail", "no-such-stream", "--limit", "1"])
        expect(tail.stderr).toEqual(run.stderr)
        const leases = yield* runCli(["leases", "whatever", "--stream", "no-such-stream"])
        expect(leases.stderr).toHaveLength(1)
      }))
  })

  describe("errors", () => {
    it.effect("access denied by Kinesis or DynamoDB is one line naming the permission", () =>
      Effect.gen(function*() {
        // An endpoint that refuses every call as AWS does when a policy lacks the action.
        const server = yield* Effect.acquireRelease(
          Effect.promise(() =>
            new Promise<Http.Server>((resolve) => {
              const s = Http.createServer((request, response) => {
                request.resume()
                request.on("end", () => {
                  response.writeHead(400, {
                    "content-type": "application/x-amz-json-1.1",
                    "x-amzn-errortype": "AccessDeniedException"
                  })
                  response.end(JSON.stringify({
                    __type: "AccessDeniedException",
                    message: "User: arn:aws:iam::000000000000:user/ops is not authorized to perform this action"
                  }))
                })
              })
              s.listen(0, "127.0.0.1", () => resolve(s))
            })
          ),
          (s) => Effect.promise(() => new Promise<void>((resolve) => s.close(() => resolve())))
        )
        const endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`
        const config = {
          endpoint,
          region: "us-east-1",
          credentials: { accessKeyId: "ops", secretAccessKey: "ops" }
        }
        const denied = Layer.merge(
          Client.layer({ ...config, httpHandler: "http1" }),
          DynamoDbClient.layer(config)
        )
        const stream = yield* runCli(["stream", "orders"]).pipe(Effect.provide(denied))
        expect(Exit.isFailure(stream.exit)).toBe(true)
        expect(stream.stderr).toEqual([
          `effect-kinesis: access denied to kinesis:DescribeStreamSummary on stream "orders" (AccessDeniedException): grant it to these credentials, or check they are valid`
        ])
        const leases = yield* runCli(["leases", "billing"]).pipe(Effect.provide(denied))
        expect(leases.stderr).toEqual([
          `effect-kinesis: access denied to dynamodb:DescribeTable on table "billing" (AccessDeniedException): grant it to these credentials, or check they are valid`
        ])
      }))
  })

  describe("tail", () => {
    it.effect("across a split, prints every record once, a parent's before its children's per key, aggregates unpacked", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const parent = shards[0]!.shardId
        yield* StreamFixtures.putInOrder(streamName, records("a", 24, 6))
        // A KPL aggregate of three user records, in the parent too.
        const aggregator = Aggregation.makeAggregator({ explicitHashKey: "0" })
        for (const n of [0, 1, 2]) aggregator.add({ partitionKey: `agg-${n}`, data: new TextEncoder().encode(`u${n}`) })
        const aggregate = aggregator.build()!
        yield* StreamFixtures.putInOrder(streamName, [{
          partitionKey: aggregate.partitionKey,
          explicitHashKey: aggregate.explicitHashKey,
          data: aggregate.data
        }])
        yield* admin.splitShard(streamName, parent)
        yield* StreamFixtures.putInOrder(streamName, records("b", 24, 6))

        // The parent's records are printed slowly: were the children read alongside, theirs would come in between.
        const run = yield* runCli(["tail", streamName, "--from", "trim-horizon", "--format", "json", "--limit", "51"], {
          writeDelay: (chunk) => chunk.includes(`"shardId":"${parent}"`) ? "20 millis" : undefined
        })
        expect(run.stderr).toEqual([])
        expect(Exit.isSuccess(run.exit)).toBe(true)
        const printed = run.stdout.trimEnd().split("\n").map((line) =>
          JSON.parse(line) as {
            shardId: string
            partitionKey: string
            sequenceNumber: string
            subSequenceNumber: number
            text?: string
          }
        )
        expect(printed).toHaveLength(51)
        const data = printed.map((r) => r.text)
        // 51 lines, 51 different records: each printed once, none missing.
        expect(new Set(data).size).toBe(51)
        expect(printed.filter((r) => r.text?.startsWith("u")).map((r) => [r.partitionKey, r.subSequenceNumber]))
          .toEqual([["agg-0", 0], ["agg-1", 1], ["agg-2", 2]])
        for (const r of printed) {
          if (r.text!.startsWith("a") || r.text!.startsWith("u")) expect(r.shardId).toBe(parent)
          else expect(r.shardId).not.toBe(parent)
        }
        for (let key = 0; key < 6; key++) {
          const values = printed.filter((r) => r.partitionKey === `key-${key}`).map((r) => r.text)
          const expected = [
            ...records("a", 24, 6).filter((r) => r.partitionKey === `key-${key}`).map((r) => r.data),
            ...records("b", 24, 6).filter((r) => r.partitionKey === `key-${key}`).map((r) => r.data)
          ]
          expect(values).toEqual(expected)
        }
      }))

    it.effect("from latest (the default) prints what is written after it started; from a time, what arrived since", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        yield* StreamFixtures.putInOrder(streamName, records("old", 6, 3))
        yield* Effect.sleep("1500 millis")
        const since = new Date()
        yield* Effect.sleep("500 millis")
        yield* StreamFixtures.putInOrder(streamName, records("mid", 6, 3))

        const fromTime = yield* runCli([
          "tail",
          streamName,
          "--from",
          since.toISOString(),
          "--format",
          "raw",
          "--limit",
          "6"
        ])
        expect(fromTime.stdout.trimEnd().split("\n").sort()).toEqual(records("mid", 6, 3).map((r) => r.data).sort())

        // Records keep coming (as on a live stream) until it has printed six: none of those written before it started.
        const latest = yield* Effect.forkChild(runCli(["tail", streamName, "--format", "raw", "--limit", "6"]))
        let round = 0
        while (latest.pollUnsafe() === undefined) {
          yield* StreamFixtures.putInOrder(streamName, records(`new${round++}-`, 6, 3))
          yield* Effect.sleep("500 millis")
        }
        const run = yield* Fiber.join(latest)
        const printed = run.stdout.trimEnd().split("\n")
        expect(printed).toHaveLength(6)
        for (const data of printed) expect(data).toMatch(/^new\d+-\d$/)
      }))

    it.effect("text format: one line per record with arrival time, shard, sequence number, key and data", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        yield* StreamFixtures.putInOrder(streamName, [{ partitionKey: "k", data: "hello\nworld" }])
        const run = yield* runCli(["tail", streamName, "--from", "trim-horizon", "--limit", "1"])
        expect(run.stdout).toMatch(
          new RegExp(`^\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z ${shards[0]!.shardId} \\d+ k hello\\\\nworld\\n$`)
        )
      }))

    it.effect("a bad --from is one line naming what is accepted, and nothing runs", () =>
      Effect.gen(function*() {
        const run = yield* runCli(["tail", "s", "--from", "yesterday"])
        expect(Exit.isFailure(run.exit)).toBe(true)
        expect(run.stderr).toEqual([
          `effect-kinesis: Invalid value for flag --from: "yesterday". Expected: latest, trim-horizon or an ISO time like 2026-12-04T10:00:00Z (see: effect-kinesis tail --help)`
        ])
      }))
  })
})
