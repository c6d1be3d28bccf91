/**
 * @internal
 *
 * The body of a successful response, read whole for the client's own decoders (GetRecords,
 * PutRecords), which then hand the SDK's deserializer an empty object for the `$metadata`.
 */

import type { DeserializeMiddleware } from "@smithy/types"

/** `{}`: what the SDK's deserializer gets once a decoder took the body. */
export const EMPTY_BODY = new Uint8Array([0x7b, 0x7d])

// The chunks of a body are joined in this buffer, kept from one response to the next: a new
// buffer per response (7 MB for a batch of aggregates) cost more than the copy, in fresh memory
// and in the collections its external size brings on. Shared safely: filled and read in one go.
let scratch: Buffer | undefined
// A response body (GetRecords' is the largest) is at most ~14 MB (10 MB of data as base64); larger ones are not kept.
const SCRATCH_LIMIT = 16 * 2 ** 20

const join = (chunks: ReadonlyArray<Buffer>, length: number): string => {
  if (chunks.length === 1) return chunks[0]!.toString("utf8")
  if (length > SCRATCH_LIMIT) return Buffer.concat(chunks, length).toString("utf8")
  if (scratch === undefined || scratch.length < length) {
    // Grown with room, so that a slightly larger body does not allocate again.
    scratch = Buffer.allocUnsafeSlow(Math.min(SCRATCH_LIMIT, Math.max(2 ** 16, Math.ceil(length * 1.25))))
  }
  let at = 0
  for (const chunk of chunks) {
    scratch.set(chunk, at)
    at += chunk.length
  }
  return scratch.toString("utf8", 0, length)
}

/** The body's text, joined from its chunks. */
export const collect = async (body: unknown): Promise<string> => {
  if (body instanceof Uint8Array) return Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8")
  const chunks: Array<Buffer> = []
  let length = 0
  for await (const chunk of body as AsyncIterable<Uint8Array | string>) {
    const bytes = typeof chunk === "string"
      ? Buffer.from(chunk)
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    chunks.push(bytes)
    length += bytes.length
  }
  return join(chunks, length)
}

/** Where an input marked for a client decoder receives the output its middleware decoded. */
export interface DecodedSlot<O> {
  output: O | undefined
}

/** A response body that does not have the shape of the operation's output. */
export class MalformedBody extends Error {
  override readonly name = "SerializationException"
}

/** A field that may be absent (or null), else a string. */
export const optionalString = (value: unknown, field: string): string | undefined => {
  if (value === undefined || value === null) return undefined
  if (typeof value !== "string") throw new MalformedBody(`${field}: expected a string`)
  return value
}

/**
 * A deserialize-step middleware that decodes a successful response of an input marked with
 * `marker` (a `DecodedSlot`) by `decode`, and hands the SDK's deserializer an empty object, which
 * gives the `$metadata`. Added last in that step, next to the HTTP handler. Error responses and
 * unmarked inputs (`sdk.send` by the user) are left to the SDK, and so is a body `decode` finds
 * malformed: the SDK reports it, with the response attached, as for any bad body.
 */
export const decoding = <O, Input extends object, Output extends object>(
  marker: symbol,
  decode: (text: string) => O
): DeserializeMiddleware<Input, Output> =>
(next) =>
async (args) => {
  const result = await next(args)
  const slot = (args.input as Record<symbol, DecodedSlot<O> | undefined>)[marker]
  const response = result.response as { statusCode?: number; body?: unknown }
  if (
    slot === undefined || response.statusCode === undefined || response.statusCode < 200 || response.statusCode >= 300
  ) {
    return result
  }
  const text = await collect(response.body)
  try {
    slot.output = decode(text)
  } catch (error) {
    response.body = Buffer.from(text, "utf8")
    if (error instanceof MalformedBody || error instanceof SyntaxError) return result
    throw error
  }
  response.body = EMPTY_BODY
  return result
}
