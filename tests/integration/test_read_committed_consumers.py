"""read_committed consumers of aiokafka and kafkajs never see aborted or open records.

One broker for the module. A confluent-kafka transactional producer writes, on one
partition: ``c1`` committed, ``a1`` aborted, ``c2`` committed, then ``o1`` in a
transaction it leaves open. A read_committed consumer reads ``c1`` and ``c2`` and
then waits at the open transaction, while a read_uncommitted consumer reads on
through ``a1`` and ``o1``. Only once the read_uncommitted one has seen ``o1`` (so
``o1`` was fetchable all along) is that transaction aborted and ``c3`` and ``END``
committed: the read_committed consumer then ends with exactly ``c1 c2 c3 END``, so it
never got ``o1`` while it was open nor ``a1`` at all. (confluent-kafka's and
kafka-python's read_committed consumers are checked in
tests/integration/test_transactions_read_committed.py.)
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests._broker import ROOT, BrokerProcess, start_broker

pytestmark = pytest.mark.integration

TIMEOUT_S = 40.0
COMMITTED = ["c1", "c2", "c3", "END"]
EVERYTHING = ["c1", "a1", "c2", "o1", "c3", "END"]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    tmp: Path = tmp_path_factory.mktemp("rc-consumers")
    b = start_broker(tmp / "data", log_dir=tmp / "logs")
    try:
        yield b
    finally:
        assert b.stop() == 0


class _Writer:
    """The transactional producer of one topic: the history up to the open ``o1``,
    then (``finish``) its abort and the last two commits."""

    def __init__(self, broker: BrokerProcess, topic: str) -> None:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
            f.result(TIMEOUT_S)
        self.topic = topic
        self.producer = Producer(
            {"bootstrap.servers": broker.bootstrap, "transactional.id": f"{topic}-tx"}
        )
        self.producer.init_transactions(TIMEOUT_S)
        self._txn(["c1"], commit=True)
        self._txn(["a1"], commit=False)
        self._txn(["c2"], commit=True)
        self.producer.begin_transaction()
        self.producer.produce(topic, b"o1", partition=0)
        assert self.producer.flush(TIMEOUT_S) == 0  # written, transaction open

    def _txn(self, values: list[str], *, commit: bool) -> None:
        self.producer.begin_transaction()
        for v in values:
            self.producer.produce(self.topic, v.encode(), partition=0)
        assert self.producer.flush(TIMEOUT_S) == 0
        if commit:
            self.producer.commit_transaction(TIMEOUT_S)
        else:
            self.producer.abort_transaction(TIMEOUT_S)

    def finish(self) -> None:
        self.producer.abort_transaction(TIMEOUT_S)  # o1
        self._txn(["c3"], commit=True)
        self._txn(["END"], commit=True)


def _wait_for(seen: Callable[[], list[str]], wanted: list[str], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while seen()[: len(wanted)] != wanted:
        assert time.monotonic() < deadline, f"{what}: saw {seen()}"
        time.sleep(0.05)


def test_aiokafka_read_committed_skips_aborted_and_waits_at_open(
    broker: BrokerProcess,
) -> None:
    writer = _Writer(broker, "rc-aio")
    seen: dict[str, list[str]] = {"read_committed": [], "read_uncommitted": []}
    # the read_uncommitted consumer has read o1; the read_committed one c1 and c2
    reached = {"read_uncommitted": anyio.Event(), "read_committed": anyio.Event()}
    marks = {"read_uncommitted": EVERYTHING[:4], "read_committed": ["c1", "c2"]}

    async def consume(isolation: str) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            isolation_level=isolation,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        try:
            tp = AioTopicPartition("rc-aio", 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            while not seen[isolation] or seen[isolation][-1] != "END":
                batches = await consumer.getmany(tp, timeout_ms=200)
                for records in batches.values():
                    seen[isolation].extend(
                        r.value.decode() for r in records if r.value is not None
                    )
                if seen[isolation][: len(marks[isolation])] == marks[isolation]:
                    reached[isolation].set()
        finally:
            await consumer.stop()

    async def run() -> None:
        with anyio.fail_after(TIMEOUT_S):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume, "read_committed")
                tg.start_soon(consume, "read_uncommitted")
                await reached["read_uncommitted"].wait()
                await reached["read_committed"].wait()
                assert seen["read_committed"] == ["c1", "c2"]  # waiting at o1
                await anyio.to_thread.run_sync(writer.finish)

    anyio.run(run)
    assert seen["read_committed"] == COMMITTED
    assert seen["read_uncommitted"] == EVERYTHING


_KAFKAJS = """
const { Kafka, logLevel } = require('kafkajs');
const [bootstrap, topic, isolation] = process.argv.slice(1);
const kafka = new Kafka({ brokers: [bootstrap], logLevel: logLevel.NOTHING });
const consumer = kafka.consumer({
  groupId: `${topic}-${isolation}`,
  readUncommitted: isolation === 'read_uncommitted',
  maxWaitTimeInMs: 100,
});
(async () => {
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ message }) => {
      const value = message.value.toString();
      console.log(JSON.stringify({ value }));
      if (value === 'END') {
        setImmediate(async () => { await consumer.disconnect(); process.exit(0); });
      }
    },
  });
})().catch((e) => {
  console.log(JSON.stringify({ error: e.message }));
  process.exit(1);
});
"""


class _NodeConsumer:
    """A kafkajs consumer process; the values it printed, read by a thread."""

    def __init__(self, broker: BrokerProcess, topic: str, isolation: str) -> None:
        self.values: list[str] = []
        self.errors: list[str] = []
        self.proc = subprocess.Popen(
            ["node", "-e", _KAFKAJS, broker.bootstrap, topic, isolation],
            cwd=Path(ROOT) / "tests" / "js",
            stdout=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            if "value" in msg:
                self.values.append(msg["value"])
            else:
                self.errors.append(msg["error"])

    def wait(self) -> None:
        try:
            assert self.proc.wait(TIMEOUT_S) == 0, self.errors
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def test_kafkajs_read_committed_skips_aborted_and_waits_at_open(
    broker: BrokerProcess,
) -> None:
    writer = _Writer(broker, "rc-js")
    committed = _NodeConsumer(broker, "rc-js", "read_committed")
    uncommitted = _NodeConsumer(broker, "rc-js", "read_uncommitted")
    try:
        _wait_for(lambda: uncommitted.values, EVERYTHING[:4], "read_uncommitted")
        _wait_for(lambda: committed.values, ["c1", "c2"], "read_committed")
        assert committed.values == ["c1", "c2"]  # waiting at o1
        writer.finish()
        committed.wait()
        uncommitted.wait()
    finally:
        committed.close()
        uncommitted.close()
    assert committed.values == COMMITTED
    assert uncommitted.values == EVERYTHING
