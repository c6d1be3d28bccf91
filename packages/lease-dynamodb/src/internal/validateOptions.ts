import { InvalidSetting } from "@effect-kinesis/core"
import type { Options } from "../DynamoDbLeaseRepository.ts"

const { checkDuration, checkInteger } = InvalidSetting

const invalid = (setting: string, value: unknown, reason: string): InvalidSetting.InvalidSetting =>
  new InvalidSetting.InvalidSetting({ setting, value, reason })

// DynamoDB's rule for table names.
const TABLE_NAME = /^[A-Za-z0-9_.-]{3,255}$/

/**
 * The lease store's options checked before the table is touched: a name DynamoDB would refuse, a
 * capacity or a duration that cannot work fail with `InvalidSetting`.
 *
 * @internal
 */
export const validate = (options: Pick<Options, "applicationName" | "tableName" | "table" | "retry">) => {
  const tableName = options.tableName ?? options.applicationName
  const billing = options.table?.billing
  return InvalidSetting.first([
    typeof options.applicationName === "string" && options.applicationName.length > 0
      ? undefined
      : invalid("applicationName", options.applicationName, "must be a non-empty string"),
    typeof tableName === "string" && TABLE_NAME.test(tableName)
      ? undefined
      : invalid(
        options.tableName === undefined ? "applicationName" : "tableName",
        tableName,
        "must be a DynamoDB table name (3 to 255 of A-Z a-z 0-9 _ - .)"
      ),
    billing?.mode === "PROVISIONED"
      ? InvalidSetting.first([
        checkInteger("table.billing.readCapacityUnits", billing.readCapacityUnits, { min: 1 }),
        checkInteger("table.billing.writeCapacityUnits", billing.writeCapacityUnits, { min: 1 })
      ])
      : undefined,
    checkDuration("table.activeTimeout", options.table?.activeTimeout),
    checkDuration("retry.budget", options.retry?.budget),
    checkDuration("retry.attemptTimeout", options.retry?.attemptTimeout),
    checkDuration("retry.baseDelay", options.retry?.baseDelay)
  ])
}
