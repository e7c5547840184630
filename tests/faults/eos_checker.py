"""An exactly-once checker for consume-transform-produce histories.

An application reads input records, each carrying a unique sequence as its key, and
writes one output record per input record with the same key, inside transactions
that also commit the group's input offsets. Once it has finished, the output topic
read with ``read_committed`` must hold every input key exactly once: no key lost, no
key twice, no key that was never input. A ``read_uncommitted`` read may hold more
(records of aborted transactions: a killed application, a broker killed under a
transaction); :func:`check` counts those extras, which are allowed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, TopicPartition


@dataclass(frozen=True, slots=True)
class EosVerdict:
    """What :func:`check` found; ``ok`` when the committed output is exact."""

    lost: tuple[str, ...] = ()
    duplicated: Mapping[str, int] = field(default_factory=dict)
    unexpected: tuple[str, ...] = ()
    committed: int = 0
    uncommitted: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected)

    @property
    def aborted_extras(self) -> int:
        """Records read_uncommitted saw beyond the committed ones (aborted output)."""
        return self.uncommitted - self.committed

    def summary(self) -> str:
        return (
            f"committed={self.committed} uncommitted={self.uncommitted} "
            f"aborted_extras={self.aborted_extras} lost={len(self.lost)} "
            f"duplicated={len(self.duplicated)} unexpected={len(self.unexpected)}"
            + ("" if self.ok else f" first lost={list(self.lost[:5])}")
            + ("" if self.ok else f" first duplicated={list(self.duplicated)[:5]}")
        )


def check(
    inputs: Iterable[str], committed: Iterable[str], uncommitted: Iterable[str]
) -> EosVerdict:
    """Judge the output keys read with read_committed against the input keys.

    Every read_committed key must also be among the read_uncommitted ones (a
    committed record is a record), so a key only in ``committed`` is unexpected too.
    """
    wanted = set(inputs)
    seen = Counter(committed)
    everything = Counter(uncommitted)
    lost = tuple(sorted(wanted - seen.keys()))
    duplicated = {k: n for k, n in sorted(seen.items()) if n > 1}
    unexpected = tuple(
        sorted(k for k in seen if k not in wanted or everything[k] < seen[k])
    )
    return EosVerdict(
        lost=lost,
        duplicated=duplicated,
        unexpected=unexpected,
        committed=sum(seen.values()),
        uncommitted=sum(everything.values()),
    )


def read_keys(
    bootstrap: str,
    topic: str,
    partitions: int,
    isolation: str,
    timeout_s: float = 60.0,
) -> list[str]:
    """Every record key of ``topic`` a confluent-kafka consumer with ``isolation``
    reads up to each partition's end (the last stable offset for read_committed)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"eos-check-{isolation}",
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "fetch.max.bytes": 8 << 20,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    keys: list[str] = []
    eof: set[int] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(eof) < partitions:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: end of {sorted(eof)} only")
            for msg in consumer.consume(10000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(str(err))
                    eof.add(msg.partition())
                    continue
                key = msg.key()
                if key is None:
                    raise RuntimeError(f"{topic}: a record without key")
                keys.append(key.decode())
    finally:
        consumer.close()
    return keys
