"""Mixed client load for fault tests: idempotent producers and a committing group consumer.

Every producer sends unique values (``<name>-<n>``) with acks=all and idempotence on,
and records what the broker acknowledged (value -> partition, offset) and what
failed for good. The consumer runs in a group, commits explicitly after each poll
and records each commit that the broker accepted. The fault tests then check the
broker against these records: every acknowledged value present exactly once at its
acknowledged offset, no value twice, no accepted commit lost.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from protocol.record_builder import Record
from tests._kafka_python import group_consumer

CLIENT_TIMEOUTS = {
    "request_timeout_ms": 3000,
    "retry_backoff_ms": 50,
    "reconnect_backoff_ms": 20,
    "reconnect_backoff_max_ms": 200,
}


@dataclass
class Ledger:
    """What the clients were told: acknowledgements, failures, commits."""

    acked: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    failed: dict[bytes, str] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)
    consumed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot_commits(self) -> dict[int, int]:
        with self.lock:
            return dict(self.committed)

    def check_log(self, partition_records: dict[int, list[Record]]) -> int:
        """Assert no acknowledged value lost or moved and no value duplicated."""
        seen: dict[bytes, tuple[int, int]] = {}
        for partition, records in partition_records.items():
            offsets = [r.offset for r in records]
            assert offsets == sorted(set(offsets)), f"offsets not dense in {partition}"
            for r in records:
                assert r.value is not None
                assert r.value not in seen, (
                    f"duplicate {r.value!r} at {partition}/{r.offset} and {seen[r.value]}"
                )
                seen[r.value] = (partition, r.offset)
        with self.lock:
            acked = dict(self.acked)
        lost = {v: where for v, where in acked.items() if seen.get(v) != where}
        assert not lost, (
            f"{len(lost)} acknowledged records lost or moved: {list(lost.items())[:5]}"
        )
        return len(acked)


class Load:
    """Producer threads plus one consumer thread against ``bootstrap``."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        *,
        producers: int = 2,
        interval_s: float = 0.003,
        group: str = "reliability",
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.interval_s = interval_s
        self.group = group
        self.ledger = Ledger()
        self.running = threading.Event()
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.producers = [
            KafkaProducer(
                bootstrap_servers=bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=2,
                delivery_timeout_ms=60_000,
                max_block_ms=60_000,
                **CLIENT_TIMEOUTS,
            )
            for _ in range(producers)
        ]
        self.threads = [
            threading.Thread(target=self._produce, args=(i, p), daemon=True)
            for i, p in enumerate(self.producers)
        ]
        self.threads.append(threading.Thread(target=self._consume, daemon=True))
        self.sent = 0

    def start(self) -> None:
        self.running.set()
        for t in self.threads:
            t.start()

    def pause_and_flush(self, timeout: float = 60) -> None:
        """Stop sending new records and wait until every send is answered."""
        self.running.clear()
        time.sleep(0.02)
        for p in self.producers:
            p.flush(timeout=timeout)

    def close(self) -> None:
        self.running.clear()
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        for p in self.producers:
            p.close(timeout=10)
        assert not self.errors, self.errors

    def _produce(self, index: int, producer: KafkaProducer) -> None:
        n = 0
        ledger = self.ledger
        try:
            while not self.stop.is_set():
                if not self.running.wait(0.05):
                    continue
                value = f"p{index}-{n}".encode()
                partition = n % self.partitions
                n += 1

                def ok(md: object, value: bytes = value) -> None:
                    with ledger.lock:
                        ledger.acked[value] = (md.partition, md.offset)  # type: ignore[attr-defined]

                def bad(exc: BaseException, value: bytes = value) -> None:
                    with ledger.lock:
                        ledger.failed[value] = repr(exc)

                fut = producer.send(self.topic, value=value, partition=partition)
                fut.add_callback(ok)
                fut.add_errback(bad)
                self.sent += 1
                time.sleep(self.interval_s)
        except Exception as e:  # reported by close()  # noqa: BLE001
            self.errors.append(e)

    def _consume(self) -> None:
        consumer = group_consumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            **CLIENT_TIMEOUTS,
        )
        ledger = self.ledger
        try:
            while not self.stop.is_set():
                try:
                    batches = consumer.poll(timeout_ms=100)
                except KafkaError:
                    time.sleep(0.05)
                    continue
                last: dict[int, int] = defaultdict(lambda: -1)
                for tp, recs in batches.items():
                    ledger.consumed += len(recs)
                    last[tp.partition] = max(last[tp.partition], recs[-1].offset)
                if not last:
                    continue
                offsets = {
                    TopicPartition(self.topic, p): OffsetAndMetadata(o + 1, "", -1)
                    for p, o in last.items()
                }
                try:
                    consumer.commit(offsets)
                except KafkaError:
                    continue  # not accepted: nothing to remember
                with ledger.lock:
                    for p, o in last.items():
                        ledger.committed[p] = max(ledger.committed.get(p, 0), o + 1)
        except Exception as e:  # reported by close()  # noqa: BLE001
            self.errors.append(e)
        finally:
            with contextlib.suppress(KafkaError):
                consumer.close(autocommit=False)
