/**
 * Writing to standard output through `Stdio`, so that tests capture exactly what a terminal or a
 * pipe would get.
 *
 * @internal
 */
import { Effect, Stdio, Stream } from "effect"

/**
 * Writes `text` as is. A closed pipe (`effect-kinesis tail … | head`) ends the command quietly,
 * as an interruption, rather than as an error.
 *
 * @internal
 */
export const write = (text: string): Effect.Effect<void, never, Stdio.Stdio> =>
  Effect.flatMap(Stdio.Stdio, (stdio) =>
    Stream.run(Stream.succeed(text), stdio.stdout()).pipe(
      Effect.catch(() => Effect.interrupt)
    ))

/** Writes `line` and a newline. @internal */
export const line = (text: string): Effect.Effect<void, never, Stdio.Stdio> => write(`${text}\n`)

/** Whether standard output is a terminal. @internal */
export const isTerminal: Effect.Effect<boolean, never, Stdio.Stdio> = Effect.flatMap(
  Stdio.Stdio,
  (stdio) => stdio.stdoutIsTerminal
)
