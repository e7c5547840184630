"""Capture record batches as librdkafka writes them, into tests/protocol/batches/.

Run by hand (``.venv/bin/python tests/protocol/batches/capture_librdkafka.py``) to
regenerate the fixtures; the test suite only reads the files. No Kafka broker is
needed: confluent-kafka's producer runs against librdkafka's built-in mock cluster
(``test.mock.num.brokers``), which stores produced batches as they were sent, and a
raw Fetch v4 request over a socket reads them back byte for byte.

For each codec it writes ``librdkafka-<version>-<codec>.bin`` (the fetched batches,
concatenated) and ``.json`` (the records produced, in the format the test expects).
"""

from __future__ import annotations

import json
import socket
import struct
import sys
from pathlib import Path

import confluent_kafka

HERE = Path(__file__).parent
TOPIC = "capture"
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
BIG = b"librdkafka-" * 6500


def _records() -> list[
    tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]
]:
    return [
        (b"key-0", b"value-0", []),
        (None, b"no key", [("h1", b"v1"), ("h2", None)]),
        (b"tombstone", None, []),
        (b"big", BIG, [("n\u00e9", b"\xff\x00")]),  # > 64 KiB: several blocks
        (b"", b"", []),
    ]


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def _fetch_all(address: str, partition: int) -> bytes:
    """Fetch from offset 0 until the log is exhausted; return the batches as sent."""
    data = b""
    offset = 0
    while chunk := _fetch(address, partition, offset):
        batches = _complete(chunk)
        data += batches
        offset = _next_offset(batches)
    return data


def _complete(chunk: bytes) -> bytes:
    pos = 0
    while len(chunk) - pos >= 12:
        size = struct.unpack_from(">i", chunk, pos + 8)[0] + 12
        if pos + size > len(chunk):
            break
        pos += size
    return chunk[:pos]


def _next_offset(batches: bytes) -> int:
    pos = 0
    last = 0
    while pos < len(batches):
        base, length = struct.unpack_from(">qi", batches, pos)
        (delta,) = struct.unpack_from(">i", batches, pos + 23)
        last = base + delta + 1
        pos += length + 12
    return last


def _fetch(address: str, partition: int, offset: int) -> bytes:
    """Send one Fetch v4 request and return the partition's records bytes."""
    host, port = address.rsplit(":", 1)
    body = (
        struct.pack(">hhi", 1, 4, 1)  # api_key Fetch, version 4, correlation_id
        + _string("capture")
        + struct.pack(">iiiib", -1, 100, 1, 1 << 24, 0)  # replica, wait, min, max, iso
        + struct.pack(">i", 1)
        + _string(TOPIC)
        + struct.pack(">i", 1)
        + struct.pack(">iqi", partition, offset, 1 << 24)
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv(sock, 4))[0]
        response = _recv(sock, size)
    pos = 8  # correlation_id, throttle_time_ms
    (topics,) = struct.unpack_from(">i", response, pos)
    assert topics == 1
    pos += 4
    (name_len,) = struct.unpack_from(">h", response, pos)
    pos += 2 + name_len + 4  # name, partition count (1)
    _, error, _, _ = struct.unpack_from(">ihqq", response, pos)
    assert error == 0, error
    pos += 22
    (aborted,) = struct.unpack_from(">i", response, pos)
    pos += 4 + max(aborted, 0) * 16
    (length,) = struct.unpack_from(">i", response, pos)
    return response[pos + 4 : pos + 4 + length]


def _recv(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise ConnectionError("mock broker closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _json_value(value: bytes | None) -> object:
    if value == BIG:
        return {"repeat": "librdkafka-", "times": 6500}
    return None if value is None else value.decode("latin-1")


def capture(codec: str) -> None:
    producer = confluent_kafka.Producer(
        {
            "test.mock.num.brokers": 1,
            "compression.codec": codec,
            "linger.ms": 20,
            "log_level": 3,
        }
    )
    records = _records()
    for round_ in range(2):  # two flushes: two batches, the second at a later offset
        for key, value, headers in records:
            producer.produce(TOPIC, value=value, key=key, headers=headers, partition=0)
        assert producer.flush(10) == 0, f"round {round_} not delivered"
    address = next(iter(producer.list_topics(timeout=10).brokers.values()))
    data = _fetch_all(f"{address.host}:{address.port}", 0)
    version = confluent_kafka.libversion()[0]
    stem = f"librdkafka-{version}-{codec}"
    (HERE / f"{stem}.bin").write_bytes(data)
    expected = [
        {
            "key": None if k is None else k.decode("latin-1"),
            "value": _json_value(v),
            "headers": [
                [hk, None if hv is None else hv.decode("latin-1")] for hk, hv in h
            ],
        }
        for _ in range(2)
        for k, v, h in records
    ]
    (HERE / f"{stem}.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(stem, len(data), "bytes")


if __name__ == "__main__":
    for name in sys.argv[1:] or CODECS:
        capture(name)
