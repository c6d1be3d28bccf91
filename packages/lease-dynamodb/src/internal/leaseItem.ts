/**
 * The KCL lease table's item layout, and conversion between items and `Lease`s.
 *
 * @internal
 */
import type { AttributeValue } from "@aws-sdk/client-dynamodb"
import type { Lease } from "@effect-kinesis/consumer"
import { ExtendedSequenceNumber } from "@effect-kinesis/core"

/** @internal */
export type Item = Record<string, AttributeValue>

/** Attribute names, exactly as the KCL (2.x and 3.x) writes them. @internal */
export const A = {
  leaseKey: "leaseKey",
  leaseOwner: "leaseOwner",
  leaseCounter: "leaseCounter",
  checkpoint: "checkpoint",
  checkpointSubSequenceNumber: "checkpointSubSequenceNumber",
  pendingCheckpoint: "pendingCheckpoint",
  pendingCheckpointSubSequenceNumber: "pendingCheckpointSubSequenceNumber",
  pendingCheckpointState: "pendingCheckpointState",
  ownerSwitchesSinceCheckpoint: "ownerSwitchesSinceCheckpoint",
  parentShardId: "parentShardId",
  childShardIds: "childShardIds",
  startingHashKey: "startingHashKey",
  endingHashKey: "endingHashKey",
  checkpointOwner: "checkpointOwner",
  throughputKBps: "throughputKBps",
  entityType: "entityType",
  // KCL multi-stream leases (`DynamoDBMultiStreamLeaseSerializer`): the serialized stream identifier, and the shard id.
  streamName: "streamName",
  shardId: "shardId"
} as const

/** The `entityType` of leases in KCL 3.5 single-table mode; items without `entityType` are leases too. @internal */
export const LEASE_ENTITY = "LEASE"

/** Whether an item is a lease rather than another KCL entity sharing the table. @internal */
export const isLeaseItem = (item: Item): boolean => {
  const entityType = item[A.entityType]
  return entityType === undefined || entityType.S === LEASE_ENTITY
}

/** Why an item could not be read as a lease. @internal */
export class MalformedItem {
  readonly message: string
  constructor(message: string) {
    this.message = message
  }
}

const string = (item: Item, name: string): string | undefined => item[name]?.S

const number = (item: Item, name: string): number | undefined | MalformedItem => {
  const value = item[name]?.N
  if (value === undefined) return undefined
  const n = Number(value)
  return Number.isSafeInteger(n) ? n : new MalformedItem(`${name} is not an integer: ${value}`)
}

// A measurement, not state a lease's safety depends on: one that is not a finite number reads as none.
const measurement = (item: Item, name: string): number | undefined => {
  const value = item[name]?.N
  const n = value === undefined ? Number.NaN : Number(value)
  return Number.isFinite(n) ? n : undefined
}

// Sets come back in no particular order; sorting makes reads deterministic.
const stringSet = (item: Item, name: string): ReadonlyArray<string> => [...(item[name]?.SS ?? [])].sort()

// Real sequence numbers are 56 digits today and the API allows up to 129, so only the form is checked here.
const canonicalDecimal = /^(0|[1-9][0-9]*)$/

const position = (
  item: Item,
  key: string,
  subKey: string
): ExtendedSequenceNumber.ExtendedSequenceNumber | undefined | MalformedItem => {
  const sequenceNumber = string(item, key)
  if (sequenceNumber === undefined) return undefined
  const sub = number(item, subKey)
  if (sub instanceof MalformedItem) return sub
  return ExtendedSequenceNumber.isSentinelString(sequenceNumber) || canonicalDecimal.test(sequenceNumber)
    ? ExtendedSequenceNumber.make(sequenceNumber, sub ?? 0)
    : new MalformedItem(`${key} is not a position: ${sequenceNumber}`)
}

/**
 * Reads a lease item. Missing numbers read as 0 and a missing checkpoint as TRIM_HORIZON, as the KCL reads them.
 *
 * @internal
 */
export const toLease = (item: Item): Lease.Lease | MalformedItem => {
  const leaseKey = string(item, A.leaseKey)
  if (leaseKey === undefined) return new MalformedItem("leaseKey is missing or not a string")
  const leaseCounter = number(item, A.leaseCounter)
  const ownerSwitches = number(item, A.ownerSwitchesSinceCheckpoint)
  const checkpoint = position(item, A.checkpoint, A.checkpointSubSequenceNumber)
  const pendingCheckpoint = position(item, A.pendingCheckpoint, A.pendingCheckpointSubSequenceNumber)
  for (const value of [leaseCounter, ownerSwitches, checkpoint, pendingCheckpoint]) {
    if (value instanceof MalformedItem) return new MalformedItem(`${leaseKey}: ${value.message}`)
  }
  const startingHashKey = string(item, A.startingHashKey)
  const endingHashKey = string(item, A.endingHashKey)
  const throughputKBps = measurement(item, A.throughputKBps)
  return {
    leaseKey,
    leaseOwner: string(item, A.leaseOwner),
    leaseCounter: (leaseCounter as number | undefined) ?? 0,
    checkpoint: (checkpoint as ExtendedSequenceNumber.ExtendedSequenceNumber | undefined) ??
      ExtendedSequenceNumber.trimHorizon,
    pendingCheckpoint: pendingCheckpoint as ExtendedSequenceNumber.ExtendedSequenceNumber | undefined,
    ownerSwitchesSinceCheckpoint: (ownerSwitches as number | undefined) ?? 0,
    parentShardIds: stringSet(item, A.parentShardId),
    childShardIds: stringSet(item, A.childShardIds),
    hashKeyRange: startingHashKey !== undefined && endingHashKey !== undefined
      ? { startingHashKey, endingHashKey }
      : undefined,
    checkpointOwner: string(item, A.checkpointOwner),
    ...(throughputKBps === undefined ? {} : { throughputKBps }),
    ...multiStream(item)
  }
}

// Only when present, so that single-stream leases read as they always did.
const multiStream = (item: Item): { streamName?: string | undefined; shardId?: string | undefined } => {
  const streamName = string(item, A.streamName)
  const shardId = string(item, A.shardId)
  return streamName === undefined && shardId === undefined ? {} : { streamName, shardId }
}

/** @internal */
export const S = (value: string): AttributeValue => ({ S: value })
/** @internal */
export const N = (value: number): AttributeValue => ({ N: String(value) })
/** DynamoDB rejects empty sets, so an empty list is no attribute at all. @internal */
export const SS = (values: ReadonlyArray<string>): AttributeValue | undefined =>
  values.length === 0 ? undefined : { SS: [...new Set(values)] }

/**
 * The item of a new lease, as the KCL creates one: no owner, counter 0, no owner switches.
 *
 * @internal
 */
export const newLeaseItem = (lease: Lease.Lease): Item => {
  const item: Item = {
    [A.leaseKey]: S(lease.leaseKey),
    [A.leaseCounter]: N(0),
    [A.checkpoint]: S(lease.checkpoint.sequenceNumber),
    [A.checkpointSubSequenceNumber]: N(lease.checkpoint.subSequenceNumber),
    [A.ownerSwitchesSinceCheckpoint]: N(0)
  }
  const parents = SS(lease.parentShardIds)
  if (parents !== undefined) item[A.parentShardId] = parents
  const children = SS(lease.childShardIds)
  if (children !== undefined) item[A.childShardIds] = children
  if (lease.hashKeyRange !== undefined) {
    item[A.startingHashKey] = S(lease.hashKeyRange.startingHashKey)
    item[A.endingHashKey] = S(lease.hashKeyRange.endingHashKey)
  }
  if (lease.streamName !== undefined) item[A.streamName] = S(lease.streamName)
  if (lease.shardId !== undefined) item[A.shardId] = S(lease.shardId)
  return item
}
