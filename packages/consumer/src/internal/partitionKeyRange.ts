/**
 * Whether a partition key routes into a shard's hash key range, on the consumer's per-record
 * path: MD5 of the key's UTF-8 bytes, computed in JavaScript into 32-bit words and compared
 * word by word with the range's bounds. `crypto.hash` costs a native call, a hex string and a
 * `BigInt` per key; this costs neither, and a key seen again (partition keys repeat) costs a
 * `Map` lookup.
 *
 * @internal
 */

// Scratch space, reused: the message padded to whole 64-byte blocks.
let bytes = new Uint8Array(128)
const digest = new Uint32Array(4)
const encoder = new TextEncoder()

const word = (j: number) => bytes[j]! | (bytes[j + 1]! << 8) | (bytes[j + 2]! << 16) | (bytes[j + 3]! << 24)

// One 64-byte block of MD5 (RFC 1321), its 64 steps unrolled (about three times faster than a
// loop over tables of constants and shifts).
const compress = (state: Int32Array, offset: number) => {
  const x0 = word(offset + 0)
  const x1 = word(offset + 4)
  const x2 = word(offset + 8)
  const x3 = word(offset + 12)
  const x4 = word(offset + 16)
  const x5 = word(offset + 20)
  const x6 = word(offset + 24)
  const x7 = word(offset + 28)
  const x8 = word(offset + 32)
  const x9 = word(offset + 36)
  const x10 = word(offset + 40)
  const x11 = word(offset + 44)
  const x12 = word(offset + 48)
  const x13 = word(offset + 52)
  const x14 = word(offset + 56)
  const x15 = word(offset + 60)
  let a = state[0]!
  let b = state[1]!
  let c = state[2]!
  let d = state[3]!
  let t: number
  t = (a + ((b & c) | (~b & d)) + x0 + -680876936) | 0
  a = (b + ((t << 7) | (t >>> 25))) | 0
  t = (d + ((a & b) | (~a & c)) + x1 + -389564586) | 0
  d = (a + ((t << 12) | (t >>> 20))) | 0
  t = (c + ((d & a) | (~d & b)) + x2 + 606105819) | 0
  c = (d + ((t << 17) | (t >>> 15))) | 0
  t = (b + ((c & d) | (~c & a)) + x3 + -1044525330) | 0
  b = (c + ((t << 22) | (t >>> 10))) | 0
  t = (a + ((b & c) | (~b & d)) + x4 + -176418897) | 0
  a = (b + ((t << 7) | (t >>> 25))) | 0
  t = (d + ((a & b) | (~a & c)) + x5 + 1200080426) | 0
  d = (a + ((t << 12) | (t >>> 20))) | 0
  t = (c + ((d & a) | (~d & b)) + x6 + -1473231341) | 0
  c = (d + ((t << 17) | (t >>> 15))) | 0
  t = (b + ((c & d) | (~c & a)) + x7 + -45705983) | 0
  b = (c + ((t << 22) | (t >>> 10))) | 0
  t = (a + ((b & c) | (~b & d)) + x8 + 1770035416) | 0
  a = (b + ((t << 7) | (t >>> 25))) | 0
  t = (d + ((a & b) | (~a & c)) + x9 + -1958414417) | 0
  d = (a + ((t << 12) | (t >>> 20))) | 0
  t = (c + ((d & a) | (~d & b)) + x10 + -42063) | 0
  c = (d + ((t << 17) | (t >>> 15))) | 0
  t = (b + ((c & d) | (~c & a)) + x11 + -1990404162) | 0
  b = (c + ((t << 22) | (t >>> 10))) | 0
  t = (a + ((b & c) | (~b & d)) + x12 + 1804603682) | 0
  a = (b + ((t << 7) | (t >>> 25))) | 0
  t = (d + ((a & b) | (~a & c)) + x13 + -40341101) | 0
  d = (a + ((t << 12) | (t >>> 20))) | 0
  t = (c + ((d & a) | (~d & b)) + x14 + -1502002290) | 0
  c = (d + ((t << 17) | (t >>> 15))) | 0
  t = (b + ((c & d) | (~c & a)) + x15 + 1236535329) | 0
  b = (c + ((t << 22) | (t >>> 10))) | 0
  t = (a + ((d & b) | (~d & c)) + x1 + -165796510) | 0
  a = (b + ((t << 5) | (t >>> 27))) | 0
  t = (d + ((c & a) | (~c & b)) + x6 + -1069501632) | 0
  d = (a + ((t << 9) | (t >>> 23))) | 0
  t = (c + ((b & d) | (~b & a)) + x11 + 643717713) | 0
  c = (d + ((t << 14) | (t >>> 18))) | 0
  t = (b + ((a & c) | (~a & d)) + x0 + -373897302) | 0
  b = (c + ((t << 20) | (t >>> 12))) | 0
  t = (a + ((d & b) | (~d & c)) + x5 + -701558691) | 0
  a = (b + ((t << 5) | (t >>> 27))) | 0
  t = (d + ((c & a) | (~c & b)) + x10 + 38016083) | 0
  d = (a + ((t << 9) | (t >>> 23))) | 0
  t = (c + ((b & d) | (~b & a)) + x15 + -660478335) | 0
  c = (d + ((t << 14) | (t >>> 18))) | 0
  t = (b + ((a & c) | (~a & d)) + x4 + -405537848) | 0
  b = (c + ((t << 20) | (t >>> 12))) | 0
  t = (a + ((d & b) | (~d & c)) + x9 + 568446438) | 0
  a = (b + ((t << 5) | (t >>> 27))) | 0
  t = (d + ((c & a) | (~c & b)) + x14 + -1019803690) | 0
  d = (a + ((t << 9) | (t >>> 23))) | 0
  t = (c + ((b & d) | (~b & a)) + x3 + -187363961) | 0
  c = (d + ((t << 14) | (t >>> 18))) | 0
  t = (b + ((a & c) | (~a & d)) + x8 + 1163531501) | 0
  b = (c + ((t << 20) | (t >>> 12))) | 0
  t = (a + ((d & b) | (~d & c)) + x13 + -1444681467) | 0
  a = (b + ((t << 5) | (t >>> 27))) | 0
  t = (d + ((c & a) | (~c & b)) + x2 + -51403784) | 0
  d = (a + ((t << 9) | (t >>> 23))) | 0
  t = (c + ((b & d) | (~b & a)) + x7 + 1735328473) | 0
  c = (d + ((t << 14) | (t >>> 18))) | 0
  t = (b + ((a & c) | (~a & d)) + x12 + -1926607734) | 0
  b = (c + ((t << 20) | (t >>> 12))) | 0
  t = (a + (b ^ c ^ d) + x5 + -378558) | 0
  a = (b + ((t << 4) | (t >>> 28))) | 0
  t = (d + (a ^ b ^ c) + x8 + -2022574463) | 0
  d = (a + ((t << 11) | (t >>> 21))) | 0
  t = (c + (d ^ a ^ b) + x11 + 1839030562) | 0
  c = (d + ((t << 16) | (t >>> 16))) | 0
  t = (b + (c ^ d ^ a) + x14 + -35309556) | 0
  b = (c + ((t << 23) | (t >>> 9))) | 0
  t = (a + (b ^ c ^ d) + x1 + -1530992060) | 0
  a = (b + ((t << 4) | (t >>> 28))) | 0
  t = (d + (a ^ b ^ c) + x4 + 1272893353) | 0
  d = (a + ((t << 11) | (t >>> 21))) | 0
  t = (c + (d ^ a ^ b) + x7 + -155497632) | 0
  c = (d + ((t << 16) | (t >>> 16))) | 0
  t = (b + (c ^ d ^ a) + x10 + -1094730640) | 0
  b = (c + ((t << 23) | (t >>> 9))) | 0
  t = (a + (b ^ c ^ d) + x13 + 681279174) | 0
  a = (b + ((t << 4) | (t >>> 28))) | 0
  t = (d + (a ^ b ^ c) + x0 + -358537222) | 0
  d = (a + ((t << 11) | (t >>> 21))) | 0
  t = (c + (d ^ a ^ b) + x3 + -722521979) | 0
  c = (d + ((t << 16) | (t >>> 16))) | 0
  t = (b + (c ^ d ^ a) + x6 + 76029189) | 0
  b = (c + ((t << 23) | (t >>> 9))) | 0
  t = (a + (b ^ c ^ d) + x9 + -640364487) | 0
  a = (b + ((t << 4) | (t >>> 28))) | 0
  t = (d + (a ^ b ^ c) + x12 + -421815835) | 0
  d = (a + ((t << 11) | (t >>> 21))) | 0
  t = (c + (d ^ a ^ b) + x15 + 530742520) | 0
  c = (d + ((t << 16) | (t >>> 16))) | 0
  t = (b + (c ^ d ^ a) + x2 + -995338651) | 0
  b = (c + ((t << 23) | (t >>> 9))) | 0
  t = (a + (c ^ (b | ~d)) + x0 + -198630844) | 0
  a = (b + ((t << 6) | (t >>> 26))) | 0
  t = (d + (b ^ (a | ~c)) + x7 + 1126891415) | 0
  d = (a + ((t << 10) | (t >>> 22))) | 0
  t = (c + (a ^ (d | ~b)) + x14 + -1416354905) | 0
  c = (d + ((t << 15) | (t >>> 17))) | 0
  t = (b + (d ^ (c | ~a)) + x5 + -57434055) | 0
  b = (c + ((t << 21) | (t >>> 11))) | 0
  t = (a + (c ^ (b | ~d)) + x12 + 1700485571) | 0
  a = (b + ((t << 6) | (t >>> 26))) | 0
  t = (d + (b ^ (a | ~c)) + x3 + -1894986606) | 0
  d = (a + ((t << 10) | (t >>> 22))) | 0
  t = (c + (a ^ (d | ~b)) + x10 + -1051523) | 0
  c = (d + ((t << 15) | (t >>> 17))) | 0
  t = (b + (d ^ (c | ~a)) + x1 + -2054922799) | 0
  b = (c + ((t << 21) | (t >>> 11))) | 0
  t = (a + (c ^ (b | ~d)) + x8 + 1873313359) | 0
  a = (b + ((t << 6) | (t >>> 26))) | 0
  t = (d + (b ^ (a | ~c)) + x15 + -30611744) | 0
  d = (a + ((t << 10) | (t >>> 22))) | 0
  t = (c + (a ^ (d | ~b)) + x6 + -1560198380) | 0
  c = (d + ((t << 15) | (t >>> 17))) | 0
  t = (b + (d ^ (c | ~a)) + x13 + 1309151649) | 0
  b = (c + ((t << 21) | (t >>> 11))) | 0
  t = (a + (c ^ (b | ~d)) + x4 + -145523070) | 0
  a = (b + ((t << 6) | (t >>> 26))) | 0
  t = (d + (b ^ (a | ~c)) + x11 + -1120210379) | 0
  d = (a + ((t << 10) | (t >>> 22))) | 0
  t = (c + (a ^ (d | ~b)) + x2 + 718787259) | 0
  c = (d + ((t << 15) | (t >>> 17))) | 0
  t = (b + (d ^ (c | ~a)) + x9 + -343485551) | 0
  b = (c + ((t << 21) | (t >>> 11))) | 0
  state[0] = (state[0]! + a) | 0
  state[1] = (state[1]! + b) | 0
  state[2] = (state[2]! + c) | 0
  state[3] = (state[3]! + d) | 0
}

const state = new Int32Array(4)

// Byte-swaps a little-endian digest word into the big-endian order of the hash key.
const swap = (x: number) => (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0

/**
 * MD5 of `key`'s UTF-8 bytes as the hash key's four 32-bit words, most significant first, in a
 * shared array (valid until the next call).
 *
 * @internal
 */
export const md5Words = (key: string): Uint32Array => {
  // At most 3 UTF-8 bytes per UTF-16 unit, plus the padding (1 byte, zeros, 8 bytes of length).
  const room = key.length * 3 + 72
  if (bytes.length < room) bytes = new Uint8Array(room * 2)
  let n = 0
  for (; n < key.length; n++) {
    const c = key.charCodeAt(n)
    if (c >= 0x80) break
    bytes[n] = c
  }
  if (n < key.length) n += encoder.encodeInto(key.slice(n), bytes.subarray(n)).written
  const length = n
  bytes[n++] = 0x80
  while ((n & 63) !== 56) bytes[n++] = 0
  const bits = length * 8
  bytes[n++] = bits & 0xff
  bytes[n++] = (bits >>> 8) & 0xff
  bytes[n++] = (bits >>> 16) & 0xff
  bytes[n++] = (bits >>> 24) & 0xff
  // Keys are at most 256 characters: the length never reaches 2^32 bits.
  bytes[n++] = 0
  bytes[n++] = 0
  bytes[n++] = 0
  bytes[n++] = 0
  state[0] = 0x67452301
  state[1] = 0xefcdab89 | 0
  state[2] = 0x98badcfe | 0
  state[3] = 0x10325476
  for (let offset = 0; offset < n; offset += 64) compress(state, offset)
  digest[0] = swap(state[0]!)
  digest[1] = swap(state[1]!)
  digest[2] = swap(state[2]!)
  digest[3] = swap(state[3]!)
  return digest
}

const wordsOf = (key: bigint): Uint32Array => {
  const words = new Uint32Array(4)
  for (let i = 3; i >= 0; i--) {
    words[i] = Number(key & 0xffffffffn)
    key >>= 32n
  }
  return words
}

// Word-wise comparison of two 128-bit keys, most significant word first.
const compareWords = (a: Uint32Array, b: Uint32Array): number => {
  for (let i = 0; i < 4; i++) {
    if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1
  }
  return 0
}

/**
 * Distinct keys remembered per shard before the memory is emptied, and the number of checks
 * after which the cache is judged.
 */
const CACHE_LIMIT = 2048
/** With the cache off, it is tried again after this many windows of {@link CACHE_LIMIT} checks. */
const IDLE_WINDOWS = 16

/** @internal */
export interface RangeCheck {
  /** Whether MD5 of `partitionKey` lies in the range. */
  readonly contains: (partitionKey: string) => boolean
  /** Whether answers are being remembered now (for tests). */
  readonly caching: () => boolean
}

/**
 * Checks partition keys against `[start, end]`.
 *
 * Remembers answers for up to {@link CACHE_LIMIT} distinct keys (then forgets them all), so a
 * stream whose keys repeat (user ids, device ids) pays one `Map` lookup per record. Keys that
 * rarely repeat (UUIDs) would pay for the map and gain nothing: when fewer than a quarter of the
 * checks of a window hit, the cache is switched off, and tried again later.
 *
 * @internal
 */
export const makeRangeCheck = (start: bigint, end: bigint): RangeCheck => {
  const low = wordsOf(start)
  const high = wordsOf(end)
  const inRange = (partitionKey: string) => {
    const words = md5Words(partitionKey)
    return compareWords(words, low) >= 0 && compareWords(words, high) <= 0
  }
  const known = new Map<string, boolean>()
  let caching = true
  let checks = 0
  let hits = 0
  let idle = 0
  const judge = () => {
    checks = 0
    if (caching) {
      if (hits * 4 < CACHE_LIMIT) {
        caching = false
        idle = 0
        known.clear()
      }
    } else if (++idle === IDLE_WINDOWS) caching = true
    hits = 0
  }
  return {
    contains: (partitionKey) => {
      if (++checks === CACHE_LIMIT) judge()
      if (!caching) return inRange(partitionKey)
      const cached = known.get(partitionKey)
      if (cached !== undefined) {
        hits++
        return cached
      }
      const inside = inRange(partitionKey)
      if (known.size >= CACHE_LIMIT) known.clear()
      known.set(partitionKey, inside)
      return inside
    },
    caching: () => caching
  }
}
