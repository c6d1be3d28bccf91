// docs/iam.md against the code: every AWS call the packages make is granted by the policy of each role that makes
// it, and the guide names no action the code never calls. The calls are read from the sources (`new XxxCommand`
// for the SDK, `.method(` for the `Client` service's methods), so a call added without the guide fails here.
import { describe, expect, it } from "@effect/vitest"
import { readdirSync, readFileSync, statSync } from "node:fs"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../../..")
const guide = readFileSync(Path.join(root, "docs", "iam.md"), "utf8")

const tsFiles = (path: string): Array<string> => {
  const full = Path.join(root, path)
  if (statSync(full).isFile()) return [path]
  return readdirSync(full).sort().flatMap((name) =>
    statSync(Path.join(full, name)).isDirectory()
      ? tsFiles(Path.join(path, name))
      : name.endsWith(".ts")
      ? [Path.join(path, name)]
      : []
  )
}

// Without comments: JSDoc examples show SDK calls (`new ListTablesCommand`) the package itself never makes.
const read = (file: string) =>
  readFileSync(Path.join(root, file), "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "")

// The SDK clients' service prefixes in IAM.
const prefixes: Record<string, string> = { kinesis: "kinesis", dynamodb: "dynamodb", cloudwatch: "cloudwatch" }

/** The IAM actions of the SDK commands constructed in these files, e.g. `kinesis:PutRecords`. */
const commandsIn = (paths: ReadonlyArray<string>): Set<string> => {
  const actions = new Set<string>()
  for (const file of paths.flatMap(tsFiles)) {
    const text = read(file)
    const imported = new Map<string, string>()
    for (const match of text.matchAll(/import\s+(?:type\s+)?\{([^}]*)\}\s+from\s+"@aws-sdk\/client-([a-z0-9-]+)"/g)) {
      for (const name of match[1]!.split(",").map((s) => s.trim().replace(/^type\s+/, ""))) {
        if (name.endsWith("Command")) imported.set(name, match[2]!)
      }
    }
    for (const match of text.matchAll(/new\s+([A-Z]\w*Command)\s*\(/g)) {
      const client = imported.get(match[1]!)
      // A command built from an import this test cannot place would escape the check.
      expect(client, `${file}: ${match[1]} is not imported from an @aws-sdk client`).toBeDefined()
      const prefix = prefixes[client!]
      expect(prefix, `${file}: no IAM prefix known for @aws-sdk/client-${client}`).toBeDefined()
      actions.add(`${prefix}:${match[1]!.replace(/Command$/, "")}`)
    }
  }
  return actions
}

// The `Client` service's methods and the action each sends (read from packages/core/src/Client.ts; the test below
// checks that this table covers exactly the commands Client.ts builds).
const clientMethods: Record<string, ReadonlyArray<string>> = {
  putRecord: ["kinesis:PutRecord"],
  putRecords: ["kinesis:PutRecords"],
  getShardIterator: ["kinesis:GetShardIterator"],
  getRecords: ["kinesis:GetRecords"],
  listShards: ["kinesis:ListShards"],
  listStreams: ["kinesis:ListStreams"],
  describeStreamSummary: ["kinesis:DescribeStreamSummary"],
  // A stream given by name is resolved to its ARN with DescribeStreamSummary.
  streamArn: ["kinesis:DescribeStreamSummary"],
  subscribeToShard: ["kinesis:SubscribeToShard"],
  registerStreamConsumer: ["kinesis:RegisterStreamConsumer", "kinesis:DescribeStreamSummary"],
  describeStreamConsumer: ["kinesis:DescribeStreamConsumer", "kinesis:DescribeStreamSummary"],
  deregisterStreamConsumer: ["kinesis:DeregisterStreamConsumer", "kinesis:DescribeStreamSummary"],
  listStreamConsumers: ["kinesis:ListStreamConsumers", "kinesis:DescribeStreamSummary"]
}

/** The actions of the `Client` methods called in these files. */
const clientCallsIn = (paths: ReadonlyArray<string>, except: ReadonlyArray<string> = []): Set<string> => {
  const pattern = new RegExp(`\\.(${Object.keys(clientMethods).join("|")})\\(`, "g")
  const actions = new Set<string>()
  for (const file of paths.flatMap(tsFiles).filter((file) => !except.includes(file))) {
    for (const match of read(file).matchAll(pattern)) {
      for (const action of clientMethods[match[1]!]!) actions.add(action)
    }
  }
  return actions
}

const union = (...sets: ReadonlyArray<Iterable<string>>): Set<string> => new Set(sets.flatMap((set) => [...set]))
const sorted = (set: Iterable<string>) => [...set].sort()

// The enhanced fan-out parts of the consumer; the rest is what a polling consumer runs.
const fanOutFiles = [
  "packages/consumer/src/EnhancedFanOut.ts",
  "packages/consumer/src/internal/fanOutFetcher.ts",
  "packages/consumer/src/internal/streamConsumer.ts"
]
// What only creating the lease table calls (the table's tags and point-in-time recovery are set after creating it).
const tableCreation = [
  "dynamodb:CreateTable",
  "dynamodb:TagResource",
  "dynamodb:ListTagsOfResource",
  "dynamodb:UpdateContinuousBackups"
]
const leaseStore = commandsIn(["packages/lease-dynamodb/src"])
const pollingConsumer = clientCallsIn(["packages/consumer/src"], fanOutFiles)

/** What each role's policy in the guide must grant, derived from the code. */
const roles: Record<string, Set<string>> = {
  producer: clientCallsIn(["packages/producer/src"]),
  "consumer-polling": pollingConsumer,
  "consumer-fan-out": clientCallsIn(["packages/consumer/src"]),
  "lease-table": new Set([...leaseStore].filter((action) => !tableCreation.includes(action))),
  "lease-table-create": new Set([...leaseStore].filter((action) => tableCreation.includes(action))),
  cloudwatch: commandsIn(["packages/cloudwatch/src"]),
  // `tail` is the polling consumer on an in-memory lease store; `leases` checks the table (DescribeTable) and scans it.
  cli: union(clientCallsIn(["packages/cli/src"]), pollingConsumer, ["dynamodb:DescribeTable", "dynamodb:Scan"]),
  admin: union(
    commandsIn(["packages/core/src/AdminClient.ts"]),
    clientCallsIn(["packages/core/src/AdminClient.ts"])
  )
}

/** The actions of each policy in the guide: a ```json block right after `<!-- policy: name -->`. */
const policies = (): Map<string, Set<string>> => {
  const found = new Map<string, Set<string>>()
  for (const match of guide.matchAll(/<!-- policy: ([\w-]+) -->\s*```json\n([\s\S]*?)^```/gm)) {
    const document = JSON.parse(match[2]!) as {
      readonly Statement: ReadonlyArray<{ readonly Action: string | ReadonlyArray<string> }>
    }
    const actions = new Set<string>()
    for (const statement of document.Statement) {
      for (const action of typeof statement.Action === "string" ? [statement.Action] : statement.Action) {
        actions.add(action)
      }
    }
    expect(found.has(match[1]!), `policy ${match[1]} appears twice`).toBe(false)
    found.set(match[1]!, actions)
  }
  return found
}

// Every `service:Action` the guide names, in policies, tables or prose (condition keys are lower case; ARNs are not
// actions).
const namedInGuide = (): Set<string> =>
  new Set([...guide.matchAll(/(?<!arn:aws:)\b(kinesis|dynamodb|cloudwatch):([A-Z]\w+)/g)].map((m) => `${m[1]}:${m[2]}`))

const productionPackages = readdirSync(Path.join(root, "packages"))
  .filter((name) => name !== "testing") // emulators and test fixtures, no AWS account
  .map((name) => Path.join("packages", name, "src"))

describe("docs/iam.md", () => {
  it("the Client method table covers exactly the commands Client.ts builds", () => {
    expect(sorted(union(...Object.values(clientMethods)))).toEqual(
      sorted(union(commandsIn(["packages/core/src/Client.ts"]), ["kinesis:DescribeStreamSummary"]))
    )
  })

  it("each role's policy grants exactly the actions that role's code calls", () => {
    const inGuide = policies()
    expect(sorted(inGuide.keys())).toEqual(sorted(Object.keys(roles)))
    for (const [role, actions] of Object.entries(roles)) {
      expect(actions.size, `no calls found for ${role}: the test reads the wrong files`).toBeGreaterThan(0)
      expect({ role, actions: sorted(inGuide.get(role)!) }).toEqual({ role, actions: sorted(actions) })
    }
  })

  it("names every action the packages call, and none they do not", () => {
    const called = union(...productionPackages.map((dir) => commandsIn([dir])))
    const named = namedInGuide()
    expect({ missingFromGuide: sorted([...called].filter((a) => !named.has(a))) }).toEqual({ missingFromGuide: [] })
    expect({ neverCalled: sorted([...named].filter((a) => !called.has(a))) }).toEqual({ neverCalled: [] })
  })
})
