import type { Duration } from "effect"

/**
 * What the chaos runner hands its child processes, and the lines they write back.
 */

/** Settings of one worker process (passed as JSON in argv[2]). */
export interface WorkerConfig {
  readonly workerId: string
  readonly stream: string
  readonly applicationName: string
  readonly kinesisEndpoint: string
  readonly dynamoEndpoint: string
  readonly region: string
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string }
  readonly recordsFile: string
  readonly eventsFile: string
  readonly pollInterval: Duration.Input
  readonly checkpointInterval: Duration.Input
  readonly checkpointBatchSize: number
  readonly lease: {
    readonly expiry: Duration.Input
    readonly renewInterval: Duration.Input
    readonly takeInterval: Duration.Input
    readonly scanInterval: Duration.Input
    readonly shardSyncInterval: Duration.Input
    readonly coordination: "workers" | "leader"
  }
}

/** Settings of the producer process (passed as JSON in argv[2]). */
export interface ProducerConfig {
  readonly stream: string
  readonly kinesisEndpoint: string
  readonly region: string
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string }
  readonly acksFile: string
  /** Records per second. */
  readonly rate: number
  readonly durationMillis: number
  readonly keys: number
  readonly seed: number
}

/** A record the producer got acknowledged: where Kinesis stored it. */
export interface AckLine {
  readonly id: number
  readonly k: string
  /** The key's counter: the n-th record of this key. */
  readonly n: number
  readonly s: string
  readonly q: string
  readonly u: number
  readonly t: number
}

/** A record a worker processed. */
export interface ProcessedLine {
  readonly id: number
  readonly k: string
  readonly n: number
  readonly s: string
  readonly q: string
  readonly u: number
  readonly t: number
}
