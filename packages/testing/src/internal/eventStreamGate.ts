/**
 * Counts the messages of an AWS event stream (the `application/vnd.amazon.eventstream` body of SubscribeToShard) as
 * its bytes pass, and stops letting them through after a number of `SubscribeToShardEvent`s — a subscription that
 * goes silent while its connection stays open.
 *
 * Message layout: total length (u32 BE) | headers length (u32 BE) | prelude CRC (u32) | headers | payload | CRC (u32).
 * A header is: name length (u8) | name | value type (u8) | value.
 *
 * @internal
 */
export class EventStreamGate {
  readonly #allowedEvents: number
  #pending: Buffer = Buffer.alloc(0)
  #events = 0
  #closed = false

  constructor(allowedEvents: number) {
    this.#allowedEvents = allowedEvents
  }

  /** Whether the gate has closed (it never reopens). */
  get closed(): boolean {
    return this.#closed
  }

  /** The complete messages of `chunk` (plus earlier leftovers) that may pass; partial messages wait for more bytes. */
  push(chunk: Buffer): Buffer {
    if (this.#closed) return Buffer.alloc(0)
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk])
    const passed: Array<Buffer> = []
    while (!this.#closed && this.#pending.length >= 12) {
      const total = this.#pending.readUInt32BE(0)
      if (total < 16 || this.#pending.length < total) break
      const message = this.#pending.subarray(0, total)
      this.#pending = this.#pending.subarray(total)
      if (eventType(message) === "SubscribeToShardEvent") {
        if (this.#events >= this.#allowedEvents) {
          this.#closed = true
          break
        }
        this.#events++
      }
      passed.push(message)
    }
    return Buffer.concat(passed)
  }
}

const headerValueSize = (type: number, buffer: Buffer, offset: number): number => {
  switch (type) {
    case 0:
    case 1:
      return 0
    case 2:
      return 1
    case 3:
      return 2
    case 4:
      return 4
    case 5:
    case 8:
      return 8
    case 6:
    case 7:
      return 2 + buffer.readUInt16BE(offset)
    case 9:
      return 16
    default:
      return Number.POSITIVE_INFINITY
  }
}

const eventType = (message: Buffer): string | undefined => {
  const end = 12 + message.readUInt32BE(4)
  let offset = 12
  while (offset < end) {
    const nameLength = message.readUInt8(offset)
    const name = message.toString("utf8", offset + 1, offset + 1 + nameLength)
    offset += 1 + nameLength
    const type = message.readUInt8(offset)
    offset += 1
    if (name === ":event-type" && type === 7) {
      const length = message.readUInt16BE(offset)
      return message.toString("utf8", offset + 2, offset + 2 + length)
    }
    offset += headerValueSize(type, message, offset)
  }
  return undefined
}
