import { type DiagnosticEvent, type Lease, LeaseRepository, ShardAssignment } from "@effect-kinesis/consumer"
import { AdminClient } from "@effect-kinesis/core"
import { StreamFixtures } from "@effect-kinesis/testing"
import { describe, expect, layer } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Logger } from "effect"
import { eventually, fastLeases, KinesisLive, millis, put, startWorker, type Worker } from "./fixtures.ts"

const counts = (workers: ReadonlyArray<Worker>) => workers.map((w) => w.held().size)

const records = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ partitionKey: `key-${i % 16}`, data: `${prefix}${i}` }))

const dataOf = (workers: ReadonlyArray<Worker>) => new Set(workers.flatMap((w) => w.seen.map((r) => r.data)))

layer(KinesisLive, { excludeTestServices: true, timeout: "60 seconds" })("Lease coordination", (it) => {
  describe("balancing", () => {
    it.effect("three workers started together converge to a fair share, and a fourth joining takes its share in one round", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 8 })
        const repository = yield* LeaseRepository.makeMemory()
        yield* put(streamName, records("a", 40))
        const workers = yield* Effect.forEach(
          ["w1", "w2", "w3"],
          (workerId) => startWorker({ stream: streamName, workerId, repository })
        )
        yield* eventually(
          Effect.sync(() =>
            counts(workers).reduce((a, b) => a + b, 0) === 8 && counts(workers).every((n) => n >= 2 && n <= 3)
          ),
          "30 seconds",
          "3 workers holding 3/3/2 of 8 shards"
        )

        // Its only full take round (the one that may steal) is its first: a second comes a minute later.
        const fourth = yield* startWorker({
          stream: streamName,
          workerId: "w4",
          repository,
          lease: { ...fastLeases, takeInterval: "1 minute" }
        })
        const all = [...workers, fourth]
        yield* eventually(
          Effect.sync(() => counts(all).every((n) => n === 2)),
          "30 seconds",
          "4 workers holding 2 shards each"
        )
        // Its share came in one go: nothing was taken from it again, and it took exactly its share.
        expect(fourth.events.filter((e) => e._tag === "LeaseAcquired")).toHaveLength(2)
        expect(fourth.events.filter((e) => e._tag === "LeaseLost")).toHaveLength(0)

        yield* put(streamName, records("b", 40))
        yield* eventually(
          Effect.sync(() => dataOf(all).size === 80),
          "30 seconds",
          "all 80 records"
        )
        const leases = yield* repository.list
        expect(new Set(leases.map((l) => l.leaseOwner))).toEqual(new Set(["w1", "w2", "w3", "w4"]))
      }))
  })

  describe("creating leases", () => {
    // A store answering after a few milliseconds, as DynamoDB does (a scan longer than a write),
    // counting create calls.
    const slowStore = (store: LeaseRepository.LeaseRepository["Service"], creates: { n: number }) => ({
      ...store,
      list: Effect.andThen(Effect.sleep("100 millis"), store.list),
      create: (lease: Lease.Lease) =>
        Effect.sleep("20 millis").pipe(
          Effect.andThen(Effect.sync(() => creates.n++)),
          Effect.andThen(store.create(lease))
        )
    })

    it.effect("workers started together on an empty table create each lease about once, not once each", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 16 })
        const store = yield* LeaseRepository.makeMemory()
        const creates = { n: 0 }
        const repository = slowStore(store, creates)
        yield* put(streamName, records("a", 64))
        // A minute between shard syncs: each worker's first is the one counted.
        const lease = { ...fastLeases, shardSyncInterval: "1 minute" } as const
        const workers = yield* Effect.forEach(
          ["w1", "w2", "w3", "w4", "w5", "w6"],
          (workerId) => startWorker({ stream: streamName, workerId, repository, lease }),
          { concurrency: "unbounded" }
        )
        yield* eventually(Effect.sync(() => dataOf(workers).size === 64), "30 seconds", "all 64 records")
        expect(yield* Effect.map(store.list, (leases) => leases.length)).toBe(16)
        // Every worker creating every lease made 87-88 creates here; now 20-21: the first create
        // decides, and a worker that listed the table later may still race one batch of creates
        // (8 at a time) before its first refusal.
        expect(creates.n).toBeLessThanOrEqual(16 + 5 * 8)
      }))

    it.effect("a child shard's lease is never created before its parent's, also when the parent's create fails", () =>
      Effect.gen(function*() {
        const admin = yield* AdminClient.AdminClient
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        // Listed: shard 0 (open), shard 1 (closed), its two children.
        const parent = shards[1]!.shardId
        yield* admin.splitShard(streamName, parent)
        const store = yield* LeaseRepository.makeMemory()
        const orphans: Array<string> = []
        let failParent = true
        const repository: LeaseRepository.LeaseRepository["Service"] = {
          ...store,
          create: (lease) =>
            Effect.gen(function*() {
              if (lease.leaseKey === parent && failParent) {
                // Slower than the others' creates, and then it fails (say, a timeout).
                failParent = false
                yield* Effect.sleep("50 millis")
                return yield* new LeaseRepository.LeaseStoreError({
                  operation: "create",
                  message: "timed out",
                  retryable: true
                })
              }
              yield* Effect.sleep("5 millis")
              const created = yield* store.create(lease)
              for (const p of lease.parentShardIds) {
                if ((yield* store.get(p)) === undefined) orphans.push(`${lease.leaseKey} before ${p}`)
              }
              return created
            })
        }
        yield* startWorker({ stream: streamName, workerId: "w", repository })
        yield* eventually(
          Effect.map(store.list, (leases) => leases.length === 4),
          "20 seconds",
          "all 4 leases"
        )
        expect(orphans).toEqual([])
      }))

    it.effect("a worker whose creates stopped at a refusal syncs again soon, not a shard sync interval later", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 8 })
        const store = yield* LeaseRepository.makeMemory()
        yield* put(streamName, records("a", 32))
        // Another worker creates the first missing lease just before this one, then dies: this
        // worker's first create is refused, and it leaves the rest to that worker.
        let refused = 0
        const repository: LeaseRepository.LeaseRepository["Service"] = {
          ...store,
          create: (lease) =>
            refused > 0 ? store.create(lease) : Effect.andThen(store.create(lease), () => {
              refused++
              return Effect.fail(new LeaseRepository.LeaseExists({ leaseKey: lease.leaseKey }))
            })
        }
        const worker = yield* startWorker({
          stream: streamName,
          workerId: "w1",
          repository,
          lease: { ...fastLeases, shardSyncInterval: "1 minute" }
        })
        yield* eventually(Effect.sync(() => dataOf([worker]).size === 32), "15 seconds", "all 32 records")
        expect(refused).toBe(1)
        expect(yield* Effect.map(store.list, (leases) => leases.length)).toBe(8)
      }))

    it.effect("leases a creating worker never got to are created by the others at their next shard sync", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 8 })
        const store = yield* LeaseRepository.makeMemory()
        const creates = { n: 0 }
        yield* put(streamName, records("a", 32))
        // Each worker's creates stop answering after it created three (as a process that hangs or dies
        // mid-way): the first creator leaves five, the others stopped at their refusal, and each
        // next creator is found at a later shard sync, until all 8 exist.
        const workers = yield* Effect.forEach(
          ["w1", "w2", "w3"],
          (workerId) => {
            const slow = slowStore(store, creates)
            let created = 0
            const repository = {
              ...slow,
              create: (l: Lease.Lease) =>
                created === 3 ? Effect.never : Effect.tap(slow.create(l), () => Effect.sync(() => created++))
            }
            return startWorker({ stream: streamName, workerId, repository })
          },
          { concurrency: "unbounded" }
        )
        yield* eventually(Effect.sync(() => dataOf(workers).size === 32), "30 seconds", "all 32 records")
        expect(yield* Effect.map(store.list, (leases) => leases.length)).toBe(8)
      }))
  })

  describe("renewal", () => {
    it.effect("a worker keeps its leases past the expiry time by renewing them, with no records flowing", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const repository = yield* LeaseRepository.makeMemory()
        const worker = yield* startWorker({ stream: streamName, workerId: "w", repository })
        yield* eventually(Effect.sync(() => worker.held().size === 2), "20 seconds", "both shards held")
        const before = yield* repository.list
        yield* Effect.sleep("3 seconds")
        expect(worker.events.filter((e) => e._tag === "LeaseLost")).toEqual([])
        expect(worker.held().size).toBe(2)
        const after = yield* repository.list
        for (const lease of after) {
          expect(lease.leaseOwner).toBe("w")
          expect(lease.leaseCounter).toBeGreaterThan(before.find((l) => l.leaseKey === lease.leaseKey)!.leaseCounter)
        }
      }))

    it.effect("while the lease table cannot be scanned, take rounds back off and warn about once per take interval, and leases stay renewed", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        let down = false
        const repository = yield* LeaseRepository.makeMemory({
          fault: (operation) =>
            down && operation === "list"
              ? new LeaseRepository.LeaseStoreError({ operation, message: "unreachable", retryable: true })
              : undefined
        })
        const logs: Array<string> = []
        const capture = Logger.make((options) => {
          const message = options.message
          logs.push(Array.isArray(message) ? message.join(" ") : String(message))
        })
        // fastLeases: scans every 200 ms, takes every second.
        const worker = yield* startWorker({ stream: streamName, workerId: "w", repository }).pipe(
          Effect.provide(Logger.layer([capture]))
        )
        yield* eventually(Effect.sync(() => worker.held().size === 2), "20 seconds", "both shards held")

        down = true
        yield* Effect.sleep("3 seconds")
        const warnings = logs.filter((line) => line.startsWith("take round failed")).length
        down = false
        yield* eventually(
          Effect.sync(() => logs.some((line) => line.startsWith("take round succeeded again"))),
          "10 seconds",
          "the recovery logged"
        )

        // Once at the start and at most once per take interval of the outage, not every scan.
        expect(warnings).toBeGreaterThanOrEqual(1)
        expect(warnings).toBeLessThanOrEqual(1 + 3)
        expect(worker.events.filter((e) => e._tag === "LeaseLost")).toEqual([])
        expect(worker.held().size).toBe(2)
      }))

    it.effect("a lease store that fails for good (not retryable) fails the consumer with a typed error instead of looping", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        let broken = false
        const repository = yield* LeaseRepository.makeMemory({
          fault: (operation) =>
            broken && operation === "list"
              ? new LeaseRepository.LeaseStoreError({ operation, message: "table deleted", retryable: false })
              : undefined
        })
        const worker = yield* startWorker({ stream: streamName, workerId: "w", repository })
        yield* eventually(Effect.sync(() => worker.held().size === 2), "20 seconds", "both shards held")
        broken = true
        const exit = yield* Fiber.await(worker.fiber).pipe(Effect.timeout("10 seconds"))
        expect(Exit.isFailure(exit)).toBe(true)
        expect(Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined).toMatchObject({
          _tag: "LeaseStoreError",
          retryable: false
        })
      }))
  })

  describe("manual assignment", () => {
    it.effect("each worker owns exactly the shards its strategy selects", () =>
      Effect.gen(function*() {
        const { shards, streamName } = yield* StreamFixtures.stream({ shardCount: 4 })
        const repository = yield* LeaseRepository.makeMemory()
        const ids = shards.map((s) => s.shardId).sort()
        const evens = new Set([ids[0]!, ids[2]!])
        const odds = new Set([ids[1]!, ids[3]!])
        const even = yield* startWorker({
          stream: streamName,
          workerId: "even",
          repository,
          shardAssignment: ShardAssignment.manual((offered) => offered.filter((id) => evens.has(id)))
        })
        const odd = yield* startWorker({
          stream: streamName,
          workerId: "odd",
          repository,
          shardAssignment: ShardAssignment.manual((offered) => offered.filter((id) => odds.has(id)))
        })
        yield* eventually(
          Effect.sync(() => even.held().size === 2 && odd.held().size === 2),
          "20 seconds",
          "2 + 2"
        )
        expect(even.held()).toEqual(evens)
        expect(odd.held()).toEqual(odds)
      }))
  })

  describe("hand-off", () => {
    it.effect("a worker shutting down releases its leases and another worker takes them without waiting for expiry", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 4 })
        const repository = yield* LeaseRepository.makeMemory()
        // Expiry far beyond the test: only a release can move a lease. Full take rounds only at
        // each worker's start: after that, only the default 500 ms scan can notice a release.
        const lease = {
          ...fastLeases,
          expiry: "5 minutes",
          renewInterval: "1 second",
          takeInterval: "1 minute",
          scanInterval: "500 millis"
        } as const
        const a = yield* startWorker({ stream: streamName, workerId: "a", repository, lease })
        yield* eventually(Effect.sync(() => a.held().size === 4), "20 seconds", "a holding all shards")
        const b = yield* startWorker({ stream: streamName, workerId: "b", repository, lease })
        yield* eventually(Effect.sync(() => a.held().size === 2 && b.held().size === 2), "20 seconds", "2 + 2")

        yield* put(streamName, records("x", 20))
        yield* eventually(Effect.sync(() => dataOf([a, b]).size === 20), "20 seconds", "first 20 records")
        // a released the 2 leases it handed over to b when b joined; these are the 2 it held.
        const beforeStop = a.events.length
        yield* a.stop
        const stoppedAt = Date.now()
        expect(a.events.slice(beforeStop).filter((e) => e._tag === "LeaseReleased")).toHaveLength(2)

        yield* eventually(Effect.sync(() => b.held().size === 4), "10 seconds", "b holding all shards")
        const handOffMillis = Date.now() - stoppedAt
        expect(handOffMillis).toBeLessThan(1000)
        const taken = b.events.filter((e) => e._tag === "LeaseAcquired").slice(2)
        expect(taken.map((e) => e._tag === "LeaseAcquired" && e.previousOwner)).toEqual([undefined, undefined])

        yield* put(streamName, records("y", 20))
        yield* eventually(
          Effect.sync(() => new Set(b.seen.map((r) => r.data).filter((d) => d.startsWith("y"))).size === 20),
          "20 seconds",
          "b processing every shard"
        )
        // a checkpointed what it processed before leaving: b did not process a's records again.
        const redone = b.seen.filter((r) => r.data.startsWith("x") && a.seen.some((s) => s.data === r.data))
        expect(redone).toEqual([])
      }))

    it.effect("a hand-off asked for and called off while a checkpoint is on its way does not lose the lease", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const store = yield* LeaseRepository.makeMemory()
        const handOff = store.handOff!
        // What another worker does around one checkpoint of w, as seen in a chaos run: it asks for
        // the lease (w's checkpoint is refused), and calls the hand-off off right after w read the
        // lease again (its shutdown does that), so that w's second attempt is refused too.
        let armed = false
        let askedFor = false
        const repository: LeaseRepository.LeaseRepository["Service"] = {
          ...store,
          checkpoint: (lease, position, children) =>
            Effect.gen(function*() {
              if (armed) {
                armed = false
                askedFor = true
                yield* handOff((yield* store.get(lease.leaseKey))!, "other")
              }
              return yield* store.checkpoint(lease, position, children)
            }),
          get: (key) =>
            Effect.tap(store.get(key), (stored) => {
              if (!askedFor || stored?.leaseOwner !== "other") return Effect.void
              askedFor = false
              return Effect.ignore(handOff(stored, stored.checkpointOwner!))
            })
        }
        const w = yield* startWorker({ stream: streamName, workerId: "w", repository })
        yield* eventually(Effect.sync(() => w.held().size === 1), "20 seconds", "w holding the shard")
        yield* put(streamName, records("a", 10))
        yield* eventually(Effect.sync(() => w.seen.length === 10), "20 seconds", "the first 10 records")

        armed = true
        yield* put(streamName, records("b", 10))
        yield* eventually(Effect.sync(() => !armed && !askedFor), "20 seconds", "the hand-off asked for and called off")
        yield* put(streamName, records("c", 10))
        yield* eventually(
          Effect.sync(() => new Set(w.seen.map((r) => r.data)).size === 30),
          "20 seconds",
          "all 30 records"
        )
        // Still w's own: a lease it lost would have been taken again at its last checkpoint, and
        // the records since then processed twice.
        expect(w.events.filter((e) => e._tag === "LeaseLost")).toEqual([])
        expect(w.seen).toHaveLength(30)
      }))
  })

  describe("hand-off races", () => {
    it.effect("a lease asked for again by a third worker after the first called its hand-off off goes to the third, not lost", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const store = yield* LeaseRepository.makeMemory()
        const handOff = store.handOff!
        // During one checkpoint of w: b asks for the lease, and right after w read it back, b calls
        // its hand-off off (b stopping) and c asks for it. The counter never moved: no worker took it.
        let phase: "idle" | "armed" | "asked" | "done" = "idle"
        const repository: LeaseRepository.LeaseRepository["Service"] = {
          ...store,
          checkpoint: (lease, position, children) =>
            Effect.gen(function*() {
              if (phase === "armed") {
                phase = "asked"
                yield* handOff((yield* store.get(lease.leaseKey))!, "b")
              }
              return yield* store.checkpoint(lease, position, children)
            }),
          get: (key) =>
            Effect.tap(
              store.get(key),
              (stored) =>
                phase !== "asked" || stored?.leaseOwner !== "b" ? Effect.void : Effect.gen(function*() {
                  phase = "done"
                  const calledOff = yield* handOff(stored, "w")
                  yield* handOff(calledOff, "c")
                }).pipe(Effect.orDie)
            )
        }
        const w = yield* startWorker({ stream: streamName, workerId: "w", repository })
        yield* eventually(Effect.sync(() => w.held().size === 1), "20 seconds", "w holding the shard")
        yield* put(streamName, records("a", 10))
        yield* eventually(Effect.sync(() => w.seen.length === 10), "20 seconds", "the first 10 records")
        // Their checkpoint written: the next one is of the records put below.
        yield* Effect.sleep("1 second")

        phase = "armed"
        yield* put(streamName, records("b", 10))
        yield* eventually(
          Effect.sync(() => w.events.some((e) => e._tag === "LeaseReleased" || e._tag === "LeaseLost")),
          "20 seconds",
          "w letting go of the lease"
        )
        expect(phase).toBe("done")
        expect(w.events.filter((e) => e._tag === "LeaseLost")).toEqual([])
        // Handed over to c at the last record w processed: c starts right after it.
        const stored = (yield* store.list)[0]!
        expect(stored.leaseOwner).toBe("c")
        expect(stored.checkpointOwner).toBeUndefined()
        expect(w.seen.length).toBeGreaterThan(10)
        expect(new Set(w.seen.map((r) => r.data)).size).toBe(w.seen.length)
        expect(stored.checkpoint.sequenceNumber).toBe(w.seen.at(-1)!.sequenceNumber)
      }))

    it.effect("a hand-off request refused after it landed unanswered is recognised, and the lease taken when handed over", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const store = yield* LeaseRepository.makeMemory()
        const handOff = store.handOff!
        const a = yield* startWorker({ stream: streamName, workerId: "a", repository: store })
        yield* eventually(Effect.sync(() => a.held().size === 2), "20 seconds", "a holding both shards")
        // b's request lands, a renews before b reads the lease again, and b's store sees a refusal
        // (the counter moved since b read it), as the DynamoDB store does after a lost answer.
        let lost = false
        const repository: LeaseRepository.LeaseRepository["Service"] = {
          ...store,
          handOff: (lease, to) =>
            lost || to !== "b" ? handOff(lease, to) : Effect.gen(function*() {
              lost = true
              const landed = yield* handOff(lease, to)
              yield* Effect.orDie(store.renew(landed))
              return yield* new LeaseRepository.LeaseConflict({ leaseKey: lease.leaseKey, operation: "handOff" })
            })
        }
        // One full take round, at its start: after that only the leases it knows are coming are read.
        const b = yield* startWorker({
          stream: streamName,
          workerId: "b",
          repository,
          lease: { ...fastLeases, takeInterval: "1 minute" }
        })
        yield* eventually(Effect.sync(() => lost), "10 seconds", "b's request refused")
        yield* eventually(
          Effect.sync(() => a.held().size === 1 && b.held().size === 1),
          "10 seconds",
          "the lease handed over to b"
        )
        const taken = b.events.find((e) => e._tag === "LeaseAcquired")
        expect(taken?._tag === "LeaseAcquired" && taken.previousOwner).toBe("a")
      }))

    it.effect("a hand-off toward a stopping worker that it never knew of is let go, also when its owner released it meanwhile", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const store = yield* LeaseRepository.makeMemory()
        const handOff = store.handOff!
        // a takes the lease, then stops answering; the test renews the lease for it, so that it
        // looks alive (and is not expired) to w.
        let cutOff = false
        const gate = <A, E>(self: Effect.Effect<A, E>) =>
          Effect.suspend((): Effect.Effect<A, E | LeaseRepository.LeaseStoreError> =>
            cutOff
              ? Effect.fail(
                new LeaseRepository.LeaseStoreError({ operation: "any", message: "cut off", retryable: true })
              )
              : self
          )
        const a = yield* startWorker({
          stream: streamName,
          workerId: "a",
          repository: {
            ...store,
            list: gate(store.list),
            get: (key) => gate(store.get(key)),
            take: (lease, owner) => gate(store.take(lease, owner)),
            renew: (lease, throughput) => gate(store.renew(lease, throughput)),
            checkpoint: (lease, position, children) => gate(store.checkpoint(lease, position, children)),
            release: (lease) => gate(store.release(lease)),
            handOff: (lease, to) => gate(handOff(lease, to))
          }
        })
        yield* eventually(Effect.sync(() => a.held().size === 2), "20 seconds", "a holding both shards")
        cutOff = true
        yield* Effect.forkScoped(Effect.forever(
          Effect.flatMap(store.list, (leases) =>
            Effect.forEach(
              leases.filter((l) => l.leaseOwner === "a" && l.checkpointOwner === undefined),
              (l) => Effect.ignore(store.renew(l))
            )).pipe(Effect.andThen(Effect.sleep("300 millis")))
        ))

        // w asks a for one of its two leases; the request lands, but w never learns it did (refused, and its
        // read back shows the lease as before). When w stops, a has just let go of it: the lease
        // names w alone by the time w calls the hand-off off.
        let asked: Lease.Lease | undefined
        let hide = false
        const repository: LeaseRepository.LeaseRepository["Service"] = {
          ...store,
          handOff: (lease, to) =>
            Effect.gen(function*() {
              if (to === "w" && asked === undefined) {
                asked = lease
                hide = true
                yield* handOff(lease, to)
                return yield* new LeaseRepository.LeaseConflict({ leaseKey: lease.leaseKey, operation: "handOff" })
              }
              if (to === "a") {
                const current = (yield* store.get(lease.leaseKey))!
                yield* Effect.orDie(store.release(current))
              }
              return yield* handOff(lease, to)
            }),
          get: (key) =>
            Effect.suspend(() => {
              if (!hide || asked === undefined) return store.get(key)
              hide = false
              return Effect.succeed(asked)
            })
        }
        const w = yield* startWorker({
          stream: streamName,
          workerId: "w",
          repository,
          lease: { ...fastLeases, takeInterval: "1 minute" }
        })
        yield* eventually(Effect.sync(() => asked !== undefined && !hide), "10 seconds", "w's request, unknown to it")
        yield* w.stop
        const stored = yield* store.get(asked!.leaseKey)
        expect(stored?.leaseOwner).toBeUndefined()
      }))

    it.effect("a renewal cut off at the expiry fences the lease then, not at the next renewal round", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const store = yield* LeaseRepository.makeMemory()
        // From some point on, renewals get no answer at all.
        let hang = false
        let lastRenewed = 0
        const repository: LeaseRepository.LeaseRepository["Service"] = {
          ...store,
          renew: (lease, throughput) =>
            hang ? Effect.never : Effect.tap(store.renew(lease, throughput), () =>
              Effect.sync(() => {
                lastRenewed = Date.now()
              }))
        }
        let lostAt: number | undefined
        // Scans far apart: the take round's own check of the expiry does not come first.
        const lease = {
          ...fastLeases,
          expiry: "3 seconds",
          renewInterval: "1500 millis",
          scanInterval: "10 seconds",
          takeInterval: "10 seconds"
        } as const
        const w = yield* startWorker({
          stream: streamName,
          workerId: "w",
          repository,
          lease,
          onDiagnostic: (event) =>
            Effect.sync(() => {
              if (event._tag === "LeaseLost") lostAt = Date.now()
            })
        })
        yield* eventually(Effect.sync(() => w.held().size === 1), "20 seconds", "w holding the shard")
        yield* Effect.sleep("2 seconds")
        hang = true
        yield* eventually(Effect.sync(() => lostAt !== undefined), "10 seconds", "the lease fenced")
        // One expiry after the last renewal that landed; the next round would be a renewal interval later.
        expect(lostAt! - lastRenewed).toBeLessThan(millis(lease.expiry) + millis(lease.renewInterval) / 2)
        expect(w.events.filter((e) => e._tag === "LeaseLost").map((e) => e._tag === "LeaseLost" && e.reason)).toEqual([
          "expired"
        ])
      }))

    it.effect("a renewal refused while the lease is still ours is written again, so that the lease does not expire early", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 1 })
        const store = yield* LeaseRepository.makeMemory()
        // One renewal lands and its answer is lost (the retry is refused: the counter moved); the
        // next two rounds fail. Counted from the renewal that landed, the expiry is not reached.
        let armedAt: number | undefined
        let arm = false
        const repository: LeaseRepository.LeaseRepository["Service"] = {
          ...store,
          renew: (lease, throughput) =>
            Effect.gen(function*() {
              const now = Date.now()
              if (arm) {
                arm = false
                armedAt = now
                yield* store.renew(lease, throughput)
                return yield* new LeaseRepository.LeaseStoreError({
                  operation: "renew",
                  message: "answer lost",
                  retryable: true
                })
              }
              if (armedAt !== undefined && now - armedAt >= 500 && now - armedAt <= 2500) {
                return yield* new LeaseRepository.LeaseStoreError({
                  operation: "renew",
                  message: "unreachable",
                  retryable: false
                })
              }
              return yield* store.renew(lease, throughput)
            })
        }
        const lease = { ...fastLeases, expiry: "3500 millis", renewInterval: "1 second" } as const
        const w = yield* startWorker({ stream: streamName, workerId: "w", repository, lease })
        yield* eventually(Effect.sync(() => w.held().size === 1), "20 seconds", "w holding the shard")
        yield* Effect.sleep("1500 millis")
        arm = true
        yield* eventually(Effect.sync(() => armedAt !== undefined), "5 seconds", "the renewal whose answer is lost")
        yield* Effect.sleep("4 seconds")
        expect(w.events.filter((e) => e._tag === "LeaseLost")).toEqual([])
        expect(w.held().size).toBe(1)
      }))
  })

  describe("failover", () => {
    it.effect("after a worker dies, every shard it held is taken over within expiry + take interval", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 8 })
        const churn = yield* Churn.make(streamName, 4)
        yield* churn.settled
        const from = Date.now()
        yield* churn.killOldest
        yield* churn.settled
        yield* Effect.sleep("500 millis")
        const gap = churn.longestGap(from)
        // Two scans of slack: a lease's expiry runs from the scan that first saw its last renewal,
        // and it is found expired at a scan.
        expect(gap.millis, gap.shardId).toBeLessThanOrEqual(failoverBound + 2 * millis(fastLeases.scanInterval))
      }))

    it.effect(
      "while a worker dies every expiry and a new one starts, every shard is taken over within twice expiry + take interval",
      () =>
        Effect.gen(function*() {
          const { streamName } = yield* StreamFixtures.stream({ shardCount: 8 })
          const churn = yield* Churn.make(streamName, 3)
          yield* churn.settled
          const from = Date.now()
          // A kill every expiry, its replacement starting half an expiry later: two or three workers
          // live, and leases of dead workers, expired and not yet expired, are always around.
          for (let i = 0; i < 16; i++) {
            yield* churn.killOldest
            yield* Effect.sleep(millis(fastLeases.expiry) / 2)
            yield* churn.startOne
            yield* Effect.sleep(millis(fastLeases.expiry) / 2)
          }
          yield* churn.settled
          yield* Effect.sleep("500 millis")
          const gap = churn.longestGap(from)
          expect(gap.millis, gap.shardId).toBeLessThanOrEqual(2 * failoverBound + 2 * millis(fastLeases.scanInterval))
        }),
      90_000
    )
  })

  describe("shutdown", () => {
    it.effect("workers stopping at the same moment leave no lease naming any of them, also when a take's answer is still in flight", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 12 })
        // Scans every 20 ms: while one worker releases, the others' take rounds are taking.
        const lease = { ...fastLeases, scanInterval: "20 millis", takeInterval: "100 millis" } as const
        const left: Array<string> = []
        for (let trial = 0; trial < 6; trial++) {
          const store = yield* LeaseRepository.makeMemory()
          // The take lands at once and its answer arrives 30 ms later, as over a network: a worker
          // interrupted meanwhile owns the lease without knowing it.
          const repository: LeaseRepository.LeaseRepository["Service"] = {
            ...store,
            take: (l, owner) => Effect.tap(store.take(l, owner), () => Effect.sleep("30 millis"))
          }
          const workers = yield* Effect.forEach(
            ["a", "b", "c"],
            (id) => startWorker({ stream: streamName, workerId: `${id}${trial}`, repository, lease })
          )
          yield* eventually(
            Effect.map(store.list, (leases) => leases.length === 12 && leases.every((l) => l.leaseOwner !== undefined)),
            "20 seconds",
            "all 12 shards held"
          )
          yield* Effect.forEach(workers, (w) => w.stop, { concurrency: "unbounded", discard: true })
          for (const l of yield* store.list) if (l.leaseOwner !== undefined) left.push(`${l.leaseKey}: ${l.leaseOwner}`)
        }
        expect(left).toEqual([])
      }))
  })

  describe("self-fencing", () => {
    it.effect("a worker that cannot renew loses its shards after expiry and can no longer checkpoint", () =>
      Effect.gen(function*() {
        const { streamName } = yield* StreamFixtures.stream({ shardCount: 2 })
        const store = yield* LeaseRepository.makeMemory()
        let partitioned = false
        const unblock = yield* Deferred.make<void>()
        const zombieStore: LeaseRepository.LeaseRepository["Service"] = {
          ...store,
          // It stops renewing (and cannot take leases back); the store would still take its checkpoints.
          renew: (lease) =>
            partitioned
              ? Effect.fail(
                new LeaseRepository.LeaseStoreError({ operation: "renew", message: "unreachable", retryable: true })
              )
              : store.renew(lease),
          take: (lease, owner) =>
            partitioned
              ? Effect.fail(
                new LeaseRepository.LeaseStoreError({ operation: "take", message: "unreachable", retryable: true })
              )
              : store.take(lease, owner)
        }
        const zombie = yield* startWorker({
          stream: streamName,
          workerId: "zombie",
          repository: zombieStore,
          handler: () => partitioned ? Deferred.await(unblock) : Effect.void
        })
        yield* put(streamName, records("z", 10))
        yield* eventually(Effect.sync(() => zombie.seen.length === 10), "20 seconds", "zombie consuming")
        yield* eventually(
          Effect.map(
            store.list,
            (leases) =>
              leases.every((l) =>
                l.checkpoint.sequenceNumber ===
                  zombie.seen.filter((r) => r.shardId === l.leaseKey).at(-1)?.sequenceNumber
              )
          ),
          "20 seconds",
          "zombie checkpointing everything it processed"
        )

        partitioned = true
        const fencedAt = zombie.events.length
        const before = yield* store.list
        yield* put(streamName, records("late", 10))
        // Nobody else is around to take the leases: the store would still accept the zombie's
        // checkpoints, so only self-fencing can stop them.
        yield* eventually(
          Effect.sync(() => zombie.events.filter((e) => e._tag === "LeaseLost" && e.reason === "expired").length === 2),
          "10 seconds",
          "zombie fencing itself"
        )
        yield* Deferred.succeed(unblock, undefined)
        yield* eventually(
          Effect.sync(() => zombie.seen.length > 10),
          "10 seconds",
          "zombie finishing the records it was stuck on"
        )
        yield* Effect.sleep("500 millis")
        // It finished the record each shard was stuck on and processed nothing after it.
        expect(zombie.seen.length).toBeLessThanOrEqual(12)
        expect(zombie.events.slice(fencedAt).filter((e) => e._tag === "Checkpoint")).toEqual([])
        // Losing the leases ended those shards' streams quietly; the zombie's consumer itself runs on.
        expect(zombie.fiber.pollUnsafe()).toBeUndefined()
        expect((yield* store.list).map((l) => l.checkpoint)).toEqual(before.map((l) => l.checkpoint))

        const healthy = yield* startWorker({ stream: streamName, workerId: "healthy", repository: store })
        yield* eventually(Effect.sync(() => healthy.held().size === 2), "20 seconds", "healthy taking both shards")
        yield* eventually(
          Effect.sync(() => new Set(healthy.seen.map((r) => r.data)).size === 10),
          "20 seconds",
          "healthy processing the records the zombie never checkpointed"
        )
        expect(healthy.seen.every((r) => r.data.startsWith("late"))).toBe(true)
        const leases = yield* store.list
        expect(leases.map((l) => l.leaseOwner)).toEqual(["healthy", "healthy"])
      }))
  })
})

// --- failover under churn ------------------------------------------------------------------

const failoverBound = millis(fastLeases.expiry) + millis(fastLeases.takeInterval)

/** A worker on a shared store that can be killed: its store calls fail from then on, as a SIGKILL looks to the others. */
interface Mortal {
  readonly worker: Worker
  readonly startedAt: number
  killedAt: number | undefined
  readonly timeline: Array<{ readonly at: number; readonly event: DiagnosticEvent.DiagnosticEvent }>
}

const Churn = {
  make: (stream: string, initial: number) =>
    Effect.gen(function*() {
      const store = yield* LeaseRepository.makeMemory()
      const mortals: Array<Mortal> = []
      let next = 0
      const startOne = Effect.gen(function*() {
        const timeline: Mortal["timeline"] = []
        let dead = false
        const gate = <A, E>(operation: string, self: Effect.Effect<A, E>) =>
          Effect.suspend((): Effect.Effect<A, E | LeaseRepository.LeaseStoreError> =>
            dead
              ? Effect.fail(new LeaseRepository.LeaseStoreError({ operation, message: "killed", retryable: true }))
              : self
          )
        const repository: LeaseRepository.LeaseRepository["Service"] = {
          list: gate("list", store.list),
          get: (key) => gate("get", store.get(key)),
          create: (lease) => gate("create", store.create(lease)),
          take: (lease, owner) => gate("take", store.take(lease, owner)),
          renew: (lease) => gate("renew", store.renew(lease)),
          checkpoint: (lease, position, children) => gate("checkpoint", store.checkpoint(lease, position, children)),
          release: (lease) => gate("release", store.release(lease)),
          delete: (lease) => gate("delete", store.delete(lease))
        }
        const worker = yield* startWorker({
          stream,
          workerId: `w${next++}`,
          repository,
          onDiagnostic: (event) => Effect.sync(() => timeline.push({ at: Date.now(), event }))
        })
        const mortal: Mortal = { worker, startedAt: Date.now(), killedAt: undefined, timeline }
        mortals.push(mortal)
        return () => {
          dead = true
        }
      })
      const kills = new Map<Mortal, () => void>()
      for (let i = 0; i < initial; i++) {
        const kill = yield* startOne
        kills.set(mortals.at(-1)!, kill)
      }
      const alive = () => mortals.filter((m) => m.killedAt === undefined)
      return {
        startOne: Effect.flatMap(startOne, (kill) => Effect.sync(() => kills.set(mortals.at(-1)!, kill))),
        killOldest: Effect.gen(function*() {
          const victim = alive()[0]!
          victim.killedAt = Date.now()
          kills.get(victim)!()
          // In the background: the others must not wait for it.
          yield* Effect.forkScoped(victim.worker.stop)
        }),
        /** Every shard held by a live worker. */
        settled: eventually(
          Effect.sync(() => new Set(alive().flatMap((m) => [...m.worker.held()])).size === 8),
          "30 seconds",
          "every shard held by a live worker"
        ),
        /** The longest time since `from` that some shard was held by no live worker. */
        longestGap: (from: number) => {
          const until = Date.now()
          const held = new Map<string, Array<[number, number]>>()
          for (const m of mortals) {
            const open = new Map<string, number>()
            const close = (shardId: string, at: number) => {
              const start = open.get(shardId)
              if (start === undefined) return
              open.delete(shardId)
              const spans = held.get(shardId) ?? []
              spans.push([start, at])
              held.set(shardId, spans)
            }
            for (const { at, event } of m.timeline) {
              if (m.killedAt !== undefined && at >= m.killedAt) break
              if (event._tag === "LeaseAcquired") open.set(event.shardId, at)
              if (event._tag === "LeaseLost" || event._tag === "LeaseReleased" || event._tag === "ShardEnded") {
                close(event.shardId, at)
              }
            }
            for (const shardId of [...open.keys()]) close(shardId, m.killedAt ?? until)
          }
          let longest = { shardId: "", millis: 0 }
          for (const [shardId, spans] of held) {
            spans.sort((a, b) => a[0] - b[0])
            let covered = from
            for (const [start, end] of spans) {
              if (start > covered && start - covered > longest.millis) longest = { shardId, millis: start - covered }
              covered = Math.max(covered, end)
            }
            if (until - covered > longest.millis) longest = { shardId, millis: until - covered }
          }
          return longest
        }
      }
    })
}
