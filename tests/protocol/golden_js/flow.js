// kafkajs flow for tests/protocol/capture_golden.py (run with NODE_PATH=tests/js/node_modules):
//
//   node flow.js '{"brokers": [...], "topic": ..., "group": ..., "records": [[key, value], ...],
//                  "header": [name, value]}'
//
// Creates the topic with the admin client, produces the records gzip-compressed with the
// header, consumes them in a consumer group (kafkajs commits the offsets itself) and
// disconnects everything. Exits non-zero on any error or after 60 s.
'use strict'

const { Kafka, CompressionTypes, logLevel } = require('kafkajs')

async function main(spec) {
  const kafka = new Kafka({
    clientId: 'kafkajs',
    brokers: spec.brokers,
    logLevel: logLevel.ERROR,
    retry: { retries: 5, initialRetryTime: 100 },
  })
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({
    waitForLeaders: true,
    topics: [{ topic: spec.topic, numPartitions: 1, replicationFactor: 1 }],
  })
  await admin.disconnect()

  const producer = kafka.producer()
  await producer.connect()
  await producer.send({
    topic: spec.topic,
    compression: CompressionTypes.GZIP,
    messages: spec.records.map(([key, value]) => ({
      key,
      value,
      headers: { [spec.header[0]]: spec.header[1] },
    })),
  })
  await producer.disconnect()

  const consumer = kafka.consumer({ groupId: spec.group, maxWaitTimeInMs: 500 })
  await consumer.connect()
  await consumer.subscribe({ topic: spec.topic, fromBeginning: true })
  let got = 0
  await new Promise((resolve, reject) => {
    consumer
      .run({
        autoCommit: true,
        eachMessage: async () => {
          got += 1
          if (got >= spec.records.length) resolve()
        },
      })
      .catch(reject)
  })
  await consumer.commitOffsets([{ topic: spec.topic, partition: 0, offset: String(got) }])
  await consumer.disconnect()
}

const timer = setTimeout(() => {
  console.error('kafkajs flow timed out')
  process.exit(2)
}, 60000)

main(JSON.parse(process.argv[2]))
  .then(() => {
    clearTimeout(timer)
  })
  .catch((err) => {
    console.error(err)
    process.exit(1)
  })
