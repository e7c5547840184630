"""A confluent-kafka consume-transform-produce application, run as its own process.

``python -m tests.faults.eos_app BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID
[BATCH]`` reads INPUT in GROUP (static membership, so that a restarted instance takes its
place at once), and for each batch it polled (up to BATCH records, default 500) writes one OUTPUT record per input
record (same key, same partition, the value tagged with this process's id) and the
group's positions in one transaction. After an abortable error it aborts and
rewinds to the committed offsets; after a fatal one (fenced by a newer instance
with the same transactional.id, or a consumer fenced by a newer instance with the
same group.instance.id) it exits 3. It runs until it is killed: the fault
test SIGKILLs it at random points and starts it again, and the new instance resumes
from the group's committed offsets. Each commit prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

TIMEOUT_S = 30.0


def _rewind(consumer: Consumer) -> None:
    """Seek every assigned partition back to the group's committed offset."""
    assignment = consumer.assignment()
    if not assignment:
        return
    for tp in consumer.committed(assignment, TIMEOUT_S):
        if tp.offset >= 0:
            consumer.seek(tp)
        else:
            tp.offset = 0  # nothing committed yet: from the beginning
            consumer.seek(tp)


def main(
    bootstrap: str, source: str, sink: str, group: str, txn_id: str, batch: str = "500"
) -> int:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.instance.id": f"{group}-0",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": 10000,
            "max.poll.interval.ms": 60000,
            "reconnect.backoff.max.ms": 1000,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": txn_id,
            "transaction.timeout.ms": 20000,
            "linger.ms": 5,
            "reconnect.backoff.max.ms": 1000,
            # librdkafka 2.16 decommissions its brokers when it re-bootstraps
            # (every broker was down: the single node was killed), and
            # send_offsets_to_transaction() then waits for ever on the group
            # coordinator it had cached (confluentinc/librdkafka#5511).
            "metadata.recovery.strategy": "none",
            # EOS_APP_DEBUG=eos,protocol,msg: librdkafka's debug contexts
            **({"debug": debug} if (debug := os.environ.get("EOS_APP_DEBUG")) else {}),
        }
    )
    consumer.subscribe([source])
    producer.init_transactions(TIMEOUT_S)
    tag = str(os.getpid()).encode()
    commits = 0
    while True:
        msgs = []
        for m in consumer.consume(int(batch), 0.2):
            err = m.error()
            if err is None:
                msgs.append(m)
            elif err.fatal():  # a newer instance took the static member's place
                print(json.dumps({"fatal": str(err)}), flush=True)
                return 3
        if not msgs:
            continue
        try:
            producer.begin_transaction()
            for m in msgs:
                producer.produce(sink, tag, key=m.key(), partition=m.partition())
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()),
                consumer.consumer_group_metadata(),
                TIMEOUT_S,
            )
            _commit(producer)
        except KafkaException as e:
            err: KafkaError = e.args[0]
            if not err.txn_requires_abort():
                print(json.dumps({"fatal": str(err)}), flush=True)
                return 3
            print(json.dumps({"abort": str(err)}), flush=True)
            try:
                _abort(producer)
            except KafkaException as fenced:  # e.g. the group fenced it first
                print(json.dumps({"fatal": str(fenced.args[0])}), flush=True)
                return 3
            _rewind(consumer)
            continue
        commits += 1
        print(json.dumps({"commit": commits, "records": len(msgs)}), flush=True)


def _commit(producer: Producer) -> None:
    """Commit the open transaction, retrying while the error says to."""
    deadline = time.monotonic() + 4 * TIMEOUT_S
    while True:
        try:
            producer.commit_transaction(TIMEOUT_S)
            return
        except KafkaException as e:
            err: KafkaError = e.args[0]
            if not err.retriable() or time.monotonic() > deadline:
                raise


def _abort(producer: Producer) -> None:
    """Abort the open transaction, retrying while the error says to."""
    deadline = time.monotonic() + 4 * TIMEOUT_S
    while True:
        try:
            producer.abort_transaction(TIMEOUT_S)
            return
        except KafkaException as e:
            err: KafkaError = e.args[0]
            if not err.retriable() or time.monotonic() > deadline:
                raise


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:7]))
