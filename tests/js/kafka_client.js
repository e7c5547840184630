// kafkajs driver for the integration suite (tests/integration/test_clients_matrix.py).
//
//   node kafka_client.js <command> '<json spec>'
//
// Commands (spec fields in brackets):
//   create   {brokers, topic, partitions}        admin.createTopics, waits for leaders
//   delete   {brokers, topic}                    admin.deleteTopics
//   offsets  {brokers, topic}                    admin.fetchTopicOffsets (ListOffsets)
//   configs  {brokers, topic, configs}           admin.alterConfigs of the topic (a
//                                                {key: value} map), then describeConfigs
//                                                of the topic and of broker 0
//   produce  {brokers, topic, codec, file, idempotent}
//                                                producer.send of the JSON-lines records in
//                                                `file` (acks=all), one send per 500 records;
//                                                codec: none gzip snappy lz4 zstd (codecs.js);
//                                                idempotent: an idempotent producer
//   consume  {brokers, topic, starts, maxWaitMs, timeoutMs}
//            starts: [{partition, offset: n | "earliest" | "latest", count}]
//            reads with the kafkajs Fetch API (kafkajs has no manual-assignment
//            consumer) until `count` records per partition are printed. With offset
//            "latest" it resolves the offset via ListOffsets, prints
//            {"ready": {partition: offset}} and follows the partition.
//
// Records on stdin/stdout are JSON lines:
//   {partition, offset, key, value, headers: [[k, v], ...], timestamp}
// keys, values and header values are latin1 strings (null stays null).
'use strict'

const fs = require('fs')
const kafkajs = require('kafkajs')
const { register } = require('./codecs')

const { Kafka, CompressionTypes, ConfigResourceTypes, logLevel } = kafkajs
register(kafkajs) // snappy, lz4, zstd (gzip is built in)

const CODECS = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
}

function client(spec) {
  return new Kafka({
    clientId: 'ailurus-kafkajs-test',
    brokers: spec.brokers,
    logLevel: logLevel.ERROR,
    retry: { retries: 5, initialRetryTime: 100 },
  })
}

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function toBuf(s) {
  return s === null ? null : Buffer.from(s, 'latin1')
}

function fromBuf(b) {
  return b === null || b === undefined ? null : Buffer.from(b).toString('latin1')
}

async function create(spec) {
  const admin = client(spec).admin()
  await admin.connect()
  try {
    const created = await admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic: spec.topic, numPartitions: spec.partitions, replicationFactor: 1 }],
    })
    const topics = await admin.listTopics()
    out({ created, listed: topics.includes(spec.topic) })
  } finally {
    await admin.disconnect()
  }
}

async function remove(spec) {
  const admin = client(spec).admin()
  await admin.connect()
  try {
    await admin.deleteTopics({ topics: [spec.topic], timeout: 5000 })
    const topics = await admin.listTopics()
    out({ deleted: true, listed: topics.includes(spec.topic) })
  } finally {
    await admin.disconnect()
  }
}

async function offsets(spec) {
  const admin = client(spec).admin()
  await admin.connect()
  try {
    const result = await admin.fetchTopicOffsets(spec.topic)
    out({
      offsets: result.map(r => ({
        partition: r.partition,
        low: Number(r.low),
        high: Number(r.high),
      })),
    })
  } finally {
    await admin.disconnect()
  }
}

async function configs(spec) {
  const admin = client(spec).admin()
  await admin.connect()
  try {
    const altered = await admin.alterConfigs({
      validateOnly: false,
      resources: [
        {
          type: ConfigResourceTypes.TOPIC,
          name: spec.topic,
          configEntries: Object.entries(spec.configs).map(([name, value]) => ({ name, value })),
        },
      ],
    })
    const described = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [
        { type: ConfigResourceTypes.TOPIC, name: spec.topic },
        { type: ConfigResourceTypes.BROKER, name: '0' },
      ],
    })
    const [topic, broker] = described.resources
    const entries = r =>
      Object.fromEntries(r.configEntries.map(e => [e.configName, [e.configValue, e.readOnly]]))
    out({
      altered: altered.resources.map(r => [r.resourceName, r.errorCode]),
      topic: entries(topic),
      broker: entries(broker),
    })
  } finally {
    await admin.disconnect()
  }
}

// kafkajs's idempotent producer asks the controller that Metadata names for its
// producer id and gives up at the first connection error (eosManager's
// initProducerId bails on anything but a retriable protocol error). Until a killed
// controller's session expires, Metadata still names it: connect again for a while.
async function connectProducer(producer) {
  for (let attempt = 1; ; attempt++) {
    try {
      await producer.connect()
      return
    } catch (e) {
      if (e.name !== 'KafkaJSConnectionError' || attempt >= 40) throw e
      await new Promise(resolve => setTimeout(resolve, 250))
    }
  }
}

async function produce(spec) {
  const codec = CODECS[spec.codec]
  if (codec === undefined) throw new Error(`kafka_client.js has no codec ${spec.codec}`)
  const lines = fs.readFileSync(spec.file, 'utf8').split('\n').filter(l => l.length > 0)
  // idempotent: kafkajs wants one request in flight, and its default retries for an
  // idempotent producer are unbounded; a bounded budget of a few seconds covers a
  // leader's failover (session timeout and election) and keeps a test bounded
  const producer = client(spec).producer(
    spec.idempotent
      ? {
          allowAutoTopicCreation: false,
          idempotent: true,
          maxInFlightRequests: 1,
          retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 1000 },
        }
      : { allowAutoTopicCreation: false, idempotent: false }
  )
  await connectProducer(producer)
  let acked = 0
  try {
    for (let i = 0; i < lines.length; i += 500) {
      const messages = lines.slice(i, i + 500).map(line => {
        const r = JSON.parse(line)
        const headers = {}
        for (const [k, v] of r.headers) {
          if (headers[k] === undefined) headers[k] = toBuf(v)
          else if (Array.isArray(headers[k])) headers[k].push(toBuf(v))
          else headers[k] = [headers[k], toBuf(v)]
        }
        const message = { partition: r.partition, key: toBuf(r.key), value: toBuf(r.value), headers }
        // null: kafkajs stamps the record itself (Date.now())
        if (r.timestamp !== null) message.timestamp = String(r.timestamp)
        return message
      })
      const res = await producer.send({ topic: spec.topic, acks: -1, compression: codec, messages })
      for (const r of res) {
        if (r.errorCode !== 0) throw new Error(`produce error ${JSON.stringify(r)}`)
      }
      acked += messages.length
    }
  } finally {
    await producer.disconnect()
  }
  out({ acked })
}

function decodeHeaders(headers) {
  const result = []
  for (const [k, v] of Object.entries(headers || {})) {
    if (Array.isArray(v)) for (const x of v) result.push([k, fromBuf(x)])
    else result.push([k, fromBuf(v)])
  }
  return result
}

async function consume(spec) {
  const kafka = client(spec)
  const admin = kafka.admin()
  await admin.connect()
  const sym = Object.getOwnPropertySymbols(kafka).find(
    s => s.description === 'private:Kafka:createCluster'
  )
  const cluster = kafka[sym]({ allowAutoTopicCreation: false })
  await cluster.connect()
  const deadline = Date.now() + (spec.timeoutMs || 30000)
  try {
    await cluster.addTargetTopic(spec.topic)
    const listed = await admin.fetchTopicOffsets(spec.topic)
    const position = {}
    const remaining = {}
    const ready = {}
    for (const s of spec.starts) {
      const o = listed.find(r => r.partition === s.partition)
      if (s.offset === 'earliest') position[s.partition] = Number(o.low)
      else if (s.offset === 'latest') {
        position[s.partition] = Number(o.high)
        ready[s.partition] = Number(o.high)
      } else position[s.partition] = s.offset
      remaining[s.partition] = s.count
    }
    if (Object.keys(ready).length > 0) out({ ready })
    const leaders = cluster.findLeaderForPartitions(
      spec.topic,
      spec.starts.map(s => s.partition)
    )
    // each partition is fetched from its own leader (a cluster spreads them)
    const brokers = []
    for (const [nodeId, partitions] of Object.entries(leaders)) {
      brokers.push({ broker: await cluster.findBroker({ nodeId }), partitions })
    }
    while (Object.values(remaining).some(n => n > 0)) {
      if (Date.now() > deadline) throw new Error(`timeout; remaining ${JSON.stringify(remaining)}`)
      for (const { broker, partitions } of brokers) {
        const wanted = partitions.filter(p => remaining[p] > 0)
        if (wanted.length === 0) continue
        const response = await broker.fetch({
          replicaId: -1,
          isolationLevel: 1,
          maxWaitTime: brokers.length > 1 ? 50 : spec.maxWaitMs || 500,
          minBytes: 1,
          maxBytes: 8 * 1024 * 1024,
          topics: [
            {
              topic: spec.topic,
              partitions: wanted.map(p => ({
                partition: Number(p),
                fetchOffset: String(position[p]),
                maxBytes: 1024 * 1024,
              })),
            },
          ],
        })
        for (const t of response.responses) {
          for (const p of t.partitions) {
            if (p.errorCode !== 0) throw new Error(`fetch error ${p.errorCode} on ${p.partition}`)
            for (const m of p.messages) {
              const offset = Number(m.offset)
              if (offset < position[p.partition] || remaining[p.partition] <= 0) continue
              if (m.isControlRecord) continue
              out({
                partition: p.partition,
                offset,
                key: fromBuf(m.key),
                value: fromBuf(m.value),
                headers: decodeHeaders(m.headers),
                timestamp: Number(m.timestamp),
              })
              position[p.partition] = offset + 1
              remaining[p.partition] -= 1
            }
          }
        }
      }
    }
  } finally {
    await cluster.disconnect()
    await admin.disconnect()
  }
}

const COMMANDS = { create, delete: remove, offsets, configs, produce, consume }

async function main() {
  const [command, json] = process.argv.slice(2)
  const fn = COMMANDS[command]
  if (fn === undefined) throw new Error(`unknown command ${command}`)
  await fn(JSON.parse(json))
}

// Let node exit by itself once stdout is drained (process.exit() could cut a piped
// stdout short); a watchdog ends a process kafkajs would keep alive.
main().then(
  () => {
    process.exitCode = 0
    setTimeout(() => process.exit(0), 5000).unref()
  },
  err => {
    process.stderr.write(`${err.stack || err}\n`)
    process.exitCode = 1
    setTimeout(() => process.exit(1), 5000).unref()
  }
)
