// kafkajs SASL driver for tests/security (PLAIN, SCRAM-SHA-256/512, optional TLS).
//
//   node sasl_client.js '{"brokers": [...], "mechanism": "scram-sha-256",
//                         "username": "...", "password": "...", "topic": "...",
//                         "ca": "/path/ca.pem" | null, "count": 3}'
//
// Produces `count` messages (acks=all), reads them back with the Fetch API through a
// consumer group, and prints one JSON line: {"produced": n, "consumed": [values]}
// or, on failure, {"error": <kafkajs error name>, "type": <Kafka error type>}.
'use strict'

const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')

async function main() {
  const spec = JSON.parse(process.argv[2])
  const kafka = new Kafka({
    clientId: 'ailurus-sasl-test',
    brokers: spec.brokers,
    logLevel: logLevel.NOTHING,
    retry: { retries: 0 },
    ssl: spec.ca ? { ca: [fs.readFileSync(spec.ca, 'utf-8')], servername: 'localhost' } : false,
    sasl: { mechanism: spec.mechanism, username: spec.username, password: spec.password },
  })
  const producer = kafka.producer({ allowAutoTopicCreation: true })
  await producer.connect()
  const values = []
  for (let i = 0; i < spec.count; i++) values.push(`${spec.mechanism}-${i}`)
  try {
    await producer.send({ topic: spec.topic, acks: -1, messages: values.map((value) => ({ value })) })
  } finally {
    await producer.disconnect()
  }
  const consumer = kafka.consumer({ groupId: `${spec.topic}-group`, maxWaitTimeInMs: 200 })
  await consumer.connect()
  const consumed = []
  try {
    await consumer.subscribe({ topic: spec.topic, fromBeginning: true })
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('consume timeout')), 20000)
      consumer.run({
        eachMessage: async ({ message }) => {
          consumed.push(message.value.toString())
          if (consumed.length >= spec.count) {
            clearTimeout(timer)
            resolve()
          }
        },
      }).catch(reject)
    })
  } finally {
    await consumer.disconnect()
  }
  process.stdout.write(JSON.stringify({ produced: values.length, consumed }) + '\n')
}

main().then(() => process.exit(0)).catch((e) => {
  process.stdout.write(JSON.stringify({ error: e.name, type: e.type || null, message: e.message }) + '\n')
  process.exit(0) // kafkajs may keep sockets open after a failed login
})
