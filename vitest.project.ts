import { configDefaults, defineProject } from "vitest/config"

/**
 * Test files that run last, one at a time, after the others ran two at a time: they start worker
 * processes or compare rates between phases of one run, and another file sharing the two cores
 * would bend their timing targets (a resume gap, a throughput ratio), not their correctness.
 */
export const alone: ReadonlyArray<string> = [
  "packages/testing/test/Chaos.test.ts",
  "packages/testing/test/Examples.test.ts",
  "packages/cloudwatch/test/Outage.test.ts",
  "packages/cloudwatch/test/Demo.test.ts",
  "packages/cli/test/Executable.test.ts"
]

// Workspace packages resolve to their TypeScript sources through the
// "@effect-kinesis/source" export condition, so tests never need a build.
const source = {
  resolve: { conditions: ["@effect-kinesis/source"] },
  ssr: { resolve: { conditions: ["@effect-kinesis/source"] } }
}
const timeouts = { testTimeout: 60_000, hookTimeout: 60_000 }

/** The project of the package in `dir` (its `vitest.config.ts` passes `import.meta.dirname`). */
export const packageProject = (dir: string) => {
  const prefix = `${dir.split(/[\\/]packages[\\/]/).at(-1)}/`
  return defineProject({
    ...source,
    test: {
      include: ["test/**/*.test.ts"],
      exclude: [
        ...configDefaults.exclude,
        ...alone.filter((file) => file.startsWith(`packages/${prefix}`)).map((file) =>
          file.slice(`packages/${prefix}`.length)
        )
      ],
      // Here, not only at the root: a project from its own file takes none of the root's options,
      // and one worker it would be.
      maxWorkers: 2,
      ...timeouts
    }
  })
}

/** The {@link alone} files, as one project run after the others, one file at a time. */
export const aloneProject = defineProject({
  ...source,
  test: { name: "one at a time", include: [...alone], maxWorkers: 1, sequence: { groupOrder: 1 }, ...timeouts }
})
