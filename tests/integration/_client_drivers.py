"""One driver per real Kafka client, behind the same small interface, for the matrix.

Each driver creates/deletes topics through its client's admin API, produces a list
of :class:`Rec` with explicit partitions, reads partitions back from an explicit
offset or the earliest one with manual assignment (no consumer group), and follows a
partition from the latest offset. This module holds the interface and the in-process
Python clients (kafka-python, aiokafka, confluent-kafka); ``_cli_drivers`` holds kcat
and kafkajs, which run as subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import kafka
import kafka.admin
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin import NewTopic as AioNewTopic
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, Producer
from confluent_kafka import TopicPartition as CkTopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin import NewTopic as CkNewTopic

from tests._kafka_python import survive_departed_broker

READ_TIMEOUT_S = 60.0
Start = int | str  # an offset, or "earliest"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rec:
    """A record as sent or read; ``timestamp`` None means "the producer picks it"."""

    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int | None
    offset: int = -1


def _latin1(b: bytes | None) -> str | None:
    return None if b is None else b.decode("latin1")


def _bytes(s: str | None) -> bytes | None:
    return None if s is None else s.encode("latin1")


def rec_to_json(r: Rec) -> str:
    """The JSON line the kafkajs runner reads."""
    return json.dumps(
        {
            "partition": r.partition,
            "key": _latin1(r.key),
            "value": _latin1(r.value),
            "headers": [[k, _latin1(v)] for k, v in r.headers],
            "timestamp": r.timestamp,
        }
    )


def rec_from_json(d: dict[str, Any]) -> Rec:
    """Parse one record line printed by the kafkajs runner."""
    return Rec(
        partition=d["partition"],
        offset=d["offset"],
        key=_bytes(d["key"]),
        value=_bytes(d["value"]),
        headers=tuple((k, _bytes(v) or b"") for k, v in d["headers"]),
        timestamp=d["timestamp"],
    )


class Follower(Protocol):
    def poll(self, timeout: float) -> list[Rec]: ...
    def close(self) -> None: ...


class Driver(Protocol):
    name: str
    codecs: tuple[str, ...]
    # kcat sends the same headers with every record and picks timestamps itself
    varied_records: bool

    def create_topic(self, bootstrap: str, topic: str, partitions: int) -> None: ...
    def delete_topic(self, bootstrap: str, topic: str) -> None: ...
    def produce(
        self,
        bootstrap: str,
        topic: str,
        codec: str,
        records: Sequence[Rec],
        *,
        idempotent: bool = False,
    ) -> None: ...
    def read(
        self, bootstrap: str, topic: str, starts: dict[int, tuple[Start, int]]
    ) -> dict[int, list[Rec]]: ...
    def follow_latest(self, bootstrap: str, topic: str, partition: int) -> Follower: ...


def _deadline_check(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(what)


# --------------------------------------------------------------------------- kafka-python


class KafkaPythonDriver:
    name: str = "kafka-python"
    codecs: tuple[str, ...] = ("none", "gzip", "snappy", "lz4", "zstd")
    varied_records: bool = True

    def create_topic(self, bootstrap: str, topic: str, partitions: int) -> None:
        admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            admin.create_topics(
                [
                    kafka.admin.NewTopic(
                        topic, num_partitions=partitions, replication_factor=1
                    )
                ]
            )
        finally:
            admin.close()

    def delete_topic(self, bootstrap: str, topic: str) -> None:
        admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            admin.delete_topics([topic])
        finally:
            admin.close()

    def produce(
        self,
        bootstrap: str,
        topic: str,
        codec: str,
        records: Sequence[Rec],
        *,
        idempotent: bool = False,
    ) -> None:
        # defaults: acks=all, idempotent (``idempotent`` only makes it explicit)
        survive_departed_broker()  # a kafka-python 3.0 bug: see the helper
        producer = kafka.KafkaProducer(
            bootstrap_servers=bootstrap,
            compression_type=None if codec == "none" else codec,
        )
        try:
            futures = [
                producer.send(
                    topic,
                    key=r.key,
                    value=r.value,
                    partition=r.partition,
                    headers=list(r.headers),
                    timestamp_ms=r.timestamp,
                )
                for r in records
            ]
            producer.flush(timeout=30)
            for f in futures:
                f.get(timeout=30)
        finally:
            producer.close(timeout=10)

    def _consumer(self, bootstrap: str) -> kafka.KafkaConsumer:
        return kafka.KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    @staticmethod
    def _rec(m: Any) -> Rec:
        return Rec(
            partition=m.partition,
            offset=m.offset,
            key=m.key,
            value=m.value,
            headers=tuple(m.headers),
            timestamp=m.timestamp,
        )

    def read(
        self, bootstrap: str, topic: str, starts: dict[int, tuple[Start, int]]
    ) -> dict[int, list[Rec]]:
        consumer = self._consumer(bootstrap)
        try:
            tps = {p: kafka.TopicPartition(topic, p) for p in starts}
            consumer.assign(list(tps.values()))
            for p, (start, _) in starts.items():
                if start == "earliest":
                    consumer.seek_to_beginning(tps[p])
                else:
                    consumer.seek(tps[p], int(start))
            out: dict[int, list[Rec]] = {p: [] for p in starts}
            deadline = time.monotonic() + READ_TIMEOUT_S
            while any(len(out[p]) < n for p, (_, n) in starts.items()):
                _deadline_check(deadline, f"kafka-python read {topic}")
                for tp, msgs in consumer.poll(timeout_ms=500).items():
                    out[tp.partition].extend(self._rec(m) for m in msgs)
            return out
        finally:
            consumer.close()

    def follow_latest(self, bootstrap: str, topic: str, partition: int) -> Follower:
        consumer = self._consumer(bootstrap)
        tp = kafka.TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek_to_end(tp)
        consumer.position(tp)  # resolves "latest" now (ListOffsets)
        driver = self

        class _F:
            def poll(self, timeout: float) -> list[Rec]:
                batches = consumer.poll(timeout_ms=int(timeout * 1000))
                return [driver._rec(m) for msgs in batches.values() for m in msgs]

            def close(self) -> None:
                consumer.close()

        return _F()


# --------------------------------------------------------------------------- aiokafka


class AiokafkaDriver:
    name: str = "aiokafka"
    codecs: tuple[str, ...] = ("none", "gzip", "snappy", "lz4", "zstd")
    varied_records: bool = True

    def create_topic(self, bootstrap: str, topic: str, partitions: int) -> None:
        async def go() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            await admin.start()
            try:
                await admin.create_topics(
                    [
                        AioNewTopic(
                            topic, num_partitions=partitions, replication_factor=1
                        )
                    ]
                )
            finally:
                await admin.close()

        asyncio.run(go())

    def delete_topic(self, bootstrap: str, topic: str) -> None:
        async def go() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            await admin.start()
            try:
                await admin.delete_topics([topic])
            finally:
                await admin.close()

        asyncio.run(go())

    def produce(
        self,
        bootstrap: str,
        topic: str,
        codec: str,
        records: Sequence[Rec],
        *,
        idempotent: bool = False,
    ) -> None:
        async def go() -> None:
            producer = AIOKafkaProducer(
                bootstrap_servers=bootstrap,
                compression_type=None if codec == "none" else codec,
                acks="all",
                linger_ms=5,
                enable_idempotence=idempotent,
            )
            await producer.start()
            try:
                futures = [
                    await producer.send(
                        topic,
                        key=r.key,
                        value=r.value,
                        partition=r.partition,
                        headers=list(r.headers),
                        timestamp_ms=r.timestamp,
                    )
                    for r in records
                ]
                await asyncio.wait_for(asyncio.gather(*futures), 30)
            finally:
                await producer.stop()

        asyncio.run(go())

    @staticmethod
    def _rec(m: Any) -> Rec:
        return Rec(
            partition=m.partition,
            offset=m.offset,
            key=m.key,
            value=m.value,
            headers=tuple(m.headers),
            timestamp=m.timestamp,
        )

    def read(
        self, bootstrap: str, topic: str, starts: dict[int, tuple[Start, int]]
    ) -> dict[int, list[Rec]]:
        async def go() -> dict[int, list[Rec]]:
            # "earliest": assign() starts resetting every partition at once, and a
            # reset still in flight when seek_to_beginning() runs overrides it
            # (seen against several brokers, whose answers arrive later)
            consumer = AIOKafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            await consumer.start()
            try:
                tps = {p: AioTopicPartition(topic, p) for p in starts}
                consumer.assign(list(tps.values()))
                for p, (start, _) in starts.items():
                    if start == "earliest":
                        await consumer.seek_to_beginning(tps[p])
                    else:
                        consumer.seek(tps[p], int(start))
                out: dict[int, list[Rec]] = {p: [] for p in starts}
                deadline = time.monotonic() + READ_TIMEOUT_S
                while any(len(out[p]) < n for p, (_, n) in starts.items()):
                    _deadline_check(deadline, f"aiokafka read {topic}")
                    batches = await consumer.getmany(timeout_ms=500)
                    for tp, msgs in batches.items():
                        out[tp.partition].extend(self._rec(m) for m in msgs)
                return out
            finally:
                await consumer.stop()

        return asyncio.run(go())

    def follow_latest(self, bootstrap: str, topic: str, partition: int) -> Follower:
        loop = asyncio.new_event_loop()
        tp = AioTopicPartition(topic, partition)

        async def start() -> AIOKafkaConsumer:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
            )
            await consumer.start()
            consumer.assign([tp])
            await consumer.seek_to_end(tp)
            await consumer.position(tp)  # resolves "latest" now
            return consumer

        consumer = loop.run_until_complete(start())

        class _F:
            def poll(self, timeout: float) -> list[Rec]:
                batches = loop.run_until_complete(
                    consumer.getmany(timeout_ms=int(timeout * 1000))
                )
                return [
                    AiokafkaDriver._rec(m) for msgs in batches.values() for m in msgs
                ]

            def close(self) -> None:
                try:
                    loop.run_until_complete(consumer.stop())
                finally:
                    loop.close()

        return _F()


# --------------------------------------------------------------------------- confluent


def _ck_admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def ck_create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create a topic with librdkafka's admin API (CreateTopics)."""
    admin = _ck_admin(bootstrap)  # must outlive the future
    futures = admin.create_topics(
        [CkNewTopic(topic, num_partitions=partitions, replication_factor=1)],
        operation_timeout=10,
    )
    futures[topic].result(timeout=30)


def ck_delete_topic(bootstrap: str, topic: str) -> None:
    """Delete a topic with librdkafka's admin API (DeleteTopics)."""
    admin = _ck_admin(bootstrap)  # must outlive the future
    futures = admin.delete_topics([topic], operation_timeout=10)
    futures[topic].result(timeout=30)


def ck_list_topics(bootstrap: str) -> set[str]:
    """Every topic the broker lists (Metadata for all topics: never auto-creates)."""
    return set(_ck_admin(bootstrap).list_topics(timeout=10).topics)


class ConfluentDriver:
    name: str = "confluent-kafka"
    codecs: tuple[str, ...] = ("none", "gzip", "snappy", "lz4", "zstd")
    varied_records: bool = True

    def create_topic(self, bootstrap: str, topic: str, partitions: int) -> None:
        ck_create_topic(bootstrap, topic, partitions)

    def delete_topic(self, bootstrap: str, topic: str) -> None:
        ck_delete_topic(bootstrap, topic)

    def produce(
        self,
        bootstrap: str,
        topic: str,
        codec: str,
        records: Sequence[Rec],
        *,
        idempotent: bool = False,
    ) -> None:
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "compression.type": codec,
                "acks": "all",
                "linger.ms": 5,
                "enable.idempotence": idempotent,
            }
        )
        errors: list[object] = []
        delivered = [0]

        def on_delivery(err: object, _msg: object) -> None:
            if err is not None:
                errors.append(err)
            delivered[0] += 1

        for r in records:
            while True:
                try:
                    producer.produce(
                        topic,
                        key=r.key,
                        value=r.value,
                        partition=r.partition,
                        headers=list(r.headers),
                        timestamp=r.timestamp or 0,
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
        assert producer.flush(30) == 0
        assert errors == []
        assert delivered[0] == len(records)

    @staticmethod
    def consumer(bootstrap: str) -> Consumer:
        """A manual-assignment consumer (librdkafka needs a group.id; none is joined)."""
        return Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "ailurus-matrix-unused",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 100,
            }
        )

    @staticmethod
    def _rec(m: Any) -> Rec:
        if m.error() is not None:
            raise AssertionError(f"confluent consume error: {m.error()}")
        return Rec(
            partition=m.partition(),
            offset=m.offset(),
            key=m.key(),
            value=m.value(),
            headers=tuple(m.headers() or ()),
            timestamp=m.timestamp()[1],
        )

    def read(
        self, bootstrap: str, topic: str, starts: dict[int, tuple[Start, int]]
    ) -> dict[int, list[Rec]]:
        consumer = self.consumer(bootstrap)
        try:
            consumer.assign(
                [
                    CkTopicPartition(
                        topic, p, OFFSET_BEGINNING if s == "earliest" else int(s)
                    )
                    for p, (s, _) in starts.items()
                ]
            )
            out: dict[int, list[Rec]] = {p: [] for p in starts}
            deadline = time.monotonic() + READ_TIMEOUT_S
            while any(len(out[p]) < n for p, (_, n) in starts.items()):
                _deadline_check(deadline, f"confluent read {topic}")
                left = sum(n - len(out[p]) for p, (_, n) in starts.items())
                for m in consumer.consume(min(1000, left), 0.5):
                    r = self._rec(m)
                    out[r.partition].append(r)
            return out
        finally:
            consumer.close()

    def follow_latest(self, bootstrap: str, topic: str, partition: int) -> Follower:
        consumer = self.consumer(bootstrap)
        consumer.assign([CkTopicPartition(topic, partition, OFFSET_END)])

        class _F:
            def poll(self, timeout: float) -> list[Rec]:
                return [
                    ConfluentDriver._rec(m) for m in consumer.consume(1000, timeout)
                ]

            def close(self) -> None:
                consumer.close()

        return _F()


def without_offset(r: Rec) -> Rec:
    """The record with its offset cleared, for comparing with what was sent."""
    return replace(r, offset=-1)
