import { DynamoDbClient, DynamoDbLeaseRepository } from "@effect-kinesis/lease-dynamodb"
import { DynamoEmulator } from "@effect-kinesis/testing"
import * as LeaseRepositoryContract from "@effect-kinesis/testing/LeaseRepositoryContract"
import { Effect, Layer } from "effect"

const ClientLive = Layer.unwrap(Effect.gen(function*() {
  const dynamo = yield* DynamoEmulator.DynamoEmulator
  return DynamoDbClient.layer(dynamo.clientConfig)
}))

LeaseRepositoryContract.leaseRepositoryContract(
  "DynamoDB LeaseRepository on dynalite",
  DynamoDbLeaseRepository.layer({ applicationName: "contract" }).pipe(
    Layer.provide(ClientLive),
    Layer.provide(DynamoEmulator.layer())
  )
)
