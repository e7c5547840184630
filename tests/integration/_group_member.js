// One kafkajs consumer-group member, the JS twin of _group_member.py (same JSON lines).
// node tests/integration/_group_member.js BOOTSTRAP TOPIC GROUP
const path = require("path");
const { Kafka, logLevel } = require(path.join(__dirname, "..", "js", "node_modules", "kafkajs"));

const [bootstrap, topic, groupId] = process.argv.slice(2);
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

async function main() {
  const kafka = new Kafka({ clientId: "js-member", brokers: [bootstrap], logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({
    groupId, sessionTimeout: 3000, heartbeatInterval: 300, rebalanceTimeout: 10000, maxWaitTimeInMs: 300,
  });
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    const parts = (e.payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b);
    emit({ event: "assigned", partitions: parts });
  });
  consumer.on(consumer.events.CRASH, (e) => emit({ event: "error", error: String(e.payload.error) }));
  let stopping = false;
  process.on("SIGTERM", async () => {
    if (stopping) return;
    stopping = true;
    await consumer.disconnect();
    emit({ event: "stopped" });
    process.exit(0);
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch, heartbeat }) => {
      if (batch.messages.length === 0) return;
      for (const m of batch.messages) {
        emit({ event: "record", partition: batch.partition, offset: Number(m.offset), value: m.value.toString() });
      }
      const next = Number(batch.messages[batch.messages.length - 1].offset) + 1;
      await consumer.commitOffsets([{ topic, partition: batch.partition, offset: String(next) }]);
      emit({ event: "committed", offsets: { [String(batch.partition)]: next } });
      await heartbeat();
    },
  });
}

main().catch((e) => {
  emit({ event: "error", error: String(e) });
  process.exit(1);
});
