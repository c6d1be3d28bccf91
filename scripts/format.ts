// Formats (or, with --check, verifies) the repo's TypeScript and JSON with dprint's Wasm plugins.
// The dprint CLI ships per-platform binaries as optional dependencies, which a registry mirror
// that carries only some platforms cannot lock; the Wasm plugins are plain npm files.
import { createContext } from "@dprint/formatter"
import { execFileSync } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"

const require = createRequire(import.meta.url)
const config = JSON.parse(readFileSync(new URL("../dprint.json", import.meta.url), "utf8")) as {
  readonly lineWidth: number
  readonly indentWidth: number
  readonly typescript: Record<string, unknown>
  readonly json?: Record<string, unknown>
}
const check = process.argv.includes("--check")
const only = process.argv.slice(2).filter((arg) => !arg.startsWith("--"))

const context = createContext({ lineWidth: config.lineWidth, indentWidth: config.indentWidth })
context.addPlugin(readFileSync(require.resolve("@dprint/typescript/plugin.wasm")), config.typescript)
context.addPlugin(readFileSync(require.resolve("@dprint/json/plugin.wasm")), config.json ?? {})

// Tracked and new files, minus what .gitignore excludes; the lock file is npm's to format.
const files = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", ...only], {
  encoding: "utf8"
})
  .split("\n")
  .filter((file) => /\.(ts|json)$/.test(file) && file !== "package-lock.json" && !file.startsWith("bench/results/"))

const unformatted: Array<string> = []
for (const file of files) {
  let text: string
  try {
    text = readFileSync(file, "utf8")
  } catch {
    continue // listed by git but deleted in the work tree
  }
  const formatted = context.formatText({ filePath: file, fileText: text })
  if (formatted === text) continue
  unformatted.push(file)
  if (!check) writeFileSync(file, formatted)
}

if (check && unformatted.length > 0) {
  console.error(`Not formatted (run \`npm run format\`):\n  ${unformatted.join("\n  ")}`)
  process.exit(1)
}
console.log(
  `${check ? "Checked" : "Formatted"} ${files.length} files${check ? "" : `, changed ${unformatted.length}`}.`
)
