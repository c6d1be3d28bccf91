/**
 * Serializer/deserializer pairs between user values and the bytes of a Kinesis record.
 *
 * @since 0.1.0
 */
import { Cause, Effect, Predicate, Result, Schema } from "effect"

/**
 * A value could not be turned into bytes.
 *
 * @example
 * ```ts
 * import { Serde } from "@effect-kinesis/core"
 * import { Effect, Schema } from "effect"
 *
 * const serde = Serde.json(Schema.Struct({ n: Schema.Finite }))
 * const program = serde.serialize({ n: NaN }).pipe(
 *   Effect.catchTag("SerializationError", (error) => Effect.succeed(error.message))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class SerializationError extends Schema.TaggedError<SerializationError>()("SerializationError", {
  message: Schema.String,
  cause: Schema.Defect()
}) {}

/**
 * Bytes could not be turned into a value. Carries the bytes, so that a consumer can hand the
 * undecodable record to the user's error handling (log it, park it, skip it).
 *
 * @example
 * ```ts
 * import { Serde } from "@effect-kinesis/core"
 * import { Effect, Schema } from "effect"
 *
 * const serde = Serde.json(Schema.Struct({ n: Schema.Number }))
 * const program = serde.deserialize(new TextEncoder().encode("not json")).pipe(
 *   Effect.catchTag("DeserializationError", (error) => Effect.succeed(error.bytes.length))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class DeserializationError extends Schema.TaggedError<DeserializationError>()("DeserializationError", {
  message: Schema.String,
  bytes: Schema.Uint8Array,
  cause: Schema.Defect()
}) {}

/**
 * Turns values of type `A` into record data and back.
 *
 * @example
 * ```ts
 * import { Serde } from "@effect-kinesis/core"
 * import { Effect } from "effect"
 *
 * const roundTrip = <A>(serde: Serde.Serde<A>, value: A) =>
 *   serde.serialize(value).pipe(Effect.flatMap(serde.deserialize))
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Serde<A> {
  readonly serialize: (value: A) => Effect.Effect<Uint8Array, SerializationError>
  readonly deserialize: (bytes: Uint8Array) => Effect.Effect<A, DeserializationError>
}

/**
 * A {@link Serde} that also works without running an effect. Producers and consumers use the
 * `Result` functions per record when they are there (see {@link isSync}), skipping the effect
 * runtime in their hot loops.
 *
 * @example
 * ```ts
 * import { Serde } from "@effect-kinesis/core"
 * import { Result } from "effect"
 *
 * const bytes = Result.getOrThrow(Serde.string.serializeResult("hi")) // Uint8Array [104, 105]
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface SyncSerde<A> extends Serde<A> {
  readonly serializeResult: (value: A) => Result.Result<Uint8Array, SerializationError>
  readonly deserializeResult: (bytes: Uint8Array) => Result.Result<A, DeserializationError>
}

/**
 * Whether a serde has the synchronous `Result` functions of a {@link SyncSerde}.
 *
 * @example
 * ```ts
 * import { Serde } from "@effect-kinesis/core"
 *
 * Serde.isSync(Serde.bytes) // true
 * ```
 *
 * @since 0.1.0
 * @category guards
 */
export const isSync = <A>(serde: Serde<A>): serde is SyncSerde<A> =>
  Predicate.hasProperty(serde, "serializeResult") && Predicate.hasProperty(serde, "deserializeResult")

const messageOf = (cause: unknown): string =>
  Predicate.isError(cause) ? cause.message : Predicate.isString(cause) ? cause : String(cause)

const serializationError = (cause: unknown): SerializationError =>
  new SerializationError({ message: messageOf(cause), cause })

const deserializationError = (bytes: Uint8Array) => (cause: unknown): DeserializationError =>
  new DeserializationError({ message: messageOf(cause), bytes, cause })

/**
 * A serde from effectful functions, for formats that need effects (a schema registry lookup,
 * decompression in a worker). Their failures become {@link SerializationError} /
 * {@link DeserializationError} with the original failure as `cause`; defects stay defects.
 *
 * @example
 * ```ts
 * import { Serde } from "@effect-kinesis/core"
 * import { Effect } from "effect"
 * import { gunzip, gzip } from "node:zlib"
 * import { promisify } from "node:util"
 *
 * const gzippedText: Serde.Serde<string> = Serde.make({
 *   serialize: (text: string) => Effect.tryPromise(() => promisify(gzip)(text)),
 *   deserialize: (bytes) => Effect.tryPromise(async () => (await promisify(gunzip)(bytes)).toString("utf8"))
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <A, E1, E2>(options: {
  readonly serialize: (value: A) => Effect.Effect<Uint8Array, E1>
  readonly deserialize: (bytes: Uint8Array) => Effect.Effect<A, E2>
}): Serde<A> => ({
  serialize: (value) => Effect.mapError(options.serialize(value), serializationError),
  deserialize: (bytes) => Effect.mapError(options.deserialize(bytes), deserializationError(bytes))
})

/**
 * A serde from plain functions. Whatever they throw becomes a {@link SerializationError} /
 * {@link DeserializationError} with the thrown value as `cause`.
 *
 * @example
 * ```ts
 * import { Serde } from "@effect-kinesis/core"
 *
 * const int32 = Serde.makeSync<number>({
 *   serialize: (n) => {
 *     const bytes = new Uint8Array(4)
 *     new DataView(bytes.buffer).setInt32(0, n)
 *     return bytes
 *   },
 *   deserialize: (bytes) => {
 *     if (bytes.length !== 4) throw new Error(`expected 4 bytes, got ${bytes.length}`)
 *     return new DataView(bytes.buffer, bytes.byteOffset, 4).getInt32(0)
 *   }
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeSync = <A>(options: {
  readonly serialize: (value: A) => Uint8Array
  readonly deserialize: (bytes: Uint8Array) => A
}): SyncSerde<A> =>
  fromResults(
    (value) => {
      try {
        return Result.succeed(options.serialize(value))
      } catch (cause) {
        return Result.fail(serializationError(cause))
      }
    },
    (bytes) => {
      try {
        return Result.succeed(options.deserialize(bytes))
      } catch (cause) {
        return Result.fail(deserializationError(bytes)(cause))
      }
    }
  )

const fromResults = <A>(
  serializeResult: (value: A) => Result.Result<Uint8Array, SerializationError>,
  deserializeResult: (bytes: Uint8Array) => Result.Result<A, DeserializationError>
): SyncSerde<A> => ({
  serializeResult,
  deserializeResult,
  serialize: (value) => Effect.fromResult(serializeResult(value)),
  deserialize: (bytes) => Effect.fromResult(deserializeResult(bytes))
})

const encoder = new TextEncoder()
// `ignoreBOM` keeps a leading U+FEFF in the string, so every string survives the round trip.
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
// JSON text may start with a BOM, which JSON.parse rejects; this decoder drops it.
const strictUtf8DropBom = new TextDecoder("utf-8", { fatal: true })

/**
 * The record data is the bytes themselves. Never fails.
 *
 * @example
 * ```ts
 * import { Serde } from "@effect-kinesis/core"
 * import { Effect } from "effect"
 *
 * const bytes = Effect.runSync(Serde.bytes.serialize(new Uint8Array([1, 2]))) // the same array
 * ```
 *
 * @since 0.1.0
 * @category serdes
 */
export const bytes: SyncSerde<Uint8Array> = fromResults(Result.succeed, Result.succeed)

/**
 * Strings as UTF-8. Deserializing fails on bytes that are not valid UTF-8 rather than replacing
 * them, so a wrong serde shows up as errors instead of mangled text.
 *
 * @example
 * ```ts
 * import { Serde } from "@effect-kinesis/core"
 * import { Effect } from "effect"
 *
 * const text = Effect.runSync(Serde.string.deserialize(new Uint8Array([104, 105]))) // "hi"
 * ```
 *
 * @since 0.1.0
 * @category serdes
 */
export const string: SyncSerde<string> = fromResults(
  (value) => Result.succeed(encoder.encode(value)),
  (bytes) => {
    try {
      return Result.succeed(strictUtf8.decode(bytes))
    } catch (cause) {
      return Result.fail(deserializationError(bytes)(cause))
    }
  }
)

/**
 * Values of a schema as JSON text in UTF-8. The schema's canonical JSON form is used
 * (`Schema.toCodecJson`), so `Date`, `bigint`, `Uint8Array` and the like round-trip; a value
 * the schema rejects fails to serialize, bytes that are not valid UTF-8, JSON or the schema fail
 * to deserialize, with the `SchemaError` (and its issue) as `cause`.
 *
 * Runs synchronously, per record: the schema's transformations must not be asynchronous (one
 * that is, or that throws, shows up as the error's `cause`). For such schemas build the serde
 * with {@link make} and `Schema.encodeEffect` / `Schema.decodeUnknownEffect`.
 *
 * @example
 * ```ts
 * import { Serde } from "@effect-kinesis/core"
 * import { Effect, Schema } from "effect"
 *
 * const Order = Schema.Struct({ id: Schema.String, placedAt: Schema.Date })
 * const serde = Serde.json(Order)
 * const program = Effect.gen(function*() {
 *   const bytes = yield* serde.serialize({ id: "o-1", placedAt: new Date(0) })
 *   return yield* serde.deserialize(bytes) // { id: "o-1", placedAt: Date(0) }
 * })
 * ```
 *
 * @since 0.1.0
 * @category serdes
 */
export const json = <A, I>(schema: Schema.Codec<A, I>): SyncSerde<A> => {
  const codec = Schema.fromJsonString(Schema.toCodecJson(schema))
  const encode = Schema.encodeResult(codec)
  const decode = Schema.decodeUnknownResult(codec)
  return fromResults(
    (value) => {
      const text = runSchema(() => encode(value))
      return Result.isSuccess(text)
        ? Result.succeed(encoder.encode(text.success))
        : Result.fail(serializationError(text.failure))
    },
    (bytes) => {
      let text: string
      try {
        text = strictUtf8DropBom.decode(bytes)
      } catch (cause) {
        return Result.fail(deserializationError(bytes)(cause))
      }
      return Result.mapError(runSchema(() => decode(text)), deserializationError(bytes))
    }
  )
}

/**
 * Runs a synchronous schema parser, turning what it throws (an asynchronous transformation, a
 * transformation that throws) into a failure, so one bad record cannot crash a producer.
 */
const runSchema = <A>(parse: () => Result.Result<A, Schema.SchemaError>): Result.Result<A, unknown> => {
  try {
    return parse()
  } catch (thrown) {
    // The parser wraps the defect's Cause in an Error; the defect itself says what went wrong.
    const cause = Predicate.isError(thrown) && Cause.isCause(thrown.cause) ? Cause.squash(thrown.cause) : thrown
    return Result.fail(cause)
  }
}
