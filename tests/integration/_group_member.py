"""One consumer-group member in its own process, for tests/integration/test_groups.py.

``python tests/integration/_group_member.py CLIENT BOOTSTRAP TOPIC GROUP [ASSIGNOR]``
with CLIENT one of kafka-python, aiokafka, confluent. It consumes from the earliest
uncommitted offset, "processes" each record (prints it), then commits synchronously
after each batch, and prints one JSON line per event on stdout (flushed at once):

    {"event": "assigned", "partitions": [0, 3]}      # the full current assignment
    {"event": "record", "partition": 0, "offset": 5, "value": "..."}
    {"event": "committed", "offsets": {"0": 6}}       # next offsets, after the commit
    {"event": "error", "error": "..."}

SIGTERM stops it gracefully (commit, leave the group); SIGKILL is a crash.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

SESSION_MS = 3000
HEARTBEAT_MS = 300
stop = threading.Event()


def emit(**kw: Any) -> None:
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def run_kafka_python(bootstrap: str, topic: str, group: str, assignor: str) -> None:
    import kafka
    import kafka.errors
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.coordinator.assignors.sticky.sticky_assignor import (
        StickyPartitionAssignor,
    )

    assignors = {
        "range": RangePartitionAssignor,
        "roundrobin": RoundRobinPartitionAssignor,
        "sticky": StickyPartitionAssignor,
    }
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests._kafka_python import subscribe_known

    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id="kp-member",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=HEARTBEAT_MS,
        partition_assignment_strategy=[assignors[assignor]],
    )

    class Listener(kafka.ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        def on_partitions_assigned(self, assigned: Any) -> None:
            emit(event="assigned", partitions=sorted(tp.partition for tp in assigned))

    subscribe_known(consumer, [topic], listener=Listener())
    while not stop.is_set():
        batches = consumer.poll(timeout_ms=100)
        if not batches:
            continue
        offsets = {}
        for tp, msgs in batches.items():
            for m in msgs:
                emit(
                    event="record",
                    partition=tp.partition,
                    offset=m.offset,
                    value=m.value.decode(),
                )
                offsets[str(tp.partition)] = m.offset + 1
        try:
            consumer.commit()
        except (kafka.errors.CommitFailedError, kafka.errors.RebalanceInProgressError):
            # the group rebalanced under this commit (a member left): as any
            # application does, carry on; the records come again to their new owner
            emit(event="commit_failed", offsets=offsets)
            continue
        emit(event="committed", offsets=offsets)
    consumer.close()


def run_confluent(bootstrap: str, topic: str, group: str, assignor: str) -> None:
    from confluent_kafka import Consumer

    current: set[int] = set()

    def on_assign(consumer: Any, parts: Any) -> None:
        if assignor == "cooperative-sticky":
            current.update(p.partition for p in parts)
        else:
            current.clear()
            current.update(p.partition for p in parts)
        emit(event="assigned", partitions=sorted(current))

    def on_revoke(consumer: Any, parts: Any) -> None:
        if assignor == "cooperative-sticky":
            current.difference_update(p.partition for p in parts)
            emit(event="assigned", partitions=sorted(current))

    def on_error(err: Any) -> None:
        emit(event="error", error=str(err))

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": "ck-member",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": SESSION_MS,
            "heartbeat.interval.ms": HEARTBEAT_MS,
            "partition.assignment.strategy": assignor,
            "error_cb": on_error,
        }
    )
    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    while not stop.is_set():
        msgs = consumer.consume(num_messages=100, timeout=0.1)
        offsets = {}
        for m in msgs:
            if m.error():
                emit(event="error", error=str(m.error()))
                continue
            emit(
                event="record",
                partition=m.partition(),
                offset=m.offset(),
                value=m.value().decode(),
            )
            offsets[str(m.partition())] = m.offset() + 1
        if offsets:
            consumer.commit(asynchronous=False)
            emit(event="committed", offsets=offsets)
    consumer.close()


async def run_aiokafka(bootstrap: str, topic: str, group: str, assignor: str) -> None:
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from aiokafka.errors import CommitFailedError, RebalanceInProgressError

    assignors = {
        "range": RangePartitionAssignor,
        "roundrobin": RoundRobinPartitionAssignor,
    }

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        def on_partitions_assigned(self, assigned: Any) -> None:
            emit(event="assigned", partitions=sorted(tp.partition for tp in assigned))

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id="aio-member",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=HEARTBEAT_MS,
        partition_assignment_strategy=(assignors[assignor],),
    )
    consumer.subscribe([topic], listener=Listener())
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            if not batches:
                continue
            offsets = {}
            for tp, msgs in batches.items():
                for m in msgs:
                    emit(
                        event="record",
                        partition=tp.partition,
                        offset=m.offset,
                        value=m.value.decode(),
                    )
                    offsets[str(tp.partition)] = m.offset + 1
            try:
                await consumer.commit()
            except (CommitFailedError, RebalanceInProgressError):
                # rebalanced under this commit: carry on, as an application does
                emit(event="commit_failed", offsets=offsets)
                continue
            emit(event="committed", offsets=offsets)
    finally:
        await consumer.stop()


def main() -> None:
    client, bootstrap, topic, group = sys.argv[1:5]
    assignor = sys.argv[5] if len(sys.argv) > 5 else "range"
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if client == "kafka-python":
        run_kafka_python(bootstrap, topic, group, assignor)
    elif client == "confluent":
        run_confluent(bootstrap, topic, group, assignor)
    elif client == "aiokafka":
        asyncio.run(run_aiokafka(bootstrap, topic, group, assignor))
    else:
        raise SystemExit(f"unknown client {client}")
    emit(event="stopped")


if __name__ == "__main__":
    main()
