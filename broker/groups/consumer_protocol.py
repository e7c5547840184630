"""Decoding the ``consumer`` protocol's opaque group bytes (Kafka's ``ConsumerProtocol``).

The broker never needs these to run a group; the admin views show assignments and
OffsetDelete needs to know which topics the members subscribe to. Only the leading
fields are read; later versions' additions (owned partitions, rack, generation)
follow them and are ignored.
"""

from __future__ import annotations

import struct

_I16: struct.Struct = struct.Struct(">h")
_I32: struct.Struct = struct.Struct(">i")


def _string(data: bytes, pos: int) -> tuple[str, int]:
    (n,) = _I16.unpack_from(data, pos)
    pos += 2
    if n < 0 or pos + n > len(data):
        raise ValueError("bad string length")
    return data[pos : pos + n].decode(), pos + n


def decode_consumer_assignment(data: bytes) -> dict[str, list[int]] | None:
    """Topic → partitions of a ``consumer`` protocol assignment (None if not one).

    Layout (ConsumerProtocolAssignment): version int16, then an array (int32 count)
    of (topic string16, partitions int32 array), then user data; nothing else needed.
    """
    try:
        pos = 2
        (count,) = _I32.unpack_from(data, pos)
        pos += 4
        out: dict[str, list[int]] = {}
        for _ in range(max(count, 0)):
            topic, pos = _string(data, pos)
            (k,) = _I32.unpack_from(data, pos)
            pos += 4
            parts = list(struct.unpack_from(f">{k}i", data, pos))
            pos += 4 * k
            out[topic] = parts
    except (struct.error, UnicodeDecodeError, ValueError):
        return None
    return out


def decode_consumer_subscription(data: bytes) -> set[str] | None:
    """The topics of a ``consumer`` protocol subscription (None if not one).

    Layout (ConsumerProtocolSubscription): version int16, then an array (int32
    count) of topic string16, then user data and, from v1, owned partitions.
    """
    try:
        (count,) = _I32.unpack_from(data, 2)
        if count < 0 or count > len(data):
            return None
        pos = 6
        topics = set()
        for _ in range(count):
            topic, pos = _string(data, pos)
            topics.add(topic)
    except (struct.error, UnicodeDecodeError, ValueError):
        return None
    return topics
