import {
  type AttributeValue,
  CreateTableCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  GetItemCommand,
  ListTagsOfResourceCommand,
  PutItemCommand,
  ScanCommand
} from "@aws-sdk/client-dynamodb"
import { type Lease, LeaseRepository } from "@effect-kinesis/consumer"
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import { DynamoDbClient, DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { DynamoEmulator } from "@effect-kinesis/testing"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { randomUUID } from "node:crypto"

const ClientLive = Layer.unwrap(Effect.gen(function*() {
  const dynamo = yield* DynamoEmulator.DynamoEmulator
  return DynamoDbClient.layer(dynamo.clientConfig)
}))

const Env = ClientLive.pipe(Layer.provideMerge(DynamoEmulator.layer()))

const tableName = (label: string) => `${label}-${randomUUID().slice(0, 8)}`

type Item = Record<string, AttributeValue>

const sdk = Effect.gen(function*() {
  return (yield* DynamoDbClient.DynamoDbClient).sdk
})

const send = <A>(f: (sdk: DynamoDBClient, abortSignal: AbortSignal) => Promise<A>) =>
  Effect.flatMap(sdk, (client) => Effect.promise((abortSignal) => f(client, abortSignal)))

const rawItem = (table: string, leaseKey: string) =>
  send((client, abortSignal) =>
    client.send(new GetItemCommand({ TableName: table, Key: { leaseKey: { S: leaseKey } }, ConsistentRead: true }), {
      abortSignal
    })
  ).pipe(Effect.map((out) => out.Item))

const putRaw = (table: string, item: Item) =>
  send((client, abortSignal) => client.send(new PutItemCommand({ TableName: table, Item: item }), { abortSignal }))

// Each attribute's DynamoDB type, sets sorted, so one assertion checks names, types and values.
const typed = (item: Item | undefined): Record<string, unknown> =>
  Object.fromEntries(
    Object.entries(item ?? {}).map(([name, value]) => {
      const [type, v] = Object.entries(value).find(([, v]) => v !== undefined)!
      return [name, { [type]: Array.isArray(v) ? [...v].sort() : v }]
    })
  )

const newLease = (leaseKey: string, fields: Partial<Lease.Lease> = {}): Lease.Lease => ({
  leaseKey,
  leaseOwner: undefined,
  leaseCounter: 0,
  checkpoint: ExtendedSequenceNumber.trimHorizon,
  pendingCheckpoint: undefined,
  ownerSwitchesSinceCheckpoint: 0,
  parentShardIds: [],
  childShardIds: [],
  hashKeyRange: undefined,
  ...fields
})

const seq = "49590338271490256608559692538361571095921575989136588898"

layer(Env, { excludeTestServices: true, timeout: "60 seconds" })("DynamoDbLeaseRepository", (it) => {
  it.effect("creates the KCL's table: named after the application, HASH leaseKey (S), on demand", () =>
    Effect.gen(function*() {
      const application = tableName("orders")
      yield* DynamoDbLeaseRepository.make({ applicationName: application })
      const table = (yield* send((client, abortSignal) =>
        client.send(new DescribeTableCommand({ TableName: application }), { abortSignal })
      )).Table!
      assert.strictEqual(table.TableStatus, "ACTIVE")
      assert.deepStrictEqual(table.KeySchema, [{ AttributeName: "leaseKey", KeyType: "HASH" }])
      assert.deepStrictEqual(table.AttributeDefinitions, [{ AttributeName: "leaseKey", AttributeType: "S" }])
      assert.strictEqual(table.BillingModeSummary?.BillingMode, "PAY_PER_REQUEST")
    }))

  it.effect("creates a provisioned, tagged table when asked, skipping what the endpoint cannot do", () =>
    Effect.gen(function*() {
      const application = tableName("provisioned")
      yield* DynamoDbLeaseRepository.make({
        applicationName: "ignored-for-the-table-name",
        tableName: application,
        table: {
          billing: { mode: "PROVISIONED", readCapacityUnits: 7, writeCapacityUnits: 9 },
          tags: { team: "payments", env: "test" },
          deletionProtection: true,
          pointInTimeRecovery: true
        }
      })
      const table = (yield* send((client, abortSignal) =>
        client.send(new DescribeTableCommand({ TableName: application }), { abortSignal })
      )).Table!
      assert.strictEqual(table.ProvisionedThroughput?.ReadCapacityUnits, 7)
      assert.strictEqual(table.ProvisionedThroughput?.WriteCapacityUnits, 9)
      const tags = yield* send((client, abortSignal) =>
        client.send(new ListTagsOfResourceCommand({ ResourceArn: table.TableArn! }), { abortSignal })
      )
      assert.deepStrictEqual(
        Object.fromEntries((tags.Tags ?? []).map((t) => [t.Key, t.Value])),
        { team: "payments", env: "test" }
      )
    }))

  it.effect("fails with LeaseTableNotFound when the table is missing and creating it is not allowed", () =>
    Effect.gen(function*() {
      const application = tableName("missing")
      const error = yield* Effect.flip(
        DynamoDbLeaseRepository.make({ applicationName: application, createTableIfMissing: false })
      )
      assert.strictEqual(error._tag, "LeaseTableNotFound")
      assert.strictEqual((error as DynamoDbLeaseRepository.LeaseTableNotFound).tableName, application)
    }))

  it.effect("refuses a table whose key is not the KCL's", () =>
    Effect.gen(function*() {
      const application = tableName("other-key")
      yield* send((client, abortSignal) =>
        client.send(
          new CreateTableCommand({
            TableName: application,
            KeySchema: [{ AttributeName: "id", KeyType: "HASH" }],
            AttributeDefinitions: [{ AttributeName: "id", AttributeType: "S" }],
            BillingMode: "PAY_PER_REQUEST"
          }),
          { abortSignal }
        )
      )
      const error = yield* Effect.flip(DynamoDbLeaseRepository.make({ applicationName: application }))
      assert.strictEqual(error._tag, "LeaseStoreError")
      assert.isFalse((error as LeaseRepository.LeaseStoreError).retryable)
    }))

  it.effect("writes exactly the KCL's attribute names and types at every step of a lease's life", () =>
    Effect.gen(function*() {
      const application = tableName("schema")
      const repo = yield* DynamoDbLeaseRepository.make({ applicationName: application })
      const key = "shardId-000000000004"
      const hashKeyRange = { startingHashKey: "0", endingHashKey: "170141183460469231731687303715884105727" }

      const created = yield* repo.create(newLease(key, { parentShardIds: ["shardId-000000000001"], hashKeyRange }))
      const base = {
        leaseKey: { S: key },
        checkpointSubSequenceNumber: { N: "0" },
        parentShardId: { SS: ["shardId-000000000001"] },
        startingHashKey: { S: "0" },
        endingHashKey: { S: "170141183460469231731687303715884105727" }
      }
      assert.deepStrictEqual(typed(yield* rawItem(application, key)), {
        ...base,
        leaseCounter: { N: "0" },
        checkpoint: { S: "TRIM_HORIZON" },
        ownerSwitchesSinceCheckpoint: { N: "0" }
      })

      const byA = yield* repo.take(created, "worker-a")
      const byB = yield* repo.take(byA, "worker-b")
      assert.deepStrictEqual(typed(yield* rawItem(application, key)), {
        ...base,
        leaseOwner: { S: "worker-b" },
        leaseCounter: { N: "2" },
        checkpoint: { S: "TRIM_HORIZON" },
        ownerSwitchesSinceCheckpoint: { N: "1" }
      })

      const renewed = yield* repo.renew(byB)
      const checkpointed = yield* repo.checkpoint(renewed, ExtendedSequenceNumber.make(seq, 3))
      assert.deepStrictEqual(typed(yield* rawItem(application, key)), {
        ...base,
        leaseOwner: { S: "worker-b" },
        leaseCounter: { N: "4" },
        checkpoint: { S: seq },
        checkpointSubSequenceNumber: { N: "3" },
        ownerSwitchesSinceCheckpoint: { N: "0" }
      })

      const ended = yield* repo.checkpoint(checkpointed, ExtendedSequenceNumber.shardEnd, [
        "shardId-000000000009",
        "shardId-000000000010"
      ])
      yield* repo.release(ended)
      assert.deepStrictEqual(typed(yield* rawItem(application, key)), {
        ...base,
        leaseCounter: { N: "6" },
        checkpoint: { S: "SHARD_END" },
        childShardIds: { SS: ["shardId-000000000009", "shardId-000000000010"] },
        ownerSwitchesSinceCheckpoint: { N: "0" }
      })
    }))

  it.effect("omits empty shard id sets and a missing hash range instead of writing placeholders", () =>
    Effect.gen(function*() {
      const application = tableName("empty-sets")
      const repo = yield* DynamoDbLeaseRepository.make({ applicationName: application })
      const created = yield* repo.create(newLease("shardId-000000000000"))
      const byA = yield* repo.take(created, "worker-a")
      yield* repo.checkpoint(byA, ExtendedSequenceNumber.shardEnd, [])
      assert.deepStrictEqual(typed(yield* rawItem(application, "shardId-000000000000")), {
        leaseKey: { S: "shardId-000000000000" },
        leaseOwner: { S: "worker-a" },
        leaseCounter: { N: "2" },
        checkpoint: { S: "SHARD_END" },
        checkpointSubSequenceNumber: { N: "0" },
        ownerSwitchesSinceCheckpoint: { N: "0" }
      })
    }))

  it.effect("reads, takes and checkpoints the leases a KCL worker left, and never touches other entities", () =>
    Effect.gen(function*() {
      const application = tableName("kcl")
      // The table as the KCL creates it (provisioned, as KCL 1.x/2.x defaults did).
      yield* send((client, abortSignal) =>
        client.send(
          new CreateTableCommand({
            TableName: application,
            KeySchema: [{ AttributeName: "leaseKey", KeyType: "HASH" }],
            AttributeDefinitions: [{ AttributeName: "leaseKey", AttributeType: "S" }],
            ProvisionedThroughput: { ReadCapacityUnits: 10, WriteCapacityUnits: 10 }
          }),
          { abortSignal }
        )
      )
      const repo = yield* DynamoDbLeaseRepository.make({ applicationName: application, createTableIfMissing: false })

      const parent: Item = {
        leaseKey: { S: "shardId-000000000000" },
        leaseCounter: { N: "17" },
        checkpoint: { S: "SHARD_END" },
        checkpointSubSequenceNumber: { N: "0" },
        ownerSwitchesSinceCheckpoint: { N: "2" },
        childShardIds: { SS: ["shardId-000000000002", "shardId-000000000003"] },
        startingHashKey: { S: "0" },
        endingHashKey: { S: "340282366920938463463374607431768211455" }
      }
      const owned: Item = {
        leaseKey: { S: "shardId-000000000002" },
        leaseOwner: { S: "kcl-worker-1" },
        leaseCounter: { N: "42" },
        checkpoint: { S: seq },
        checkpointSubSequenceNumber: { N: "5" },
        ownerSwitchesSinceCheckpoint: { N: "0" },
        parentShardId: { SS: ["shardId-000000000000"] },
        startingHashKey: { S: "0" },
        endingHashKey: { S: "170141183460469231731687303715884105727" }
      }
      const unowned: Item = {
        leaseKey: { S: "shardId-000000000003" },
        leaseCounter: { N: "3" },
        checkpoint: { S: "TRIM_HORIZON" },
        checkpointSubSequenceNumber: { N: "0" },
        ownerSwitchesSinceCheckpoint: { N: "1" },
        parentShardId: { SS: ["shardId-000000000000"] },
        startingHashKey: { S: "170141183460469231731687303715884105728" },
        endingHashKey: { S: "340282366920938463463374607431768211455" },
        // KCL two-phase checkpoint in progress, a KCL 3.x handoff marker, and an attribute we do not know.
        pendingCheckpoint: { S: "49590338271490256608559692538361571095921575989136588800" },
        pendingCheckpointSubSequenceNumber: { N: "0" },
        checkpointOwner: { S: "kcl-worker-2" },
        throughputKBps: { N: "12.5" }
      }
      const workerMetrics: Item = {
        leaseKey: { S: "kcl-worker-1" },
        entityType: { S: "WORKER_METRICS_STATS" },
        leaseCounter: { N: "0" },
        lastUpdateTime: { N: "1700000000" }
      }
      const explicitLease: Item = {
        leaseKey: { S: "shardId-000000000005" },
        entityType: { S: "LEASE" },
        leaseCounter: { N: "0" },
        checkpoint: { S: "LATEST" },
        checkpointSubSequenceNumber: { N: "0" },
        ownerSwitchesSinceCheckpoint: { N: "0" }
      }
      for (const item of [parent, owned, unowned, workerMetrics, explicitLease]) yield* putRaw(application, item)

      const leases = yield* repo.list
      assert.deepStrictEqual(
        [...leases].sort((a, b) => a.leaseKey.localeCompare(b.leaseKey)),
        [
          {
            leaseKey: "shardId-000000000000",
            leaseOwner: undefined,
            checkpointOwner: undefined,
            leaseCounter: 17,
            checkpoint: ExtendedSequenceNumber.shardEnd,
            pendingCheckpoint: undefined,
            ownerSwitchesSinceCheckpoint: 2,
            parentShardIds: [],
            childShardIds: ["shardId-000000000002", "shardId-000000000003"],
            hashKeyRange: { startingHashKey: "0", endingHashKey: "340282366920938463463374607431768211455" }
          },
          {
            leaseKey: "shardId-000000000002",
            leaseOwner: "kcl-worker-1",
            checkpointOwner: undefined,
            leaseCounter: 42,
            checkpoint: ExtendedSequenceNumber.make(seq, 5),
            pendingCheckpoint: undefined,
            ownerSwitchesSinceCheckpoint: 0,
            parentShardIds: ["shardId-000000000000"],
            childShardIds: [],
            hashKeyRange: { startingHashKey: "0", endingHashKey: "170141183460469231731687303715884105727" }
          },
          {
            leaseKey: "shardId-000000000003",
            leaseOwner: undefined,
            checkpointOwner: "kcl-worker-2",
            leaseCounter: 3,
            checkpoint: ExtendedSequenceNumber.trimHorizon,
            pendingCheckpoint: ExtendedSequenceNumber.make("49590338271490256608559692538361571095921575989136588800"),
            ownerSwitchesSinceCheckpoint: 1,
            parentShardIds: ["shardId-000000000000"],
            childShardIds: [],
            hashKeyRange: {
              startingHashKey: "170141183460469231731687303715884105728",
              endingHashKey: "340282366920938463463374607431768211455"
            },
            throughputKBps: 12.5
          },
          {
            leaseKey: "shardId-000000000005",
            leaseOwner: undefined,
            checkpointOwner: undefined,
            leaseCounter: 0,
            checkpoint: ExtendedSequenceNumber.latest,
            pendingCheckpoint: undefined,
            ownerSwitchesSinceCheckpoint: 0,
            parentShardIds: [],
            childShardIds: [],
            hashKeyRange: undefined
          }
        ]
      )

      // Taking the unowned lease keeps every attribute we do not own and ends the KCL 3.x handoff.
      const unownedLease = leases.find((l) => l.leaseKey === "shardId-000000000003")!
      const taken = yield* repo.take(unownedLease, "effect-worker")
      assert.strictEqual(taken.leaseOwner, "effect-worker")
      assert.strictEqual(taken.leaseCounter, 4)
      assert.strictEqual(taken.ownerSwitchesSinceCheckpoint, 1)
      const afterTake = typed(yield* rawItem(application, "shardId-000000000003"))
      assert.deepStrictEqual(afterTake.throughputKBps, { N: "12.5" })
      assert.strictEqual(afterTake.checkpointOwner, undefined)

      // Checkpointing completes (clears) the KCL's pending two-phase checkpoint.
      const checkpointed = yield* repo.checkpoint(taken, ExtendedSequenceNumber.make(seq, 0))
      assert.strictEqual(checkpointed.pendingCheckpoint, undefined)
      const afterCheckpoint = typed(yield* rawItem(application, "shardId-000000000003"))
      assert.strictEqual(afterCheckpoint.pendingCheckpoint, undefined)
      assert.strictEqual(afterCheckpoint.pendingCheckpointSubSequenceNumber, undefined)
      assert.deepStrictEqual(afterCheckpoint.checkpoint, { S: seq })
      assert.deepStrictEqual(afterCheckpoint.throughputKBps, { N: "12.5" })

      // A renewal writes the throughput it is given (balancing by throughput), as a KCL 3.x renewal does, and keeps
      // the stored one otherwise.
      const measured = yield* repo.renew(checkpointed, 3.015625)
      assert.strictEqual(measured.throughputKBps, 3.015625)
      assert.deepStrictEqual(typed(yield* rawItem(application, "shardId-000000000003")).throughputKBps, {
        N: "3.015625"
      })
      const renewed = yield* repo.renew(measured)
      assert.strictEqual(renewed.throughputKBps, 3.015625)
      assert.strictEqual(renewed.leaseCounter, measured.leaseCounter + 1)

      // Stealing from the KCL worker counts an owner switch, exactly as a KCL taker would.
      const ownedLease = leases.find((l) => l.leaseKey === "shardId-000000000002")!
      const stolen = yield* repo.take(ownedLease, "effect-worker")
      assert.strictEqual(stolen.ownerSwitchesSinceCheckpoint, 1)
      assert.deepStrictEqual(stolen.checkpoint, ExtendedSequenceNumber.make(seq, 5))

      // The KCL worker's next renewal (conditional on the counter it saw) now fails, as it must.
      assert.strictEqual(ownedLease.leaseCounter, 42)
      const kclRenewal = yield* Effect.flip(repo.renew(ownedLease))
      assert.strictEqual(kclRenewal._tag, "LeaseConflict")

      // Other entities are invisible and untouchable.
      assert.strictEqual(yield* repo.get("kcl-worker-1"), undefined)
      const fake = newLease("kcl-worker-1")
      assert.strictEqual((yield* Effect.flip(repo.take(fake, "effect-worker")))._tag, "LeaseConflict")
      assert.strictEqual((yield* Effect.flip(repo.delete(fake)))._tag, "LeaseConflict")
      assert.strictEqual((yield* Effect.flip(repo.create(fake)))._tag, "LeaseExists")
      assert.deepStrictEqual(typed(yield* rawItem(application, "kcl-worker-1")), typed(workerMetrics))
    }))

  it.effect("a malformed lease item is a non-retryable store error, not a silently skipped lease", () =>
    Effect.gen(function*() {
      const application = tableName("malformed")
      const repo = yield* DynamoDbLeaseRepository.make({ applicationName: application })
      yield* putRaw(application, {
        leaseKey: { S: "shardId-000000000000" },
        leaseCounter: { N: "1" },
        checkpoint: { S: "NOT_A_POSITION" }
      })
      const error = yield* Effect.flip(repo.list)
      assert.strictEqual(error._tag, "LeaseStoreError")
      assert.isFalse(error.retryable)
    }))

  it.effect("list pages through a table larger than one Scan page", () =>
    Effect.gen(function*() {
      const application = tableName("paging")
      const repo = yield* DynamoDbLeaseRepository.make({ applicationName: application })
      // ~3 KB of hash keys per item puts well over 1 MB (one Scan page) in the table.
      const padding = "1".repeat(1500)
      const keys = Array.from({ length: 400 }, (_, i) => `shardId-${String(i).padStart(12, "0")}`)
      yield* Effect.forEach(keys, (key) =>
        repo.create(newLease(key, { hashKeyRange: { startingHashKey: padding, endingHashKey: padding } })), {
        concurrency: 16,
        discard: true
      })
      const firstPage = yield* send((client, abortSignal) =>
        client.send(new ScanCommand({ TableName: application, ConsistentRead: true }), { abortSignal })
      )
      assert.isDefined(firstPage.LastEvaluatedKey, "the table must span more than one Scan page")
      const listed = yield* repo.list
      assert.deepStrictEqual(
        listed.map((l) =>
          l.leaseKey
        ).sort(),
        keys
      )
    }))

  it.effect("deleteFinished removes ended leases, parents first, once a child has started and every child has a lease", () =>
    Effect.gen(function*() {
      const application = tableName("cleanup")
      const repo = yield* DynamoDbLeaseRepository.make({ applicationName: application })
      const provide = Effect.provideService(LeaseRepository.LeaseRepository, repo)
      const finish = (lease: Lease.Lease, children: ReadonlyArray<string>) =>
        Effect.flatMap(
          repo.take(lease, "worker-a"),
          (taken) => repo.checkpoint(taken, ExtendedSequenceNumber.shardEnd, children)
        )
      yield* finish(yield* repo.create(newLease("shardId-000000000000")), [
        "shardId-000000000002",
        "shardId-000000000003"
      ])
      // Ended but its children were never recorded: kept.
      yield* finish(yield* repo.create(newLease("shardId-000000000001")), [])
      const childA = yield* repo.create(newLease("shardId-000000000002", { parentShardIds: ["shardId-000000000000"] }))

      // One child has no lease yet, the other has not started.
      assert.deepStrictEqual(yield* provide(DynamoDbLeaseRepository.deleteFinished), [])
      yield* repo.create(newLease("shardId-000000000003", { parentShardIds: ["shardId-000000000000"] }))
      // Both leased, neither started.
      assert.deepStrictEqual(yield* provide(DynamoDbLeaseRepository.deleteFinished), [])

      // Child A is read to its end and its child has started; child B never got a record. Listed
      // children first, the parent still goes first, then A (its parent gone), in one pass.
      const startedA = yield* repo.checkpoint(yield* repo.take(childA, "worker-b"), ExtendedSequenceNumber.make("1"))
      yield* repo.checkpoint(startedA, ExtendedSequenceNumber.shardEnd, ["shardId-000000000004"])
      const grandchild = yield* repo.create(
        newLease("shardId-000000000004", { parentShardIds: ["shardId-000000000002"] })
      )
      const startedGrandchild = yield* repo.checkpoint(
        yield* repo.take(grandchild, "worker-b"),
        ExtendedSequenceNumber.make("7")
      )
      const listed = [...(yield* repo.list)].sort((a, b) => b.leaseKey.localeCompare(a.leaseKey))
      assert.deepStrictEqual(yield* LeaseRepository.deleteFinished(repo, listed), [
        "shardId-000000000000",
        "shardId-000000000002"
      ])
      assert.deepStrictEqual(
        (yield* repo.list).map((l) => l.leaseKey).sort(),
        ["shardId-000000000001", "shardId-000000000003", "shardId-000000000004"]
      )
      assert.strictEqual((yield* repo.get("shardId-000000000004"))?.leaseCounter, startedGrandchild.leaseCounter)
    }))
})

// `interfere` runs the given write by someone else instead of ours, then fails as if the connection dropped.
type Fault = "throttle" | "lose-answer" | "invalid" | { readonly interfere: () => Promise<unknown> } | undefined

// A lease store whose client fails the requests of `commands` as `fault` says, counting them.
const faultyRepository = (
  application: string,
  fault: (attempt: number) => Fault,
  retry: DynamoDbLeaseRepository.RetryOptions = {},
  commands: ReadonlyArray<string> = ["UpdateItemCommand"]
) =>
  Effect.gen(function*() {
    const dynamo = yield* DynamoEmulator.DynamoEmulator
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => DynamoDbClient.makeSdkClient(dynamo.clientConfig)),
      (client) => Effect.sync(() => client.destroy())
    )
    const attempts = { count: 0 }
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (!commands.includes(context.commandName ?? "")) return next(args)
        const injected = fault(++attempts.count)
        if (typeof injected === "object") {
          await injected.interfere()
          throw Object.assign(new Error("socket hang up"), { name: "Error", code: "ECONNRESET" })
        }
        switch (injected) {
          case "throttle":
            throw Object.assign(new Error("Rate of requests exceeds the allowed throughput."), {
              name: "ProvisionedThroughputExceededException",
              $metadata: { httpStatusCode: 400 }
            })
          case "invalid":
            throw Object.assign(new Error("One or more parameter values were invalid"), {
              name: "ValidationException",
              $metadata: { httpStatusCode: 400 }
            })
          case "lose-answer": {
            await next(args)
            throw Object.assign(new Error("We encountered an internal error. Please try again."), {
              name: "InternalServerError",
              $metadata: { httpStatusCode: 500 }
            })
          }
          default:
            return next(args)
        }
      },
      { step: "initialize", name: "injectFaults" }
    )
    const repo = yield* DynamoDbLeaseRepository.make({ applicationName: application, retry }).pipe(
      Effect.provideService(DynamoDbClient.DynamoDbClient, DynamoDbClient.DynamoDbClient.of({ sdk: client }))
    )
    return { repo, attempts }
  })

layer(Env, { excludeTestServices: true, timeout: "60 seconds" })("DynamoDbLeaseRepository under faults", (it) => {
  const ownedLease = (repo: LeaseRepository.LeaseRepository["Service"]) =>
    Effect.flatMap(repo.create(newLease("shardId-000000000000")), (lease) => repo.take(lease, "worker-a"))

  it.effect("throttled writes are retried until they succeed, and land once", () =>
    Effect.gen(function*() {
      const { attempts, repo } = yield* faultyRepository(
        tableName("throttled"),
        (attempt) => attempt >= 2 && attempt <= 4 ? "throttle" : undefined
      )
      const lease = yield* ownedLease(repo)
      const renewed = yield* repo.renew(lease)
      assert.strictEqual(renewed.leaseCounter, lease.leaseCounter + 1)
      assert.strictEqual(attempts.count, 5)
      assert.strictEqual((yield* repo.get(lease.leaseKey))?.leaseCounter, lease.leaseCounter + 1)
    }))

  it.effect("sustained throttling fails with a retryable LeaseStoreError once the retry budget is spent", () =>
    Effect.gen(function*() {
      const { attempts, repo } = yield* faultyRepository(
        tableName("throttled-forever"),
        (attempt) => attempt >= 2 ? "throttle" : undefined,
        { budget: "300 millis", baseDelay: "10 millis" }
      )
      const lease = yield* ownedLease(repo)
      const error = yield* Effect.flip(repo.renew(lease))
      assert.strictEqual(error._tag, "LeaseStoreError")
      assert.isTrue((error as LeaseRepository.LeaseStoreError).retryable)
      assert.isAbove(attempts.count, 2)
      assert.strictEqual((yield* repo.get(lease.leaseKey))?.leaseCounter, lease.leaseCounter)
    }))

  it.effect("a write whose answer was lost is recognised on retry rather than reported as a lost lease", () =>
    Effect.gen(function*() {
      const { attempts, repo } = yield* faultyRepository(
        tableName("lost-answer"),
        (attempt) => attempt === 2 || attempt === 4 ? "lose-answer" : undefined
      )
      const lease = yield* ownedLease(repo)
      const renewed = yield* repo.renew(lease)
      assert.strictEqual(renewed.leaseCounter, lease.leaseCounter + 1)
      assert.strictEqual(renewed.leaseOwner, "worker-a")
      const checkpointed = yield* repo.checkpoint(renewed, ExtendedSequenceNumber.make(seq, 2))
      assert.deepStrictEqual(checkpointed.checkpoint, ExtendedSequenceNumber.make(seq, 2))
      assert.strictEqual(attempts.count, 5)
      assert.strictEqual((yield* repo.get(lease.leaseKey))?.leaseCounter, lease.leaseCounter + 2)
    }))

  it.effect("after a lost answer, a write someone else made still is a LeaseConflict", () =>
    Effect.gen(function*() {
      const application = tableName("lost-answer-stolen")
      const thief = yield* DynamoDbLeaseRepository.make({ applicationName: application })
      let stolen: Lease.Lease | undefined
      const { attempts, repo } = yield* faultyRepository(
        application,
        (attempt) =>
          attempt === 2
            ? {
              interfere: () =>
                Effect.runPromise(
                  Effect.flatMap(thief.get("shardId-000000000000"), (lease) => thief.take(lease!, "worker-b"))
                ).then((lease) => (stolen = lease))
            }
            : undefined
      )
      const lease = yield* ownedLease(repo)
      // worker-a's renewal fails ambiguously while worker-b steals the lease; the retry's condition failure must
      // not be mistaken for worker-a's own renewal having landed.
      const renewal = yield* Effect.flip(repo.renew(lease))
      assert.strictEqual(renewal._tag, "LeaseConflict")
      assert.strictEqual(attempts.count, 3)
      assert.strictEqual(stolen?.leaseCounter, lease.leaseCounter + 1)
      assert.strictEqual((yield* repo.get(lease.leaseKey))?.leaseOwner, "worker-b")
    }))

  it.effect("during a hand-off, the other side's write after a lost answer is not taken for our own", () =>
    Effect.gen(function*() {
      const application = tableName("lost-answer-hand-off")
      const other = yield* DynamoDbLeaseRepository.make({ applicationName: application })
      const handingOver = (owner: string) =>
        Effect.gen(function*() {
          const old = yield* other.get("shardId-000000000000")
          if (old !== undefined) yield* other.delete(old)
          const taken = yield* other.take(yield* other.create(newLease("shardId-000000000000")), owner)
          // worker-b asked worker-a for it: worker-b is the next owner, worker-a still checkpoints.
          return yield* other.handOff!(taken, "worker-b")
        })
      let attempt = 0
      let interference: () => Promise<unknown> = () => Promise.resolve()
      const { repo } = yield* faultyRepository(
        application,
        () => ++attempt === 1 ? { interfere: () => interference() } : undefined
      )

      // worker-a's renewal is cut off while worker-b takes the lease (the hand-off timed out): the
      // counter moved by one, as worker-a's renewal would have moved it.
      const lease = yield* handingOver("worker-a")
      interference = () => Effect.runPromise(other.take(lease, "worker-b"))
      const renewal = yield* Effect.flip(repo.renew(lease))
      assert.strictEqual(renewal._tag, "LeaseConflict")

      // The other way round: worker-b's take is cut off while worker-a renews.
      attempt = 0
      const again = yield* handingOver("worker-a")
      interference = () => Effect.runPromise(other.renew(again))
      const take = yield* Effect.flip(repo.take(again, "worker-b"))
      assert.strictEqual(take._tag, "LeaseConflict")
      const stored = yield* other.get("shardId-000000000000")
      assert.strictEqual(stored?.checkpointOwner, "worker-a")
    }))

  it.effect("a create or delete whose answer was lost is recognised on retry", () =>
    Effect.gen(function*() {
      const { attempts, repo } = yield* faultyRepository(
        tableName("lost-create"),
        (attempt) => attempt === 1 || attempt === 4 ? "lose-answer" : undefined,
        {},
        ["PutItemCommand", "DeleteItemCommand"]
      )
      const created = yield* repo.create(newLease("shardId-000000000000"))
      assert.strictEqual(created.leaseCounter, 0)
      assert.strictEqual(attempts.count, 2)
      assert.strictEqual((yield* Effect.flip(repo.create(newLease("shardId-000000000000"))))._tag, "LeaseExists")
      yield* repo.delete(created)
      assert.strictEqual(attempts.count, 5)
      assert.strictEqual(yield* repo.get("shardId-000000000000"), undefined)
    }))

  it.effect("condition failures and invalid requests are not retried", () =>
    Effect.gen(function*() {
      const { attempts, repo } = yield* faultyRepository(
        tableName("no-retry"),
        (attempt) => attempt === 4 ? "invalid" : undefined
      )
      const lease = yield* ownedLease(repo)
      const renewed = yield* repo.renew(lease)
      assert.strictEqual((yield* Effect.flip(repo.renew(lease)))._tag, "LeaseConflict")
      assert.strictEqual(attempts.count, 3)
      const invalid = yield* Effect.flip(repo.renew(renewed))
      assert.strictEqual(invalid._tag, "LeaseStoreError")
      assert.isFalse((invalid as LeaseRepository.LeaseStoreError).retryable)
      assert.strictEqual(attempts.count, 4)
    }))
})
