/**
 * Whose leases a store holds. A consumer reads and writes the leases of its application only: a
 * store keeping several (the in-memory one) gives it the application's own, and a store bound to
 * one (DynamoDB's, a table per application) must be bound to the consumer's, else two
 * applications would take each other's leases of the same shards.
 */
import { InvalidSetting } from "@effect-kinesis/core"
import { Effect } from "effect"
import type { LeaseRepository, MemoryOptions } from "../LeaseRepository.ts"
import * as Memory from "./memoryLeaseRepository.ts"

type Service = LeaseRepository["Service"]

/**
 * The in-memory store: one table per application. Bound to `options.applicationName` when given.
 * Unbound, its own operations act on the table of the first application given to
 * `forApplication` (where the seeded `leases` are), so that a test can read what its consumer
 * wrote; every other application gets an empty table of its own. A copy of the store with some
 * operations replaced (`{ ...store, checkpoint }`, a decorator) keeps its replacements: it is the
 * first application's, and a consumer of another application fails at start.
 *
 * @internal
 */
export const memory = (options: MemoryOptions): Service => {
  const bound = options.applicationName
  const first = Memory.make(options)
  if (bound !== undefined) return { ...first, applicationName: bound }
  const tables = new Map<string, Service>()
  let firstOwner: string | undefined
  const store: Service = {
    ...first,
    forApplication(this: Service | undefined, applicationName: string): Service {
      firstOwner ??= applicationName
      // Called on a copy of the store: its operations, not the bare table's.
      const copy = this !== undefined && this !== store ? this : undefined
      if (applicationName === firstOwner) return copy ?? { ...first, applicationName }
      if (copy !== undefined) return { ...copy, applicationName: firstOwner, forApplication: undefined }
      let table = tables.get(applicationName)
      if (table === undefined) {
        table = { ...Memory.make({ fault: options.fault }), applicationName }
        tables.set(applicationName, table)
      }
      return table
    }
  }
  return store
}

/**
 * The store of the consumer's application, or `InvalidSetting` when the store belongs to another.
 *
 * @internal
 */
export const forConsumer = (
  repository: Service,
  applicationName: string
): Effect.Effect<Service, InvalidSetting.InvalidSetting> =>
  Effect.suspend(() => {
    const store = repository.forApplication?.(applicationName) ?? repository
    return store.applicationName === undefined || store.applicationName === applicationName
      ? Effect.succeed(store)
      : Effect.fail(
        new InvalidSetting.InvalidSetting({
          setting: "applicationName",
          value: applicationName,
          reason:
            `must be the lease store's application name ("${store.applicationName}"): give the consumer and its LeaseRepository layer the same name (e.g. both from KINESIS_APPLICATION_NAME)`
        })
      )
  })
