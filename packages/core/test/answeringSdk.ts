import { KinesisClient } from "@aws-sdk/client-kinesis"
import { HttpResponse } from "@smithy/core/protocols"
import { Readable } from "node:stream"

/**
 * A real SDK client whose every request is answered with `respond()`'s status and body, split in
 * chunks as a socket would deliver it: the SDK's own deserializer and the client's run on the
 * same bytes. An error status carries `errorType`.
 */
export const answeringSdk = (
  errorType: string,
  respond: () => { readonly status: number; readonly body: string; readonly chunk: number }
): KinesisClient =>
  new KinesisClient({
    region: "us-east-1",
    endpoint: "http://127.0.0.1:1",
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
    maxAttempts: 1,
    requestHandler: {
      handle: async () => {
        const { body, chunk, status } = respond()
        const bytes = Buffer.from(body, "utf8")
        const chunks: Array<Buffer> = []
        for (let i = 0; i < bytes.length; i += chunk) chunks.push(bytes.subarray(i, i + chunk))
        return {
          response: new HttpResponse({
            statusCode: status,
            headers: {
              "content-type": "application/x-amz-json-1.1",
              ...(status === 200 ? {} : { "x-amzn-errortype": errorType })
            },
            body: Readable.from(chunks)
          })
        }
      }
    }
  })
