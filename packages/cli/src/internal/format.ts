/**
 * Formatting shared by the commands: durations, sequence numbers, hash ranges, tables.
 *
 * @internal
 */

/**
 * `1.2s`, `45s`, `3m05s`, `2h10m`, `3d4h`: short, and precise where it matters (under a minute).
 *
 * @internal
 */
export const duration = (millis: number): string => {
  if (millis < 0) millis = 0
  if (millis < 10_000) return `${(millis / 1000).toFixed(1)}s`
  const seconds = Math.floor(millis / 1000)
  if (seconds < 60) return `${seconds}s`
  const minutes = Math.floor(seconds / 60)
  if (minutes < 60) return `${minutes}m${String(seconds % 60).padStart(2, "0")}s`
  const hours = Math.floor(minutes / 60)
  if (hours < 24) return `${hours}h${String(minutes % 60).padStart(2, "0")}m`
  return `${Math.floor(hours / 24)}d${hours % 24}h`
}

/**
 * A sequence number cut to what tells two checkpoints of one shard apart: Kinesis sequence numbers
 * are 56-digit decimals whose leading digits are shared by every record of a shard, so the tail is
 * kept (`…193564078082`). Sentinels (`TRIM_HORIZON`, `SHARD_END`…) are shown whole; a subsequence
 * number (a KPL aggregate's user record) is appended as `/n`.
 *
 * @internal
 */
export const sequenceNumber = (sequence: string, subSequence = 0, digits = 12): string => {
  const short = /^\d+$/.test(sequence) && sequence.length > digits + 1 ? `…${sequence.slice(-digits)}` : sequence
  return subSequence > 0 ? `${short}/${subSequence}` : short
}

const HASH_SPACE = 2n ** 128n

/**
 * A hash key range as the first 8 hex digits of each end (`00000000–7fffffff`) and the share of
 * the key space it covers (`50.0%`).
 *
 * @internal
 */
export const hashRange = (start: string, end: string): { readonly hex: string; readonly share: string } => {
  const from = BigInt(start)
  const to = BigInt(end)
  const hex = (n: bigint) => n.toString(16).padStart(32, "0").slice(0, 8)
  const share = Number(((to - from + 1n) * 1_000_000n) / HASH_SPACE) / 10_000
  return { hex: `${hex(from)}–${hex(to)}`, share: `${share.toFixed(1)}%` }
}

/**
 * Columns padded to the widest cell (the last column is not padded).
 *
 * @internal
 */
export const table = (rows: ReadonlyArray<ReadonlyArray<string>>, gap = "  "): Array<string> => {
  const widths: Array<number> = []
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, [...cell].length)
    })
  }
  return rows.map((row) =>
    row.map((cell, i) => i === row.length - 1 ? cell : cell + " ".repeat(widths[i]! - [...cell].length)).join(gap)
      .trimEnd()
  )
}
