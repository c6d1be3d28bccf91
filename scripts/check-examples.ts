// Type-checks every example users read: the ```ts blocks of README.md and of the guides in docs/,
// and the `@example` blocks of the packages' JSDoc. Each block becomes a module under build/examples/ and one `tsc` run checks
// them all against the packages' sources, so an example that no longer compiles fails `npm run check`.
import { execFileSync } from "node:child_process"
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "..")
const out = Path.join(root, "build", "examples")

interface Example {
  readonly origin: string
  readonly code: string
}

const fromMarkdown = (file: string): Array<Example> => {
  const text = readFileSync(Path.join(root, file), "utf8")
  const examples: Array<Example> = []
  const fence = /^```ts\n([\s\S]*?)^```/gm
  for (const match of text.matchAll(fence)) {
    const line = text.slice(0, match.index).split("\n").length
    examples.push({ origin: `${file}:${line}`, code: match[1]! })
  }
  return examples
}

const fromJsDoc = (file: string): Array<Example> => {
  const text = readFileSync(Path.join(root, file), "utf8")
  const examples: Array<Example> = []
  const block = /@example[^\n]*\n\s*\*\s*```ts\n([\s\S]*?)\n\s*\*\s*```/g
  for (const match of text.matchAll(block)) {
    const line = text.slice(0, match.index).split("\n").length
    const code = match[1]!.split("\n").map((l) => l.replace(/^\s*\* ?/, "")).join("\n")
    examples.push({ origin: `${file}:${line}`, code })
  }
  return examples
}

const sources = (dir: string): Array<string> =>
  readdirSync(Path.join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = Path.join(dir, entry.name)
    if (entry.isDirectory()) return entry.name === "internal" ? [] : sources(path)
    return entry.name.endsWith(".ts") ? [path] : []
  })

// The guides: every Markdown file directly under docs/ (none yet is fine).
const guides = (): Array<string> => {
  try {
    return readdirSync(Path.join(root, "docs")).filter((name) => name.endsWith(".md")).sort().map((name) =>
      Path.join("docs", name)
    )
  } catch {
    return []
  }
}

const packages = readdirSync(Path.join(root, "packages"))
const examples = [
  ...fromMarkdown("README.md"),
  ...guides().flatMap(fromMarkdown),
  ...packages.flatMap((name) => sources(Path.join("packages", name, "src"))).flatMap(fromJsDoc)
]

rmSync(out, { recursive: true, force: true })
mkdirSync(out, { recursive: true })
const origins: Record<string, string> = {}
examples.forEach((example, i) => {
  const name = `example${String(i).padStart(4, "0")}.ts`
  origins[name] = example.origin
  // `export {}` keeps each block a module, so blocks may reuse names.
  writeFileSync(Path.join(out, name), `// ${example.origin}\n${example.code}\nexport {}\n`)
})
writeFileSync(
  Path.join(out, "tsconfig.json"),
  JSON.stringify({
    extends: "../../tsconfig.base.json",
    include: ["*.ts"],
    compilerOptions: {
      composite: false,
      incremental: false,
      noEmit: true,
      declaration: false,
      declarationMap: false,
      sourceMap: false,
      noUnusedLocals: false,
      noUnusedParameters: false
    }
  })
)

try {
  execFileSync(Path.join(root, "node_modules", ".bin", "tsc"), ["-p", Path.join(out, "tsconfig.json")], {
    encoding: "utf8",
    stdio: "pipe"
  })
} catch (error) {
  const output = String((error as { stdout?: string }).stdout ?? error)
  // Name each failing example by where it is written, not by its generated file.
  const located = output.replace(/(?:build\/examples\/)?(example\d{4}\.ts)\((\d+),(\d+)\)/g, (_, name, line, col) => {
    const origin = origins[name] ?? name
    return `${origin} (example line ${Number(line) - 1}, col ${col})`
  })
  console.error(located)
  console.error(`Examples that do not compile: see above (${examples.length} checked).`)
  process.exit(1)
}
console.log(`All ${examples.length} examples compile.`)
