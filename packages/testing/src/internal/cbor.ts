/**
 * Just enough CBOR (RFC 8949) for the Smithy RPC v2 CBOR protocol: decoding every major type a client may send
 * (definite and indefinite lengths, half/single/double floats, tag 1 epoch timestamps), encoding the flat maps of
 * strings and numbers the fake endpoints answer with.
 *
 * @internal
 */

/** Decodes one CBOR data item. Tag 1 (an epoch timestamp) becomes its number of seconds. @internal */
export const decode = (bytes: Uint8Array): unknown => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let offset = 0
  const BREAK = Symbol("break")
  const length = (info: number): number => {
    if (info < 24) return info
    if (info === 24) return view.getUint8(offset++)
    if (info === 25) return (offset += 2, view.getUint16(offset - 2))
    if (info === 26) return (offset += 4, view.getUint32(offset - 4))
    if (info === 27) return (offset += 8, Number(view.getBigUint64(offset - 8)))
    if (info === 31) return -1
    throw new Error(`CBOR: bad additional info ${info}`)
  }
  const half = (bits: number): number => {
    const exponent = (bits >> 10) & 0x1f
    const fraction = bits & 0x3ff
    const sign = bits & 0x8000 ? -1 : 1
    if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024)
    if (exponent === 31) return fraction === 0 ? sign * Infinity : NaN
    return sign * 2 ** (exponent - 15) * (1 + fraction / 1024)
  }
  const chunks = (major: number, n: number): Uint8Array => {
    if (n >= 0) return (offset += n, bytes.subarray(offset - n, offset))
    const parts: Array<Uint8Array> = []
    for (;;) {
      const item = next()
      if (item === BREAK) break
      parts.push(major === 2 ? item as Uint8Array : new TextEncoder().encode(item as string))
    }
    return Buffer.concat(parts)
  }
  const next = (): unknown => {
    const initial = view.getUint8(offset++)
    const major = initial >> 5
    const info = initial & 0x1f
    switch (major) {
      case 0:
        return length(info)
      case 1:
        return -1 - length(info)
      case 2:
        return chunks(2, length(info))
      case 3:
        return new TextDecoder().decode(chunks(3, length(info)))
      case 4: {
        const n = length(info)
        const out: Array<unknown> = []
        for (let i = 0; n < 0 || i < n; i++) {
          const item = next()
          if (item === BREAK) break
          out.push(item)
        }
        return out
      }
      case 5: {
        const n = length(info)
        const out: Record<string, unknown> = {}
        for (let i = 0; n < 0 || i < n; i++) {
          const key = next()
          if (key === BREAK) break
          out[String(key)] = next()
        }
        return out
      }
      case 6: {
        length(info)
        return next()
      }
      default: {
        if (info === 20) return false
        if (info === 21) return true
        if (info === 22 || info === 23) return null
        if (info === 25) return (offset += 2, half(view.getUint16(offset - 2)))
        if (info === 26) return (offset += 4, view.getFloat32(offset - 4))
        if (info === 27) return (offset += 8, view.getFloat64(offset - 8))
        if (info === 31) return BREAK
        throw new Error(`CBOR: bad simple value ${info}`)
      }
    }
  }
  return next()
}

const head = (major: number, n: number): Buffer => {
  if (n < 24) return Buffer.from([(major << 5) | n])
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n])
  if (n < 0x10000) return Buffer.from([(major << 5) | 25, n >> 8, n & 0xff])
  const b = Buffer.alloc(5)
  b[0] = (major << 5) | 26
  b.writeUInt32BE(n, 1)
  return b
}

/** Encodes a flat map of strings and numbers (numbers as doubles). @internal */
export const encodeMap = (map: Readonly<Record<string, string | number>>): Buffer => {
  const parts: Array<Buffer> = [head(5, Object.keys(map).length)]
  const text = (s: string) => {
    const utf8 = Buffer.from(s, "utf8")
    parts.push(head(3, utf8.length), utf8)
  }
  for (const [key, value] of Object.entries(map)) {
    text(key)
    if (typeof value === "string") text(value)
    else {
      const b = Buffer.alloc(9)
      b[0] = 0xfb
      b.writeDoubleBE(value, 1)
      parts.push(b)
    }
  }
  return Buffer.concat(parts)
}
