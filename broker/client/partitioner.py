"""Partition choice for produced records, as the Java client's default partitioner.

A keyed record goes to ``toPositive(murmur2(key)) % partitions`` (Kafka's
``BuiltInPartitioner.partitionForKey`` / ``Utils.murmur2``), so the CLI, the Java client,
kafka-python and librdkafka's ``murmur2_random`` partitioner agree on where a key lives.
Records without a key are sticky (KIP-480): they all go to one partition chosen once.
"""

from __future__ import annotations

import random
from typing import Final

_M: Final = 0x5BD1E995
_SEED: Final = 0x9747B28C
_MASK: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 of ``data``, as a signed int (``Utils.murmur2``)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    n4 = length // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = length & 3
    base = n4 * 4
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition the Java client's default partitioner picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Partitioner:
    """Picks partitions: explicit, by key hash, or sticky for null keys."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()  # noqa: S311 - load spreading, not security
        self._sticky: dict[str, int] = {}

    def partition(self, topic: str, key: bytes | None, partitions: int) -> int:
        """The partition of a record of ``topic`` with ``key``."""
        if partitions <= 0:
            raise ValueError("a topic has at least one partition")
        if key is not None:
            return partition_for_key(key, partitions)
        chosen = self._sticky.get(topic)
        if chosen is None or chosen >= partitions:
            chosen = self._rng.randrange(partitions)
            self._sticky[topic] = chosen
        return chosen
