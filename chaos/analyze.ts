/**
 * The checks of the chaos run, over what the processes wrote: the producer's acknowledgements (where Kinesis stored
 * each record), every record each worker processed, the stream's shard lineage and the runner's own timeline (kills,
 * stops, fault periods, reshards, when workers ran).
 */
import type { AckLine, ProcessedLine } from "./protocol.ts"

export interface ShardInfo {
  readonly shardId: string
  readonly parents: ReadonlyArray<string>
}

/** Something the runner did that may interrupt processing. */
export interface Disruption {
  readonly kind: "kill" | "stop" | "stop-all" | "kinesis-faults" | "dynamo-faults" | "split" | "merge"
  readonly from: number
  readonly to: number
}

export interface Incarnation {
  readonly label: string
  readonly workerId: string
  readonly lines: ReadonlyArray<ProcessedLine>
  /** When its consumer started (its first event), and when the process exited. */
  readonly started: number | undefined
  readonly ended: number | undefined
  readonly ending: "killed" | "stopped" | "other"
  /** When it reported losing a lease, and why (taken by another worker, or expired), per shard. */
  readonly lost: ReadonlyMap<string, ReadonlyArray<{ readonly t: number; readonly reason: string }>>
}

export interface Input {
  readonly acks: ReadonlyArray<AckLine>
  readonly incarnations: ReadonlyArray<Incarnation>
  readonly shards: ReadonlyArray<ShardInfo>
  readonly disruptions: ReadonlyArray<Disruption>
  /** expiry + takeInterval. */
  readonly targetMillis: number
  /** Added to every target: how late a resume can be seen (a shard's records are fetched once per poll). */
  readonly allowanceMillis: number
  readonly runEnd: number
}

/** A stretch of time when acknowledged records of a shard waited and no worker processed that shard. */
export interface Gap {
  readonly shard: string
  readonly from: number
  readonly to: number
  readonly millis: number
  readonly target: number
  readonly causes: string
}

export interface Check {
  readonly name: string
  readonly ok: boolean
  readonly summary: string
  readonly details: ReadonlyArray<string>
}

const positionKey = (line: { readonly s: string; readonly q: string; readonly u: number }) =>
  `${line.s}/${line.q}/${line.u}`

interface Position {
  readonly shard: string
  readonly seq: bigint
  readonly sub: number
  readonly key: string
  readonly id: number
  ack: number | undefined
  firstProcessed: number | undefined
}

export const analyze = (input: Input) => {
  const checks: Array<Check> = []
  const figures: Array<string> = []

  // --- positions: every place a record was stored, from acks and from what was processed ---
  const positions = new Map<string, Position>()
  const position = (line: AckLine | ProcessedLine): Position => {
    const key = positionKey(line)
    let p = positions.get(key)
    if (p === undefined) {
      p = {
        shard: line.s,
        seq: BigInt(line.q),
        sub: line.u,
        key: line.k,
        id: line.id,
        ack: undefined,
        firstProcessed: undefined
      }
      positions.set(key, p)
    }
    return p
  }
  for (const ack of input.acks) position(ack).ack = ack.t
  const processedIds = new Map<number, number>()
  let processedLines = 0
  for (const incarnation of input.incarnations) {
    for (const line of incarnation.lines) {
      processedLines++
      const p = position(line)
      if (p.firstProcessed === undefined || line.t < p.firstProcessed) p.firstProcessed = line.t
      processedIds.set(line.id, (processedIds.get(line.id) ?? 0) + 1)
    }
  }

  // --- lineage ---
  const parentsOf = new Map(input.shards.map((shard) => [shard.shardId, shard.parents]))
  const ancestors = (shardId: string): Set<string> => {
    const out = new Set<string>()
    const stack = [...(parentsOf.get(shardId) ?? [])]
    while (stack.length > 0) {
      const next = stack.pop()!
      if (out.has(next)) continue
      out.add(next)
      stack.push(...(parentsOf.get(next) ?? []))
    }
    return out
  }
  const ancestorCache = new Map<string, Set<string>>()
  const ancestorsOf = (shardId: string) => {
    let set = ancestorCache.get(shardId)
    if (set === undefined) ancestorCache.set(shardId, set = ancestors(shardId))
    return set
  }
  let unrelated = 0
  const storedOrder = (a: Position, b: Position): number => {
    if (a.shard === b.shard) return a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : a.sub - b.sub
    if (ancestorsOf(b.shard).has(a.shard)) return -1
    if (ancestorsOf(a.shard).has(b.shard)) return 1
    unrelated++
    return a.shard < b.shard ? -1 : 1
  }

  // --- 1. acknowledged but never processed ---
  const ackedIds = new Set(input.acks.map((ack) => ack.id))
  const lost = [...ackedIds].filter((id) => !processedIds.has(id)).sort((a, b) => a - b)
  const lostByShard = new Map<string, number>()
  for (const ack of input.acks) {
    if (!processedIds.has(ack.id)) lostByShard.set(ack.s, (lostByShard.get(ack.s) ?? 0) + 1)
  }
  checks.push({
    name: "acknowledged records processed",
    ok: lost.length === 0,
    summary: `${ackedIds.size - lost.length}/${ackedIds.size} acknowledged records processed, ${lost.length} never`,
    details: lost.length === 0 ? [] : [
      `by shard: ${[...lostByShard].map(([s, n]) => `${s}=${n}`).join(" ")}`,
      `first ids: ${lost.slice(0, 10).join(", ")}`
    ]
  })

  // --- 2. per-key order: first processing follows the order Kinesis stored the records in ---
  const byKey = new Map<string, Array<Position>>()
  for (const p of positions.values()) {
    if (p.firstProcessed === undefined) continue
    let list = byKey.get(p.key)
    if (list === undefined) byKey.set(p.key, list = [])
    list.push(p)
  }
  let orderViolations = 0
  const orderExamples: Array<string> = []
  for (const [key, list] of byKey) {
    list.sort(storedOrder)
    let latest: Position | undefined
    for (const p of list) {
      if (latest !== undefined && p.firstProcessed! < latest.firstProcessed!) {
        orderViolations++
        if (orderExamples.length < 5) {
          orderExamples.push(
            `${key}: id ${p.id} (${p.shard} …${
              String(p.seq).slice(-8)
            }.${p.sub}) first processed at ${p.firstProcessed}, `
              + `${latest.firstProcessed! - p.firstProcessed!} ms before id ${latest.id} `
              + `(${latest.shard} …${String(latest.seq).slice(-8)}.${latest.sub}) stored before it`
          )
        }
      }
      if (latest === undefined || p.firstProcessed! >= latest.firstProcessed!) latest = p
    }
  }
  checks.push({
    name: "per-key order",
    ok: orderViolations === 0 && unrelated === 0,
    summary: `${orderViolations} records first processed before a record of the same key stored earlier`
      + ` (${byKey.size} keys)` + (unrelated > 0 ? `; ${unrelated} comparisons across unrelated shards` : ""),
    details: orderExamples
  })

  // --- 3. children after parents ---
  const byShard = new Map<string, Array<Position>>()
  for (const p of positions.values()) {
    let list = byShard.get(p.shard)
    if (list === undefined) byShard.set(p.shard, list = [])
    list.push(p)
  }
  const lastProcessedOf = (shardId: string) => {
    let last: number | undefined
    for (const p of byShard.get(shardId) ?? []) {
      if (p.firstProcessed !== undefined && (last === undefined || p.firstProcessed > last)) last = p.firstProcessed
    }
    return last
  }
  const firstProcessedOf = (shardId: string) => {
    let first: number | undefined
    for (const p of byShard.get(shardId) ?? []) {
      if (p.firstProcessed !== undefined && (first === undefined || p.firstProcessed < first)) first = p.firstProcessed
    }
    return first
  }
  const childIssues: Array<string> = []
  for (const shard of input.shards) {
    const childFirst = firstProcessedOf(shard.shardId)
    if (childFirst === undefined) continue
    for (const parent of shard.parents) {
      const parentLast = lastProcessedOf(parent)
      if (parentLast !== undefined && childFirst < parentLast) {
        childIssues.push(
          `${shard.shardId} started ${parentLast - childFirst} ms before the last record of its parent ${parent}`
        )
      }
    }
  }
  const children = input.shards.filter((shard) => shard.parents.length > 0).length
  checks.push({
    name: "children after parents",
    ok: childIssues.length === 0,
    summary: `${childIssues.length} of ${children} child shards processed before a parent's last record`,
    details: childIssues
  })

  // --- 4. resume gaps ---
  // When no worker ran (all stopped on purpose, or starting up), waiting is not the consumer's doing.
  const running = input.incarnations
    .filter((i) => i.started !== undefined)
    .map((i) => [i.started!, i.ended ?? input.runEnd] as const)
  const nobodyRunning = (from: number, to: number): number => {
    let covered = 0
    let cursor = from
    const sorted = [...running].sort((a, b) => a[0] - b[0])
    for (const [start, end] of sorted) {
      if (end <= cursor) continue
      if (start >= to) break
      if (start > cursor) covered += start - cursor
      cursor = Math.max(cursor, end)
      if (cursor >= to) break
    }
    if (cursor < to) covered += to - cursor
    return covered
  }
  const gaps: Array<Gap> = []
  const processingTimes = new Map<string, Array<number>>()
  for (const incarnation of input.incarnations) {
    for (const line of incarnation.lines) {
      let list = processingTimes.get(line.s)
      if (list === undefined) processingTimes.set(line.s, list = [])
      list.push(line.t)
    }
  }
  for (const [shardId, list] of byShard) {
    const times = (processingTimes.get(shardId) ?? []).sort((a, b) => a - b)
    const parentsDone = Math.max(0, ...(parentsOf.get(shardId) ?? []).map((p) => lastProcessedOf(p) ?? 0))
    const ends = [...times, input.runEnd]
    for (let i = 0; i < ends.length; i++) {
      const previous = i === 0 ? -Infinity : ends[i - 1]!
      const end = ends[i]!
      if (end - previous < 1000) continue
      // The oldest acknowledged record still waiting when this stretch without processing ended.
      let oldest = Infinity
      for (const p of list) {
        if (p.ack !== undefined && p.ack < end && (p.firstProcessed === undefined || p.firstProcessed >= end)) {
          oldest = Math.min(oldest, p.ack)
        }
      }
      if (oldest === Infinity) continue
      const from = Math.max(previous, oldest, parentsDone)
      if (end <= from) continue
      // A stretch spanning several disruptions is judged per disruption: after each, the shard must resume (or the
      // next disruption come) within the target. Cut it where a disruption starts.
      const cuts = input.disruptions.map((d) => d.from).filter((t) => t > from && t < end).sort((a, b) => a - b)
      const bounds = [from, ...cuts, end]
      for (let j = 0; j + 1 < bounds.length; j++) {
        const segmentFrom = bounds[j]!
        const segmentTo = bounds[j + 1]!
        const millis = segmentTo - segmentFrom - nobodyRunning(segmentFrom, segmentTo)
        if (millis <= 0) continue
        const faults = input.disruptions.some((d) =>
          (d.kind === "kinesis-faults" || d.kind === "dynamo-faults") && d.from <= segmentTo && d.to >= segmentFrom
        )
        // Churn: faults, or more than one membership change or reshard within the last two targets.
        const recent = input.disruptions.filter((d) =>
          d.kind !== "kinesis-faults" && d.kind !== "dynamo-faults"
          && d.from <= segmentTo && d.from >= segmentFrom - 2 * input.targetMillis
        )
        const single = !faults && recent.length <= 1
        const causes = input.disruptions.filter((d) => d.from <= segmentTo && d.to >= segmentFrom - 1000)
        gaps.push({
          shard: shardId,
          from: segmentFrom,
          to: segmentTo,
          millis,
          target: (single ? input.targetMillis : 2 * input.targetMillis) + input.allowanceMillis,
          causes: causes.map((d) => d.kind).join("+") || "none"
        })
      }
    }
  }
  gaps.sort((a, b) => b.millis - a.millis)
  const over = gaps.filter((gap) => gap.millis > gap.target)
  const singleTarget = input.targetMillis + input.allowanceMillis
  const churnTarget = 2 * input.targetMillis + input.allowanceMillis
  const maxSingle = Math.max(0, ...gaps.filter((g) => g.target === singleTarget).map((g) => g.millis))
  const maxChurn = Math.max(0, ...gaps.filter((g) => g.target !== singleTarget).map((g) => g.millis))
  checks.push({
    name: "resume gap",
    ok: over.length === 0,
    summary: `max ${maxSingle} ms after a single kill/stop (target ${singleTarget} ms), `
      + `max ${maxChurn} ms under churn/faults (target ${churnTarget} ms); ${over.length} over target`,
    details: (over.length > 0 ? over : gaps).slice(0, 8).map((gap) =>
      `${gap.shard}: ${gap.millis} ms (target ${gap.target}) waiting from +${gap.from} to +${gap.to}, during ${gap.causes}`
    )
  })

  // --- figures ---
  // A graceful stop hands its leases on: the others take them at their next scan, so a shard
  // should wait no longer than a scan and a poll (stretches under a second are not gaps at all).
  const stops = input.disruptions.filter((d) => d.kind === "stop").length
  const afterStops = gaps.filter((gap) => {
    const kinds = gap.causes.split("+")
    return kinds.includes("stop") && !kinds.includes("kill") && !kinds.includes("stop-all")
  })
  figures.push(
    `graceful stops of one worker: ${stops}; shards waiting over 1 s after one: ${afterStops.length}`
      + (afterStops.length > 0 ? `, longest ${Math.max(...afterStops.map((gap) => gap.millis))} ms` : "")
  )
  const duplicates = processedLines - processedIds.size
  // Why a record was processed again, judged by its first processing.
  const causes = { storedTwice: 0, killed: 0, stopped: 0, sameWorker: 0, leaseMoved: 0, leaseExpired: 0 }
  const first = new Map<
    number,
    { readonly incarnation: Incarnation; readonly position: string; readonly time: number }
  >()
  const all = input.incarnations.flatMap((incarnation) => incarnation.lines.map((line) => ({ incarnation, line })))
  all.sort((a, b) => a.line.t - b.line.t)
  for (const { incarnation, line } of all) {
    const earlier = first.get(line.id)
    if (earlier === undefined) first.set(line.id, { incarnation, position: positionKey(line), time: line.t })
    else if (earlier.position !== positionKey(line)) causes.storedTwice++
    else if (earlier.incarnation === incarnation) causes.sameWorker++
    else if (earlier.incarnation.ended === undefined || earlier.incarnation.ended > line.t) causes.leaseMoved++
    else {
      // Its lease was taken or expired after it processed the record (say, during its stop, while
      // the store failed): not the stop's doing, though the record came again after it ended.
      const losses = (earlier.incarnation.lost.get(line.s) ?? []).filter((loss) => loss.t >= earlier.time)
      if (losses.some((loss) => loss.reason !== "expired")) causes.leaseMoved++
      else if (losses.length > 0) causes.leaseExpired++
      else if (earlier.incarnation.ending === "killed") causes.killed++
      else causes.stopped++
    }
  }
  const storedTwice = new Map<number, number>()
  for (const p of positions.values()) storedTwice.set(p.id, (storedTwice.get(p.id) ?? 0) + 1)
  figures.push(
    `processed ${processedLines} records, ${processedIds.size} distinct; duplicates ${duplicates} `
      + `(${causes.killed} after their first processor was SIGKILLed, ${causes.stopped} after it stopped gracefully, `
      + `${causes.leaseMoved} while it still ran (lease taken), ${causes.leaseExpired} after its lease expired, `
      + `${causes.sameWorker} twice by one process, ${causes.storedTwice} copies the producer stored twice); `
      + `${[...storedTwice.values()].filter((n) => n > 1).length} ids stored at more than one position`
  )
  // Graceful stops and leases moved for balance hand over at the checkpoint: records come again
  // only after a SIGKILL (its unfinished batches), or when the producer stored a record twice.
  // A lease that expired because its owner could not reach DynamoDB for a whole expiry is fenced
  // by design, so it is reported and allowed.
  const replayed = causes.stopped + causes.sameWorker + causes.leaseMoved
  checks.push({
    name: "duplicates only after SIGKILLs",
    ok: replayed === 0,
    summary: `${replayed} records processed again after a graceful stop, a lease taken from a live worker, `
      + `or by the same process (${causes.leaseExpired} after a lease expired while DynamoDB failed, allowed)`,
    details: replayed === 0 ?
      [] :
      input.incarnations.flatMap((incarnation) =>
        [...incarnation.lost].flatMap(([shard, losses]) =>
          losses.map((loss) => `${incarnation.label} lost ${shard} at +${loss.t} (${loss.reason})`)
        )
      ).slice(0, 10)
  })
  return { checks, figures, gaps }
}
