import {
  CreateTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
  GetItemCommand,
  InternalServerError,
  ProvisionedThroughputExceededException,
  PutItemCommand,
  UpdateItemCommand
} from "@aws-sdk/client-dynamodb"
import type { Emulator } from "@effect-kinesis/testing"
import { DynamoEmulator, DynamoFaultProxy } from "@effect-kinesis/testing"
import { assert, layer } from "@effect/vitest"
import { NodeHttpHandler } from "@smithy/node-http-handler"
import { Effect, Exit, Layer } from "effect"
import { vi } from "vitest"

vi.setConfig({ testTimeout: 30_000 })

const TestLayer = DynamoFaultProxy.layer().pipe(Layer.provideMerge(DynamoEmulator.layer()))

// One attempt per call: every fault must reach the caller as the SDK reports it.
const client = (config: Emulator.EmulatorClientConfig) =>
  Effect.acquireRelease(
    Effect.sync(() => new DynamoDBClient({ ...config, requestHandler: new NodeHttpHandler(), maxAttempts: 1 })),
    (client) => Effect.sync(() => client.destroy())
  )

let tables = 0

/** A fresh table, a client through the proxy and one straight to dynalite, the proxy reset to no faults. */
const setup = Effect.gen(function*() {
  const proxy = yield* DynamoFaultProxy.DynamoFaultProxy
  const dynamo = yield* DynamoEmulator.DynamoEmulator
  yield* proxy.reset
  const direct = yield* client(dynamo.clientConfig)
  const viaProxy = yield* client(proxy.clientConfig)
  const table = `table-${++tables}`
  yield* Effect.promise(() =>
    direct.send(
      new CreateTableCommand({
        TableName: table,
        AttributeDefinitions: [{ AttributeName: "k", AttributeType: "S" }],
        KeySchema: [{ AttributeName: "k", KeyType: "HASH" }],
        BillingMode: "PAY_PER_REQUEST"
      })
    )
  )
  for (let i = 0; i < 100; i++) {
    const described = yield* Effect.promise(() => direct.send(new DescribeTableCommand({ TableName: table })))
    if (described.Table?.TableStatus === "ACTIVE") break
    yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20)))
  }
  return { proxy, direct, viaProxy, table }
})

const attempt = <A>(f: () => Promise<A>) =>
  Effect.promise(() => f().then(() => undefined, (error: unknown) => error as Error & { code?: string }))

const put = (table: string, k: string, v: number) =>
  new PutItemCommand({ TableName: table, Item: { k: { S: k }, v: { N: String(v) } } })

// A lease-style conditional write: bump the counter only if it still has the value read.
const bump = (table: string, k: string, expected: number) =>
  new UpdateItemCommand({
    TableName: table,
    Key: { k: { S: k } },
    UpdateExpression: "SET v = :next",
    ConditionExpression: "v = :expected",
    ExpressionAttributeValues: { ":next": { N: String(expected + 1) }, ":expected": { N: String(expected) } }
  })

const valueOf = (direct: DynamoDBClient, table: string, k: string) =>
  Effect.map(
    Effect.promise(() =>
      direct.send(new GetItemCommand({ TableName: table, Key: { k: { S: k } }, ConsistentRead: true }))
    ),
    (out) => (out.Item?.v?.N === undefined ? undefined : Number(out.Item.v.N))
  )

layer(TestLayer)("DynamoFaultProxy", (it) => {
  it.effect("passes unfaulted requests through unchanged and counts them by operation", () =>
    Effect.gen(function*() {
      const { direct, proxy, table, viaProxy } = yield* setup
      yield* proxy.resetStats
      yield* Effect.promise(() => viaProxy.send(put(table, "a", 1)))
      yield* Effect.promise(() => viaProxy.send(bump(table, "a", 1)))
      const failed = yield* attempt(() => viaProxy.send(bump(table, "a", 1)))
      assert.strictEqual(failed?.name, "ConditionalCheckFailedException")
      assert.strictEqual(yield* valueOf(direct, table, "a"), 2)
      const stats = yield* proxy.stats
      assert.deepStrictEqual(stats.requests, { PutItem: 1, UpdateItem: 2 })
      assert.strictEqual(stats.forwarded, 3)
    }))

  it.effect("throttling answers ProvisionedThroughputExceededException and applies nothing", () =>
    Effect.gen(function*() {
      const { direct, proxy, table, viaProxy } = yield* setup
      yield* proxy.update({ throttleRate: 1 })
      const error = yield* attempt(() => viaProxy.send(put(table, "a", 1)))
      assert.instanceOf(error, ProvisionedThroughputExceededException)
      assert.strictEqual(yield* valueOf(direct, table, "a"), undefined)
      assert.strictEqual((yield* proxy.stats).throttled, 1)
    }))

  it.effect("a 5xx before forwarding is an InternalServerError and applies nothing", () =>
    Effect.gen(function*() {
      const { direct, proxy, table, viaProxy } = yield* setup
      yield* proxy.update({ serverErrorRate: 1 })
      const error = yield* attempt(() => viaProxy.send(put(table, "a", 1)))
      assert.instanceOf(error, InternalServerError)
      assert.strictEqual((error as InternalServerError).$metadata.httpStatusCode, 500)
      assert.strictEqual(yield* valueOf(direct, table, "a"), undefined)
    }))

  it.effect("a 5xx after forwarding fails the call although the conditional write was applied", () =>
    Effect.gen(function*() {
      const { direct, proxy, table, viaProxy } = yield* setup
      yield* Effect.promise(() => direct.send(put(table, "a", 1)))
      yield* proxy.update({ serverErrorAfterForwardRate: 1 })
      const error = yield* attempt(() => viaProxy.send(bump(table, "a", 1)))
      assert.instanceOf(error, InternalServerError)
      assert.strictEqual(yield* valueOf(direct, table, "a"), 2)
      // Retried as is, the write now meets its own earlier success: the ambiguity a lease store must handle.
      yield* proxy.reset
      const retried = yield* attempt(() => viaProxy.send(bump(table, "a", 1)))
      assert.strictEqual(retried?.name, "ConditionalCheckFailedException")
      const stats = yield* proxy.stats
      assert.strictEqual(stats.serverErrorsAfterForward, 0, "reset clears the counters")
    }))

  it.effect("dropped connections fail the call without an answer, before or after the write", () =>
    Effect.gen(function*() {
      const { direct, proxy, table, viaProxy } = yield* setup
      yield* proxy.update({ dropRate: 1 })
      const before = yield* attempt(() => viaProxy.send(put(table, "a", 1)))
      assert.isDefined(before)
      assert.notInstanceOf(before, InternalServerError)
      assert.match(`${before?.name} ${before?.code} ${before?.message}`, /ECONNRESET|socket hang up/)
      assert.strictEqual(yield* valueOf(direct, table, "a"), undefined)

      yield* proxy.update({ dropRate: 0, dropAfterForwardRate: 1 })
      const after = yield* attempt(() => viaProxy.send(put(table, "a", 7)))
      assert.match(`${after?.name} ${after?.code} ${after?.message}`, /ECONNRESET|socket hang up/)
      assert.strictEqual(yield* valueOf(direct, table, "a"), 7)
      const stats = yield* proxy.stats
      assert.strictEqual(stats.droppedConnections, 1)
      assert.strictEqual(stats.droppedAfterForward, 1)
    }))

  it.effect("adds latency, and faults only the selected operations", () =>
    Effect.gen(function*() {
      const { proxy, table, viaProxy } = yield* setup
      yield* proxy.update({ latency: "300 millis", throttleRate: 1, operations: ["UpdateItem"] })
      const started = performance.now()
      yield* Effect.promise(() => viaProxy.send(put(table, "a", 1)))
      const unfaulted = performance.now() - started
      const error = yield* attempt(() => viaProxy.send(bump(table, "a", 1)))
      const faulted = performance.now() - started - unfaulted
      assert.instanceOf(error, ProvisionedThroughputExceededException)
      assert.isAtLeast(faulted, 290)
      assert.isBelow(unfaulted, faulted)
    }))

  it.effect("can be steered from another process through its control endpoint", () =>
    Effect.gen(function*() {
      const { direct, proxy, table, viaProxy } = yield* setup
      const remote = DynamoFaultProxy.control(proxy.endpoint)
      yield* remote.update({ serverErrorAfterForwardRate: 1, latency: "10 millis", operations: ["PutItem"] })
      const settings = yield* proxy.settings
      assert.strictEqual(settings.serverErrorAfterForwardRate, 1)
      assert.deepStrictEqual(settings.operations, ["PutItem"])
      assert.strictEqual((yield* remote.settings).latency, 10)
      const error = yield* attempt(() => viaProxy.send(put(table, "a", 3)))
      assert.instanceOf(error, InternalServerError)
      assert.strictEqual(yield* valueOf(direct, table, "a"), 3)
      assert.strictEqual((yield* remote.stats).serverErrorsAfterForward, 1)
      const rejected = yield* Effect.exit(remote.update({ throttleRate: 2 }))
      assert.isTrue(Exit.isFailure(rejected))
      assert.strictEqual((yield* proxy.settings).throttleRate, 0)
      yield* remote.reset
      assert.deepStrictEqual(yield* proxy.settings, DynamoFaultProxy.defaultSettings)
      assert.deepStrictEqual((yield* proxy.stats).requests, {})
    }))
})
