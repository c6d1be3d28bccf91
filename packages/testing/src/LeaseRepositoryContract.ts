/**
 * The behaviour every `LeaseRepository` must have, as a reusable `@effect/vitest` suite. A store (in memory, DynamoDB,
 * or a backend of your own) is correct for the consumer exactly when this suite passes against it.
 *
 * @since 0.1.0
 */
import { LeaseRepository } from "@effect-kinesis/consumer"
import type { Lease } from "@effect-kinesis/consumer"
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import { assert, layer } from "@effect/vitest"
import { Duration, Effect, type Layer, Result } from "effect"
import { randomUUID } from "node:crypto"

/**
 * Options of {@link leaseRepositoryContract}.
 *
 * @example
 * ```ts
 * import type * as LeaseRepositoryContract from "@effect-kinesis/testing/LeaseRepositoryContract"
 *
 * const options: LeaseRepositoryContract.ContractOptions = { raceRounds: 10, timeout: "2 minutes" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ContractOptions {
  /** How many times each race is run. Default 20. */
  readonly raceRounds?: number | undefined
  /** Timeout of each test and of building the layer. Default 60 seconds. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * Registers the contract suite for the store built by `repository`. The layer is built once and shared by all tests;
 * every test uses lease keys of its own, so the store need not be empty and may be shared with other suites. Tests
 * run with the real clock (a store may poll, e.g. for a table to become active).
 *
 * @example
 * ```ts
 * import { LeaseRepository } from "@effect-kinesis/consumer"
 * import * as LeaseRepositoryContract from "@effect-kinesis/testing/LeaseRepositoryContract"
 *
 * LeaseRepositoryContract.leaseRepositoryContract("in-memory lease store", LeaseRepository.layerMemory)
 * ```
 *
 * @since 0.1.0
 * @category testing
 */
export const leaseRepositoryContract = <E>(
  name: string,
  repository: Layer.Layer<LeaseRepository.LeaseRepository, E>,
  options: ContractOptions = {}
): void => {
  const rounds = options.raceRounds ?? 20
  const timeout = options.timeout ?? "60 seconds"
  const testTimeout = Duration.toMillis(Duration.fromInputUnsafe(timeout))
  const run = randomUUID().slice(0, 8)
  let keyCount = 0
  const newKey = (label: string) => `shardId-contract-${run}-${label}-${keyCount++}`

  layer(repository, { excludeTestServices: true, timeout })(name, (it) => {
    const Repo = LeaseRepository.LeaseRepository

    it.effect(
      "a created lease reads back unowned, at counter 0, with everything it was created with",
      () =>
        Effect.gen(function*() {
          const repo = yield* Repo
          const lease = newLease(newKey("create"), {
            checkpoint: ExtendedSequenceNumber.latest,
            parentShardIds: ["shardId-000000000001", "shardId-000000000002"],
            hashKeyRange: { startingHashKey: "0", endingHashKey: "170141183460469231731687303715884105727" }
          })
          const created = yield* repo.create(lease)
          assertLease(created, lease)
          assertLease(yield* repo.get(lease.leaseKey), lease)
          assertLease((yield* repo.list).find((l) => l.leaseKey === lease.leaseKey), lease)
        }),
      testTimeout
    )

    it.effect("create ignores the owner, counter and owner switches it is given", () =>
      Effect.gen(function*() {
        const repo = yield* Repo
        const lease = newLease(newKey("create-normalized"))
        const created = yield* repo.create({
          ...lease,
          leaseOwner: "worker-a",
          leaseCounter: 41,
          ownerSwitchesSinceCheckpoint: 3
        })
        assertLease(created, lease)
        assertLease(yield* repo.get(lease.leaseKey), lease)
      }), testTimeout)

    it.effect("a lease without parents or hash range reads back with none", () =>
      Effect.gen(function*() {
        const repo = yield* Repo
        const lease = newLease(newKey("bare"))
        yield* repo.create(lease)
        const stored = yield* repo.get(lease.leaseKey)
        assert.deepStrictEqual(stored?.parentShardIds, [])
        assert.deepStrictEqual(stored?.childShardIds, [])
        assert.strictEqual(stored?.hashKeyRange, undefined)
        assert.strictEqual(stored?.pendingCheckpoint, undefined)
      }), testTimeout)

    it.effect("get of an unknown key is undefined", () =>
      Effect.gen(function*() {
        const repo = yield* Repo
        assert.strictEqual(yield* repo.get(newKey("missing")), undefined)
      }), testTimeout)

    it.effect("list returns every lease with its current state", () =>
      Effect.gen(function*() {
        const repo = yield* Repo
        const keys = [newKey("list"), newKey("list"), newKey("list")]
        for (const key of keys) yield* repo.create(newLease(key))
        const taken = yield* repo.take(newLease(keys[1]!), "worker-a")
        const listed = (yield* repo.list).filter((l) => keys.includes(l.leaseKey))
        assert.deepStrictEqual(listed.map((l) => l.leaseKey).sort(), [...keys].sort())
        assertLease(listed.find((l) => l.leaseKey === keys[1]), taken)
      }), testTimeout)

    it.effect(
      "creating an existing lease fails with LeaseExists and leaves the lease as it was",
      () =>
        Effect.gen(function*() {
          const repo = yield* Repo
          const lease = newLease(newKey("exists"))
          yield* repo.create(lease)
          const taken = yield* repo.take(lease, "worker-a")
          const error = yield* Effect.flip(repo.create(newLease(lease.leaseKey, { checkpoint: sequence("9") })))
          assert.strictEqual(error._tag, "LeaseExists")
          assert.strictEqual((error as LeaseRepository.LeaseExists).leaseKey, lease.leaseKey)
          assertLease(yield* repo.get(lease.leaseKey), taken)
        }),
      testTimeout
    )

    it.effect(
      "take sets the owner, increments the counter and counts a switch only from one owner to another",
      () =>
        Effect.gen(function*() {
          const repo = yield* Repo
          const created = yield* repo.create(newLease(newKey("take")))

          const byA = yield* repo.take(created, "worker-a")
          assertLease(byA, { ...created, leaseOwner: "worker-a", leaseCounter: 1, ownerSwitchesSinceCheckpoint: 0 })

          const byB = yield* repo.take(byA, "worker-b")
          assertLease(byB, { ...created, leaseOwner: "worker-b", leaseCounter: 2, ownerSwitchesSinceCheckpoint: 1 })

          const againByB = yield* repo.take(byB, "worker-b")
          assertLease(againByB, { ...byB, leaseCounter: 3 })
          assertLease(yield* repo.get(created.leaseKey), againByB)
        }),
      testTimeout
    )

    it.effect("take with a stale counter fails with LeaseConflict and changes nothing", () =>
      Effect.gen(function*() {
        const repo = yield* Repo
        const created = yield* repo.create(newLease(newKey("take-stale")))
        const byA = yield* repo.take(created, "worker-a")
        yield* expectConflict(repo.take(created, "worker-b"), created.leaseKey, "take")
        assertLease(yield* repo.get(created.leaseKey), byA)
      }), testTimeout)

    it.effect("take of a lease that does not exist fails with LeaseConflict", () =>
      Effect.gen(function*() {
        const repo = yield* Repo
        const lease = newLease(newKey("take-missing"))
        yield* expectConflict(repo.take(lease, "worker-a"), lease.leaseKey, "take")
        assert.strictEqual(yield* repo.get(lease.leaseKey), undefined)
      }), testTimeout)

    it.effect("renew increments the counter and keeps owner and checkpoint", () =>
      Effect.gen(function*() {
        const repo = yield* Repo
        const created = yield* repo.create(newLease(newKey("renew")))
        const byA = yield* repo.take(created, "worker-a")
        const renewed = yield* repo.renew(byA)
        assertLease(renewed, { ...byA, leaseCounter: byA.leaseCounter + 1 })
        const again = yield* repo.renew(renewed)
        assertLease(again, { ...byA, leaseCounter: byA.leaseCounter + 2 })
        assertLease(yield* repo.get(created.leaseKey), again)
      }), testTimeout)

    it.effect(
      "renew writes the throughput it is given, and every other write keeps the last one written",
      () =>
        Effect.gen(function*() {
          const repo = yield* Repo
          const created = yield* repo.create(newLease(newKey("renew-throughput")))
          const byA = yield* repo.take(created, "worker-a")
          assert.strictEqual(byA.throughputKBps, undefined)
          const measured = yield* repo.renew(byA, 12.345678)
          assertLease(measured, { ...byA, leaseCounter: byA.leaseCounter + 1, throughputKBps: 12.345678 })
          const renewed = yield* repo.renew(measured)
          const checkpointed = yield* repo.checkpoint(renewed, sequence("7"))
          const byB = yield* repo.take(checkpointed, "worker-b")
          assert.strictEqual(byB.throughputKBps, 12.345678)
          const remeasured = yield* repo.renew(byB, 0.5)
          assertLease(yield* repo.get(created.leaseKey), { ...remeasured, throughputKBps: 0.5 })
        }),
      testTimeout
    )

    it.effect(
      "renew fails with LeaseConflict for a stale counter, another owner or an unowned lease",
      () =>
        Effect.gen(function*() {
          const repo = yield* Repo
          const created = yield* repo.create(newLease(newKey("renew-conflict")))
          yield* expectConflict(repo.renew(created), created.leaseKey, "renew")
          const byA = yield* repo.take(created, "worker-a")
          yield* expectConflict(repo.renew(created), created.leaseKey, "renew")
          yield* expectConflict(repo.renew({ ...byA, leaseOwner: "worker-b" }), created.leaseKey, "renew")
          const renewed = yield* repo.renew(byA)
          yield* expectConflict(repo.renew(byA), created.leaseKey, "renew")
          assertLease(yield* repo.get(created.leaseKey), renewed)
        }),
      testTimeout
    )

    it.effect("a stolen lease can no longer be renewed by its previous owner", () =>
      Effect.gen(function*() {
        const repo = yield* Repo
        const created = yield* repo.create(newLease(newKey("stolen")))
        const byA = yield* repo.take(created, "worker-a")
        const byB = yield* repo.take(byA, "worker-b")
        yield* expectConflict(repo.renew(byA), created.leaseKey, "renew")
        yield* expectConflict(repo.checkpoint(byA, sequence("5")), created.leaseKey, "checkpoint")
        yield* expectConflict(repo.release(byA), created.leaseKey, "release")
        assertLease(yield* repo.get(created.leaseKey), byB)
      }), testTimeout)

    it.effect(
      "checkpoint stores sequence and subsequence, resets owner switches and increments the counter",
      () =>
        Effect.gen(function*() {
          const repo = yield* Repo
          const created = yield* repo.create(newLease(newKey("checkpoint")))
          const byA = yield* repo.take(created, "worker-a")
          const byB = yield* repo.take(byA, "worker-b")
          assert.strictEqual(byB.ownerSwitchesSinceCheckpoint, 1)
          const position = ExtendedSequenceNumber.make("49590338271490256608559692538361571095921575989136588898", 7)
          const checkpointed = yield* repo.checkpoint(byB, position)
          assertLease(checkpointed, {
            ...byB,
            leaseCounter: byB.leaseCounter + 1,
            checkpoint: position,
            ownerSwitchesSinceCheckpoint: 0
          })
          assertLease(yield* repo.get(created.leaseKey), checkpointed)
          const later = ExtendedSequenceNumber.make("49590338271490256608559692538361571095921575989136588899")
          const next = yield* repo.checkpoint(checkpointed, later)
          assert.deepStrictEqual((yield* repo.get(created.leaseKey))?.checkpoint, later)
          assert.strictEqual(next.leaseCounter, checkpointed.leaseCounter + 1)
        }),
      testTimeout
    )

    it.effect("every sentinel round-trips as a checkpoint", () =>
      Effect.gen(function*() {
        const repo = yield* Repo
        let lease = yield* repo.create(newLease(newKey("sentinels")))
        lease = yield* repo.take(lease, "worker-a")
        for (
          const sentinel of [
            ExtendedSequenceNumber.atTimestamp,
            ExtendedSequenceNumber.trimHorizon,
            ExtendedSequenceNumber.latest,
            ExtendedSequenceNumber.shardEnd
          ]
        ) {
          lease = yield* repo.checkpoint(lease, sentinel)
          assert.deepStrictEqual(lease.checkpoint, sentinel)
          assert.deepStrictEqual((yield* repo.get(lease.leaseKey))?.checkpoint, sentinel)
        }
      }), testTimeout)

    it.effect("checkpointing SHARD_END with children stores the children", () =>
      Effect.gen(function*() {
        const repo = yield* Repo
        const created = yield* repo.create(newLease(newKey("shard-end")))
        const byA = yield* repo.take(created, "worker-a")
        const children = ["shardId-000000000007", "shardId-000000000008"]
        const ended = yield* repo.checkpoint(byA, ExtendedSequenceNumber.shardEnd, children)
        assertLease(ended, {
          ...byA,
          leaseCounter: byA.leaseCounter + 1,
          checkpoint: ExtendedSequenceNumber.shardEnd,
          childShardIds: children
        })
        assertLease(yield* repo.get(created.leaseKey), ended)
      }), testTimeout)

    it.effect(
      "checkpoint fails with LeaseConflict for a stale counter, another owner or an unowned lease",
      () =>
        Effect.gen(function*() {
          const repo = yield* Repo
          const created = yield* repo.create(newLease(newKey("checkpoint-conflict")))
          yield* expectConflict(repo.checkpoint(created, sequence("1")), created.leaseKey, "checkpoint")
          const byA = yield* repo.take(created, "worker-a")
          yield* expectConflict(repo.checkpoint(created, sequence("1")), created.leaseKey, "checkpoint")
          yield* expectConflict(
            repo.checkpoint({ ...byA, leaseOwner: "worker-b" }, sequence("1")),
            created.leaseKey,
            "checkpoint"
          )
          assertLease(yield* repo.get(created.leaseKey), byA)
        }),
      testTimeout
    )

    it.effect(
      "release removes the owner, increments the counter, and another worker can take the lease at once",
      () =>
        Effect.gen(function*() {
          const repo = yield* Repo
          const created = yield* repo.create(newLease(newKey("release")))
          const byA = yield* repo.take(created, "worker-a")
          const checkpointed = yield* repo.checkpoint(byA, sequence("100"))
          const released = yield* repo.release(checkpointed)
          assertLease(released, { ...checkpointed, leaseOwner: undefined, leaseCounter: checkpointed.leaseCounter + 1 })
          const stored = yield* repo.get(created.leaseKey)
          assertLease(stored, released)
          assert.strictEqual(stored?.leaseOwner, undefined)

          const byB = yield* repo.take(released, "worker-b")
          assertLease(byB, { ...released, leaseOwner: "worker-b", leaseCounter: released.leaseCounter + 1 })
          assert.deepStrictEqual(byB.checkpoint, sequence("100"))
        }),
      testTimeout
    )

    it.effect(
      "release fails with LeaseConflict for a stale counter, another owner or an unowned lease",
      () =>
        Effect.gen(function*() {
          const repo = yield* Repo
          const created = yield* repo.create(newLease(newKey("release-conflict")))
          yield* expectConflict(repo.release(created), created.leaseKey, "release")
          const byA = yield* repo.take(created, "worker-a")
          yield* expectConflict(repo.release(created), created.leaseKey, "release")
          yield* expectConflict(repo.release({ ...byA, leaseOwner: "worker-b" }), created.leaseKey, "release")
          assertLease(yield* repo.get(created.leaseKey), byA)
        }),
      testTimeout
    )

    it.effect("delete is conditional on the counter", () =>
      Effect.gen(function*() {
        const repo = yield* Repo
        const created = yield* repo.create(newLease(newKey("delete")))
        const byA = yield* repo.take(created, "worker-a")
        yield* expectConflict(repo.delete(created), created.leaseKey, "delete")
        assertLease(yield* repo.get(created.leaseKey), byA)

        yield* repo.delete(byA)
        assert.strictEqual(yield* repo.get(created.leaseKey), undefined)
        assert.isFalse((yield* repo.list).some((l) => l.leaseKey === created.leaseKey))
        yield* expectConflict(repo.delete(byA), created.leaseKey, "delete")
      }), testTimeout)

    it.effect("a deleted lease can be created again from scratch", () =>
      Effect.gen(function*() {
        const repo = yield* Repo
        const created = yield* repo.create(newLease(newKey("recreate")))
        const byA = yield* repo.take(created, "worker-a")
        yield* repo.delete(byA)
        const again = yield* repo.create(newLease(created.leaseKey))
        assertLease(again, newLease(created.leaseKey))
      }), testTimeout)

    it.effect(
      "of concurrent takes of one lease exactly one wins; the others fail with LeaseConflict",
      () =>
        Effect.gen(function*() {
          const repo = yield* Repo
          for (let round = 0; round < rounds; round++) {
            const created = yield* repo.create(newLease(newKey("race-take")))
            const workers = ["worker-a", "worker-b", "worker-c", "worker-d"]
            const results = yield* Effect.forEach(
              workers,
              (worker) => Effect.result(repo.take(created, worker)),
              { concurrency: "unbounded" }
            )
            const winners = results.filter(Result.isSuccess).map((r) => r.success)
            const losers = results.filter(Result.isFailure).map((r) => r.failure)
            assert.strictEqual(winners.length, 1, `round ${round}: ${winners.length} winners`)
            for (const loser of losers) assert.strictEqual(loser._tag, "LeaseConflict")
            const stored = yield* repo.get(created.leaseKey)
            assert.strictEqual(stored?.leaseOwner, winners[0]!.leaseOwner)
            assert.strictEqual(stored?.leaseCounter, 1)
          }
        }),
      testTimeout
    )

    it.effect("a steal racing the owner's checkpoint: exactly one write lands", () =>
      Effect.gen(function*() {
        const repo = yield* Repo
        for (let round = 0; round < rounds; round++) {
          const created = yield* repo.create(newLease(newKey("race-steal")))
          const byA = yield* repo.take(created, "worker-a")
          const position = sequence(String(1000 + round))
          const [checkpoint, steal] = yield* Effect.all([
            Effect.result(repo.checkpoint(byA, position)),
            Effect.result(repo.take(byA, "worker-b"))
          ], { concurrency: "unbounded" })
          assert.strictEqual(
            Number(Result.isSuccess(checkpoint)) + Number(Result.isSuccess(steal)),
            1,
            `round ${round}: checkpoint ${checkpoint._tag}, steal ${steal._tag}`
          )
          const stored = yield* repo.get(created.leaseKey)
          assert.strictEqual(stored?.leaseCounter, byA.leaseCounter + 1)
          if (Result.isSuccess(checkpoint)) {
            assertLease(stored, checkpoint.success)
            assert.deepStrictEqual(stored?.checkpoint, position)
          } else {
            assertLease(stored, Result.getOrThrow(steal))
            assert.deepStrictEqual(stored?.checkpoint, ExtendedSequenceNumber.trimHorizon)
          }
        }
      }), testTimeout)

    // Graceful hand-off (KCL 3.x `checkpointOwner`); only for stores that implement `handOff`.
    const handOffOf = (repo: LeaseRepository.LeaseRepository["Service"]) => {
      assert.isDefined(repo.handOff, "the store has no handOff")
      return repo.handOff!
    }

    it.effect(
      "handOff names the next owner and the current one as checkpoint owner, with the counter unchanged",
      () =>
        Effect.gen(function*() {
          const repo = yield* Repo
          const handOff = handOffOf(repo)
          const created = yield* repo.create(newLease(newKey("hand-off")))
          const byA = yield* repo.take(created, "worker-a")
          const handing = yield* handOff(byA, "worker-b")
          assertLease(handing, { ...byA, leaseOwner: "worker-b", checkpointOwner: "worker-a" })
          assertLease(yield* repo.get(created.leaseKey), handing)
          // Only one hand-off at a time, only from an owned lease, not to its owner.
          yield* expectConflict(handOff(handing, "worker-c"), created.leaseKey, "handOff")
          yield* expectConflict(handOff(byA, "worker-c"), created.leaseKey, "handOff")
          yield* expectConflict(handOff(created, "worker-c"), created.leaseKey, "handOff")
          const other = yield* repo.take(yield* repo.create(newLease(newKey("hand-off-self"))), "worker-a")
          yield* expectConflict(handOff(other, "worker-a"), other.leaseKey, "handOff")
          assertLease(yield* repo.get(created.leaseKey), handing)
        }),
      testTimeout
    )

    it.effect(
      "during a hand-off the checkpoint owner renews and checkpoints; its release completes the hand-off",
      () =>
        Effect.gen(function*() {
          const repo = yield* Repo
          const created = yield* repo.create(newLease(newKey("hand-off-complete")))
          const byA = yield* repo.take(created, "worker-a")
          const handing = yield* handOffOf(repo)(byA, "worker-b")
          // The lease as the owner read it before the hand-off no longer matches.
          yield* expectConflict(repo.renew(byA), created.leaseKey, "renew")
          yield* expectConflict(repo.checkpoint(byA, sequence("5")), created.leaseKey, "checkpoint")
          const renewed = yield* repo.renew(handing)
          assertLease(renewed, { ...handing, leaseCounter: handing.leaseCounter + 1 })
          const checkpointed = yield* repo.checkpoint(renewed, sequence("7"))
          assertLease(checkpointed, {
            ...renewed,
            leaseCounter: renewed.leaseCounter + 1,
            checkpoint: sequence("7"),
            ownerSwitchesSinceCheckpoint: 0
          })
          const released = yield* repo.release(checkpointed)
          assertLease(released, {
            ...checkpointed,
            leaseCounter: checkpointed.leaseCounter + 1,
            leaseOwner: "worker-b",
            checkpointOwner: undefined,
            ownerSwitchesSinceCheckpoint: 1
          })
          assertLease(yield* repo.get(created.leaseKey), released)
          // The next owner takes it as it stands: at the checkpoint the previous owner wrote.
          const byB = yield* repo.take(released, "worker-b")
          assertLease(byB, { ...released, leaseCounter: released.leaseCounter + 1 })
        }),
      testTimeout
    )

    it.effect("handOff back to the checkpoint owner calls the hand-off off", () =>
      Effect.gen(function*() {
        const repo = yield* Repo
        const handOff = handOffOf(repo)
        const created = yield* repo.create(newLease(newKey("hand-off-cancel")))
        const byA = yield* repo.take(created, "worker-a")
        const handing = yield* handOff(byA, "worker-b")
        yield* expectConflict(handOff(handing, "worker-c"), created.leaseKey, "handOff")
        const back = yield* handOff(handing, "worker-a")
        assertLease(back, byA)
        assertLease(yield* repo.get(created.leaseKey), byA)
        // The owner's lease as it read it before the hand-off is good again.
        assertLease(yield* repo.renew(byA), { ...byA, leaseCounter: byA.leaseCounter + 1 })
      }), testTimeout)

    it.effect(
      "a take ends a hand-off in progress (the fallback when the owner does not complete it)",
      () =>
        Effect.gen(function*() {
          const repo = yield* Repo
          const created = yield* repo.create(newLease(newKey("hand-off-take")))
          const byA = yield* repo.take(created, "worker-a")
          const handing = yield* handOffOf(repo)(byA, "worker-b")
          const byB = yield* repo.take(handing, "worker-b")
          assertLease(byB, { ...handing, leaseCounter: handing.leaseCounter + 1, checkpointOwner: undefined })
          yield* expectConflict(repo.renew(handing), created.leaseKey, "renew")
          yield* expectConflict(repo.checkpoint(handing, sequence("9")), created.leaseKey, "checkpoint")
          yield* expectConflict(repo.release(handing), created.leaseKey, "release")
          assertLease(yield* repo.get(created.leaseKey), byB)
        }),
      testTimeout
    )

    it.effect("listOwnedBy returns the leases naming the owner, as stored", () =>
      Effect.gen(function*() {
        const repo = yield* Repo
        assert.isDefined(repo.listOwnedBy, "the store has no listOwnedBy")
        const owner = `worker-${newKey("owner")}`
        const mine = yield* repo.take(yield* repo.create(newLease(newKey("owned-1"))), owner)
        const renewed = yield* repo.renew(yield* repo.take(yield* repo.create(newLease(newKey("owned-2"))), owner))
        yield* repo.take(yield* repo.create(newLease(newKey("not-owned"))), `${owner}-other`)
        const handing = yield* handOffOf(repo)(
          yield* repo.take(yield* repo.create(newLease(newKey("handing"))), `${owner}-other`),
          owner
        )
        // An index may lag a write: wait (briefly) for it.
        let found: ReadonlyArray<Lease.Lease> = []
        for (let attempt = 0; attempt < 50; attempt++) {
          found = yield* repo.listOwnedBy!(owner)
          if (found.length >= 3) break
          yield* Effect.sleep("100 millis")
        }
        const byKey = [...found].sort((a, b) => a.leaseKey.localeCompare(b.leaseKey))
        assert.deepStrictEqual(byKey.map((l) => l.leaseKey), [handing, mine, renewed].map((l) => l.leaseKey).sort())
        for (const expected of [mine, renewed, handing]) {
          assertLease(found.find((l) => l.leaseKey === expected.leaseKey), expected)
        }
      }), testTimeout)

    it.effect("a hand-off racing the owner's release: exactly one lands", () =>
      Effect.gen(function*() {
        const repo = yield* Repo
        for (let round = 0; round < rounds; round++) {
          const created = yield* repo.create(newLease(newKey("race-hand-off")))
          const byA = yield* repo.take(created, "worker-a")
          const [release, handOff] = yield* Effect.all([
            Effect.result(repo.release(byA)),
            Effect.result(handOffOf(repo)(byA, "worker-b"))
          ], { concurrency: "unbounded" })
          assert.strictEqual(
            Number(Result.isSuccess(release)) + Number(Result.isSuccess(handOff)),
            1,
            `round ${round}: release ${release._tag}, hand-off ${handOff._tag}`
          )
          const stored = yield* repo.get(created.leaseKey)
          assertLease(stored, Result.isSuccess(release) ? release.success : Result.getOrThrow(handOff))
        }
      }), testTimeout)

    it.effect("listOwnedKeys returns the keys of the leases naming the owner", () =>
      Effect.gen(function*() {
        const repo = yield* Repo
        assert.isDefined(repo.listOwnedKeys, "the store has no listOwnedKeys")
        const owner = `worker-${newKey("owner-keys")}`
        const mine = yield* repo.take(yield* repo.create(newLease(newKey("keys-1"))), owner)
        const renewed = yield* repo.renew(yield* repo.take(yield* repo.create(newLease(newKey("keys-2"))), owner))
        const released = yield* repo.release(yield* repo.take(yield* repo.create(newLease(newKey("keys-3"))), owner))
        yield* repo.take(yield* repo.create(newLease(newKey("keys-other"))), `${owner}-other`)
        const expected = [mine, renewed].map((l) => l.leaseKey).sort()
        // An index may lag a write: wait (briefly) for it.
        let found: Array<string> = []
        for (let attempt = 0; attempt < 50; attempt++) {
          found = [...(yield* repo.listOwnedKeys!(owner))].sort()
          if (found.length === expected.length && !found.includes(released.leaseKey)) break
          yield* Effect.sleep("100 millis")
        }
        assert.deepStrictEqual(found, expected)
      }), testTimeout)

    // The leader lock (KCL 3.x `LeaderLock`), one per store; only for stores that implement `leaderLock`.
    const lockOf = (repo: LeaseRepository.LeaseRepository["Service"]) =>
      Effect.gen(function*() {
        assert.isDefined(repo.leaderLock, "the store has no leaderLock")
        const locks = repo.leaderLock!
        // Left by an earlier run sharing the store: taken over and released.
        const left = yield* locks.read
        if (left !== undefined) yield* locks.release(yield* locks.acquire("contract-cleaner", 1, left))
        return locks
      })

    it.effect(
      "the leader lock: acquired when absent, refreshed and taken over only at the version read, released by its holder; not a lease",
      () =>
        Effect.gen(function*() {
          const repo = yield* Repo
          const locks = yield* lockOf(repo)
          assert.isUndefined(yield* locks.read)
          const byA = yield* locks.acquire("worker-a", 20_000, undefined)
          assert.deepStrictEqual(
            { owner: byA.owner, leaseDurationMillis: byA.leaseDurationMillis, released: byA.released },
            { owner: "worker-a", leaseDurationMillis: 20_000, released: false }
          )
          assert.deepStrictEqual(yield* locks.read, byA)
          assert.isFalse((yield* repo.list).some((lease) => lease.leaseKey === "Leader"))
          yield* expectConflict(locks.acquire("worker-b", 20_000, undefined), "Leader", "leaderLock")
          yield* expectConflict(
            locks.acquire("worker-b", 20_000, { ...byA, recordVersionNumber: "other" }),
            "Leader",
            "leaderLock"
          )
          const refreshed = yield* locks.refresh(byA)
          assert.notStrictEqual(refreshed.recordVersionNumber, byA.recordVersionNumber)
          assert.deepStrictEqual(yield* locks.read, refreshed)
          yield* expectConflict(locks.refresh(byA), "Leader", "leaderLock")
          yield* expectConflict(locks.refresh({ ...refreshed, owner: "worker-b" }), "Leader", "leaderLock")
          // Taken over at a version seen to stand still (the caller judged it expired).
          yield* expectConflict(locks.acquire("worker-b", 30_000, byA), "Leader", "leaderLock")
          const byB = yield* locks.acquire("worker-b", 30_000, refreshed)
          assert.deepStrictEqual(yield* locks.read, byB)
          assert.deepStrictEqual([byB.owner, byB.leaseDurationMillis], ["worker-b", 30_000])
          yield* expectConflict(locks.refresh(refreshed), "Leader", "leaderLock")
          yield* expectConflict(locks.release(refreshed), "Leader", "leaderLock")
          yield* locks.release(byB)
          assert.isUndefined(yield* locks.read)
        }),
      testTimeout
    )

    it.effect("of concurrent acquires of the leader lock exactly one wins", () =>
      Effect.gen(function*() {
        const repo = yield* Repo
        const locks = yield* lockOf(repo)
        for (let round = 0; round < rounds; round++) {
          const seen = yield* locks.read
          const results = yield* Effect.forEach(
            ["worker-a", "worker-b", "worker-c", "worker-d"],
            (worker) => Effect.result(locks.acquire(worker, 20_000, seen)),
            { concurrency: "unbounded" }
          )
          const winners = results.filter(Result.isSuccess).map((r) => r.success)
          assert.strictEqual(winners.length, 1, `round ${round}: ${winners.length} winners`)
          for (const r of results) if (Result.isFailure(r)) assert.strictEqual(r.failure._tag, "LeaseConflict")
          assert.deepStrictEqual(yield* locks.read, winners[0])
        }
        yield* locks.release((yield* locks.read)!)
      }), testTimeout)
  })
}

const sequence = (sequenceNumber: string) => ExtendedSequenceNumber.make(sequenceNumber)

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

// Shard id lists are sets in the KCL table, so their order is not part of the contract.
const comparable = (lease: Lease.Lease) => ({
  ...lease,
  checkpointOwner: lease.checkpointOwner,
  throughputKBps: lease.throughputKBps,
  parentShardIds: [...lease.parentShardIds].sort(),
  childShardIds: [...lease.childShardIds].sort()
})

const assertLease = (actual: Lease.Lease | undefined, expected: Lease.Lease): void => {
  assert.isDefined(actual, `lease ${expected.leaseKey} is missing`)
  assert.deepStrictEqual(comparable(actual!), comparable(expected))
}

const expectConflict = <A, E extends { readonly _tag: string }, R>(
  effect: Effect.Effect<A, E, R>,
  leaseKey: string,
  operation: LeaseRepository.LeaseConflict["operation"]
) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(effect)
    assert.strictEqual(error._tag, "LeaseConflict", `expected LeaseConflict, got ${error._tag}`)
    const conflict = error as unknown as LeaseRepository.LeaseConflict
    assert.strictEqual(conflict.leaseKey, leaseKey)
    assert.strictEqual(conflict.operation, operation)
  })
