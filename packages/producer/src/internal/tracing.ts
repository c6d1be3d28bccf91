import { Exit } from "effect"
import type { Clock, Tracer } from "effect"
import type { ProducerError } from "../ProducerError.ts"
import type { Batch, RequestFailure } from "./engine.ts"
import { Entry } from "./entry.ts"

/** Span names and attribute keys (`aws.kinesis.stream_name` is OpenTelemetry's). */
export const names = {
  request: "kinesis.producer.PutRecords",
  record: "kinesis.producer.record",
  stream: "aws.kinesis.stream_name",
  shardId: "aws.kinesis.shard_id",
  shardIds: "aws.kinesis.shard_ids",
  shardCount: "aws.kinesis.shard_count",
  sequenceNumber: "aws.kinesis.sequence_number",
  subSequenceNumber: "aws.kinesis.sub_sequence_number",
  records: "aws.kinesis.records",
  userRecords: "aws.kinesis.user_records",
  bytes: "aws.kinesis.bytes",
  attempt: "aws.kinesis.attempt",
  attempts: "aws.kinesis.attempts",
  outcome: "aws.kinesis.outcome",
  failedRecords: "aws.kinesis.failed_records",
  throttledRecords: "aws.kinesis.throttled_records",
  retriedRecords: "aws.kinesis.retried_records",
  errorCode: "aws.kinesis.error_code",
  error: "aws.kinesis.error"
} as const

/** Shard ids listed on a request's span up to this many; beyond, only their count. */
const MAX_LISTED_SHARDS = 16

/**
 * Record spans: which records get one (a token bucket of `perSecond`, so a burst of a second's
 * worth passes), and how one ends.
 */
export class RecordSpans {
  private tokens: number
  private refilledAt: number
  private readonly perSecond: number
  private readonly clock: Clock.Clock

  constructor(perSecond: number, clock: Clock.Clock, now: number) {
    this.perSecond = perSecond
    this.tokens = perSecond
    this.refilledAt = now
    this.clock = clock
  }

  /** How many of `count` records offered at `now` (ms) get a span. */
  take(count: number, now: number): number {
    const elapsed = now - this.refilledAt
    if (elapsed > 0) {
      this.refilledAt = now
      this.tokens = Math.min(this.perSecond, this.tokens + (elapsed * this.perSecond) / 1000)
    }
    const granted = Math.min(count, Math.floor(this.tokens))
    this.tokens -= granted
    return granted
  }

  /** A failed attempt, as an event on the record's span. */
  retried(entry: Entry, span: Tracer.Span, failure: RequestFailure): void {
    span.event("retry", this.clock.currentTimeNanosUnsafe(), {
      [names.attempt]: entry.attempts,
      [names.errorCode]: failure.errorCode ?? failure.code
    })
  }

  /** Ends a record's span; `entry` is undefined for a record refused before it became one. */
  end(
    entry: Entry | undefined,
    span: Tracer.Span,
    error: ProducerError | undefined,
    shardId: string,
    sequenceNumber: string,
    subSequenceNumber: number,
    request: Tracer.Span | undefined
  ): void {
    const shard = error === undefined ? shardId : entry?.shard?.info.shardId
    if (shard !== undefined && shard !== "") span.attribute(names.shardId, shard)
    span.attribute(names.attempts, entry?.attempts ?? 0)
    if (error === undefined) {
      span.attribute(names.sequenceNumber, sequenceNumber)
      span.attribute(names.subSequenceNumber, subSequenceNumber)
    } else {
      span.attribute(names.error, error._tag)
      const code = "code" in error ? error.code : error._tag === "RecordExpired" ? error.lastError : undefined
      if (typeof code === "string") span.attribute(names.errorCode, code)
    }
    if (request !== undefined) span.addLinks([{ span: request, attributes: {} }])
    span.end(this.clock.currentTimeNanosUnsafe(), error === undefined ? Exit.void : Exit.fail(error))
  }
}

/** The attributes a request's span starts with. */
export const requestAttributes = (stream: string, batch: Batch): Record<string, unknown> => {
  const shards = new Set<string>()
  let attempt = 0
  for (const part of batch.parts) {
    const shard = part.shard
    if (shard !== undefined) shards.add(shard.info.shardId)
    if (part instanceof Entry) {
      if (part.attempts > attempt) attempt = part.attempts
    } else {
      for (const entry of part.entries) if (entry.attempts > attempt) attempt = entry.attempts
    }
  }
  const attributes: Record<string, unknown> = {
    [names.stream]: stream,
    [names.records]: batch.count,
    [names.userRecords]: batch.userRecords,
    [names.bytes]: batch.bytes,
    [names.attempt]: attempt,
    [names.shardCount]: shards.size
  }
  if (shards.size <= MAX_LISTED_SHARDS) attributes[names.shardIds] = Array.from(shards)
  return attributes
}

/** What the answer said, added to the request's span once it is handled. */
export const annotateOutcome = (span: Tracer.Span, batch: Batch): void => {
  const error = batch.requestError
  if (error !== undefined) {
    span.attribute(names.outcome, error.code === "InvalidArgument" ? "rejected" : "failed")
    span.attribute(names.errorCode, error.errorCode ?? error.code)
  } else {
    span.attribute(
      names.outcome,
      batch.failedRecords === 0 ? "ok" : batch.failedRecords === batch.count ? "all-failed" : "partial"
    )
    if (batch.errorCodes !== undefined) {
      for (const [code, count] of batch.errorCodes) span.attribute(`${names.errorCode}.${code}`, count)
    }
  }
  span.attribute(names.failedRecords, batch.failedRecords)
  span.attribute(names.throttledRecords, batch.throttledRecords)
  span.attribute(names.retriedRecords, batch.retriedRecords)
}
