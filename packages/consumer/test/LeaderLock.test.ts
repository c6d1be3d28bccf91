import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import type * as LeaderLock from "../src/internal/leaderLock.ts"

// An internal module (the package does not export it): loaded by path, which the compiler leaves
// as is, where a static import across the src and test projects does not compile.
const { leadership, observer }: typeof LeaderLock = await import(
  new URL("../src/internal/leaderLock.ts", import.meta.url).href
)

const D = 20_000
const R = 10_000
const lock = (recordVersionNumber: string, owner = "a", released = false): LeaderLock.LockView => ({
  owner,
  recordVersionNumber,
  leaseDurationMillis: D,
  released
})

describe("leader lock: expiry", () => {
  it("expires once its number stood still for the item's duration, counted from the first read that returned it", () => {
    const o = observer("b")
    assert.deepStrictEqual(o.observe(lock("1"), 5_000)._tag, "held")
    assert.deepStrictEqual(o.observe(lock("1"), 24_999)._tag, "held")
    assert.deepStrictEqual(o.observe(lock("1"), 25_000)._tag, "expired")
    // A refresh starts the wait again.
    assert.deepStrictEqual(o.observe(lock("2"), 26_000)._tag, "held")
    assert.deepStrictEqual(o.observe(lock("2"), 45_999)._tag, "held")
    assert.deepStrictEqual(o.observe(lock("2"), 46_000)._tag, "expired")
  })

  it("honours the duration the item carries (a KCL leader's 120 s)", () => {
    const o = observer("b")
    const kcl = { ...lock("x", "kcl-worker"), leaseDurationMillis: 120_000 }
    assert.deepStrictEqual(o.observe(kcl, 0)._tag, "held")
    assert.deepStrictEqual(o.observe(kcl, 119_999)._tag, "held")
    assert.deepStrictEqual(o.observe(kcl, 120_000)._tag, "expired")
  })

  it("absent or released is free at once; one's own lock is mine", () => {
    const o = observer("b")
    assert.deepStrictEqual(o.observe(undefined, 0)._tag, "free")
    assert.deepStrictEqual(o.observe(lock("1", "a", true), 0)._tag, "free")
    assert.deepStrictEqual(o.observe(lock("1", "b"), 0)._tag, "mine")
  })

  it("the holder stops acting one refresh interval before the duration from its last successful send", () => {
    const l = leadership(D, R)
    assert.isFalse(l.isLeader(0))
    l.refreshed(1_000)
    assert.isTrue(l.isLeader(10_999))
    assert.isFalse(l.isLeader(11_000))
    l.refreshed(500) // an older send acknowledged late does not move it back
    assert.isFalse(l.isLeader(11_000))
    l.refreshed(10_000)
    assert.isTrue(l.isLeader(19_999))
    l.lost()
    assert.isFalse(l.isLeader(10_001))
  })

  it("never two leaders: whenever an observer sees the lock expired, the holder has stopped or the number moved on (its acquire is refused)", () => {
    fc.assert(
      fc.property(
        // The holder's refreshes, every R with jitter: latency to land (undefined: lost), latency of the ack (undefined: lost).
        fc.array(
          fc.record({
            jitter: fc.integer({ min: -2_000, max: 2_000 }),
            land: fc.option(fc.integer({ min: 0, max: 4_000 }), { nil: undefined, freq: 8 }),
            ack: fc.option(fc.integer({ min: 0, max: 4_000 }), { nil: undefined, freq: 8 })
          }),
          { maxLength: 12 }
        ),
        // The observer's reads: when sent, time to be served, time back.
        fc.array(
          fc.record({
            at: fc.integer({ min: 0, max: 200_000 }),
            serve: fc.integer({ min: 0, max: 3_000 }),
            back: fc.integer({ min: 0, max: 3_000 })
          }),
          { minLength: 1, maxLength: 40 }
        ),
        (refreshes, reads) => {
          // Write 0 is the acquire: sent, landed and acknowledged at 0.
          const writes = [{ sentAt: 0, landedAt: 0, ackedAt: 0 as number | undefined }]
          refreshes.forEach((r, i) => {
            if (r.land === undefined) return
            const sentAt = (i + 1) * R + r.jitter
            const landedAt = sentAt + r.land
            writes.push({ sentAt, landedAt, ackedAt: r.ack === undefined ? undefined : landedAt + r.ack })
          })
          writes.sort((x, y) => x.landedAt - y.landedAt)
          const storedAt = (t: number) => {
            let current = 0
            writes.forEach((w, i) => {
              if (w.landedAt <= t) current = i
            })
            return current
          }
          const holderIsLeaderAt = (t: number) => {
            const l = leadership(D, R)
            for (const w of writes) if (w.ackedAt !== undefined && w.ackedAt <= t) l.refreshed(w.sentAt)
            return l.isLeader(t)
          }
          const o = observer("b")
          for (const read of [...reads].sort((x, y) => x.at - y.at)) {
            const servedAt = read.at + read.serve
            const completedAt = servedAt + read.back
            const number = storedAt(servedAt)
            const seen = o.observe(lock(String(number)), completedAt)
            if (seen._tag !== "expired") continue
            assert.isTrue(
              storedAt(completedAt) !== number || !holderIsLeaderAt(completedAt),
              `expired at ${completedAt} while the holder leads with number ${number}`
            )
          }
        }
      ),
      { numRuns: 2_000 }
    )
  })
})
