import { Effect } from "effect"
import type { ProducerError } from "../ProducerError.ts"

/** Records that failed for good alike: on one shard, with one error and code. */
interface Group {
  readonly shardId: string | undefined
  readonly error: ProducerError["_tag"]
  readonly code: string | undefined
  count: number
  /** Most attempts one of them had. */
  attempts: number
  /** The last one's error message from Kinesis, if any (never the record). */
  detail: string | undefined
}

/** The AWS error code behind a failure, where there is one. */
const codeOf = (error: ProducerError): string | undefined => {
  switch (error._tag) {
    case "PutFailed":
    case "RecordRejected":
      return error.code
    case "RecordExpired":
      return error.lastError
    default:
      return undefined
  }
}

const attemptsOf = (error: ProducerError): number =>
  error._tag === "PutFailed" || error._tag === "RecordExpired" ? error.attempts : 0

const detailOf = (error: ProducerError): string | undefined =>
  error._tag === "PutFailed" || error._tag === "RecordRejected" ? error.detail : undefined

const describe: Record<ProducerError["_tag"], string> = {
  RecordExpired: "expired unwritten (recordTtl)",
  PutFailed: "failed for good",
  RecordRejected: "rejected by Kinesis as invalid",
  ProducerClosed: "not written before the producer closed",
  BufferFull: "refused: the buffer was full",
  RecordTooLarge: "refused: larger than maxRecordBytes",
  InvalidPartitionKey: "refused: invalid partition key",
  InvalidExplicitHashKey: "refused: invalid explicit hash key",
  SerializationError: "refused: the serde failed"
}

/**
 * Counts records that failed for good, by shard, error and code, so that a storm of them makes
 * one log line per group and interval instead of one per record. Noting is synchronous (the
 * engine calls it); a fiber takes and logs the groups (see `Producer.make`).
 */
export class FailureLog {
  private groups = new Map<string, Group>()
  private waiting: (() => void) | undefined = undefined

  get pending(): boolean {
    return this.groups.size > 0
  }

  note(shardId: string | undefined, error: ProducerError): void {
    const code = codeOf(error)
    const key = `${shardId ?? ""}\u0000${error._tag}\u0000${code ?? ""}`
    let group = this.groups.get(key)
    if (group === undefined) {
      group = { shardId, error: error._tag, code, count: 0, attempts: 0, detail: undefined }
      this.groups.set(key, group)
    }
    group.count++
    const attempts = attemptsOf(error)
    if (attempts > group.attempts) group.attempts = attempts
    group.detail = detailOf(error) ?? group.detail
    const waiting = this.waiting
    if (waiting !== undefined) {
      this.waiting = undefined
      waiting()
    }
  }

  /** Resolves once something was noted (at once if something is). */
  readonly awaitNote: Effect.Effect<void> = Effect.callback<void>((resume) => {
    if (this.pending) return resume(Effect.void)
    this.waiting = () => resume(Effect.void)
    return Effect.sync(() => {
      this.waiting = undefined
    })
  })

  /** Logs every group noted since the last call, one error line each. */
  readonly flush: Effect.Effect<void> = Effect.suspend(() => {
    if (!this.pending) return Effect.void
    const groups = Array.from(this.groups.values())
    this.groups = new Map()
    return Effect.forEach(groups, (group) => {
      const where = group.shardId === undefined ? "" : ` on ${group.shardId}`
      const code = group.code === undefined ? "" : ` (${group.code})`
      const annotations: Record<string, unknown> = { error: group.error, records: group.count }
      if (group.shardId !== undefined) annotations["shardId"] = group.shardId
      if (group.code !== undefined) annotations["errorCode"] = group.code
      if (group.attempts > 0) annotations["attempts"] = group.attempts
      if (group.detail !== undefined) annotations["detail"] = group.detail
      return Effect.logError(
        `Kinesis producer: ${group.count} record${group.count === 1 ? "" : "s"}${where} ${describe[group.error]}${code}`
      ).pipe(Effect.annotateLogs(annotations))
    }, { discard: true })
  })
}
