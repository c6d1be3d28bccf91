import { LeaseRepository } from "@effect-kinesis/consumer"
import { ExtendedSequenceNumber } from "@effect-kinesis/core"
import * as LeaseRepositoryContract from "@effect-kinesis/testing/LeaseRepositoryContract"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"

LeaseRepositoryContract.leaseRepositoryContract("in-memory LeaseRepository", LeaseRepository.layerMemory)

describe("in-memory LeaseRepository options", () => {
  const lease = {
    leaseKey: "shardId-000000000000",
    leaseOwner: "worker-a",
    leaseCounter: 7,
    checkpoint: ExtendedSequenceNumber.make("42"),
    pendingCheckpoint: undefined,
    ownerSwitchesSinceCheckpoint: 1,
    parentShardIds: [],
    childShardIds: [],
    hashKeyRange: undefined
  }

  it.effect("starts with the given leases, stored as given", () =>
    Effect.gen(function*() {
      const repo = yield* LeaseRepository.makeMemory({ leases: [lease] })
      assert.deepStrictEqual(yield* repo.list, [lease])
      const renewed = yield* repo.renew(lease)
      assert.strictEqual(renewed.leaseCounter, 8)
    }))

  it.effect("an injected fault fails just that operation and leaves the store untouched", () =>
    Effect.gen(function*() {
      let failures = 2
      const repo = yield* LeaseRepository.makeMemory({
        leases: [lease],
        fault: (operation) =>
          operation === "renew" && failures-- > 0
            ? new LeaseRepository.LeaseStoreError({ operation, message: "throttled", retryable: true })
            : undefined
      })
      for (let i = 0; i < 2; i++) {
        const error = yield* Effect.flip(repo.renew(lease))
        assert.strictEqual(error._tag, "LeaseStoreError")
        assert.deepStrictEqual(yield* repo.get(lease.leaseKey), lease)
      }
      assert.strictEqual((yield* repo.renew(lease)).leaseCounter, 8)
    }))
})
