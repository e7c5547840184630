"""Records cross between the CLI and real Kafka clients unchanged, both ways.

The CLI's client (built only on ``protocol/``) writes records that kafka-python and
confluent-kafka (librdkafka) read back identically, and reads back what they write:
keys, headers, null values and binary values (escaped in text, base64 in JSON).
"""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from confluent_kafka import Consumer as CKConsumer
from confluent_kafka import Producer as CKProducer
from confluent_kafka import TopicPartition as CKTopicPartition
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.cli.conftest import Target, invoke, unique

Rec = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]

BINARY = bytes(range(256)).replace(b"\n", b"")  # stdin lines cannot carry a newline


def _kafka_python_read(target: Target, topic: str, n: int) -> list[Rec]:
    consumer = KafkaConsumer(
        bootstrap_servers=target.bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=200,
    )
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        out: list[Rec] = []
        deadline = time.monotonic() + 15
        while len(out) < n and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                out.extend(
                    (r.key, r.value, [(k, v) for k, v in r.headers]) for r in records
                )
        return out
    finally:
        consumer.close()


def _confluent_read(target: Target, topic: str, n: int) -> list[Rec]:
    consumer = CKConsumer(
        {
            "bootstrap.servers": target.bootstrap,
            "group.id": unique("ck"),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.assign([CKTopicPartition(topic, 0, 0)])
        out: list[Rec] = []
        deadline = time.monotonic() + 15
        while len(out) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append((msg.key(), msg.value(), list(msg.headers() or [])))
        return out
    finally:
        consumer.close()


def test_cli_records_read_back_by_kafka_python_and_confluent(target: Target) -> None:
    """Keys, headers, empty, null and binary values from the CLI arrive unchanged."""
    topic = unique("cli-out")
    assert invoke(target, "topic", "create", topic, "-p", "1").exit_code == 0
    res = invoke(
        target,
        "topic",
        "produce",
        topic,
        "--key-value",
        "hello:world",
        "--key-value",
        "empty:",
        "-H",
        "h=1",
    )
    assert res.exit_code == 0, res.stderr
    res = invoke(
        target, "topic", "produce", topic, "--key-value", "gone:", "--tombstone"
    )
    assert res.exit_code == 0, res.stderr
    res = invoke(
        target,
        "topic",
        "produce",
        topic,
        "--key",
        "bin",
        "-z",
        "gzip",
        stdin=BINARY + b"\n",
    )
    assert res.exit_code == 0, res.stderr
    expected: list[Rec] = [
        (b"hello", b"world", [("h", b"1")]),
        (b"empty", b"", [("h", b"1")]),
        (b"gone", None, []),
        (b"bin", BINARY, []),
    ]
    assert _kafka_python_read(target, topic, 4) == expected
    assert _confluent_read(target, topic, 4) == expected


def _produce_with_kafka_python(target: Target, topic: str, recs: list[Rec]) -> None:
    producer = KafkaProducer(
        bootstrap_servers=target.bootstrap, enable_idempotence=False, acks="all"
    )
    try:
        for key, value, headers in recs:
            producer.send(topic, key=key, value=value, headers=headers, partition=0)
        producer.flush(timeout=15)
    finally:
        producer.close(timeout=5)


def _produce_with_confluent(target: Target, topic: str, recs: list[Rec]) -> None:
    producer = CKProducer(
        {
            "bootstrap.servers": target.bootstrap,
            "compression.type": "lz4",
            "linger.ms": 5,
        }
    )
    for key, value, headers in recs:
        producer.produce(topic, key=key, value=value, headers=headers, partition=0)
    assert producer.flush(15) == 0


def _decode(text: str | None, encoding: str | None) -> bytes | None:
    if text is None:
        return None
    return base64.b64decode(text) if encoding == "base64" else text.encode()


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_client_records_read_back_by_the_cli(target: Target, client: str) -> None:
    """The CLI reads what real clients wrote: exact bytes in JSON, escapes in text."""
    topic = unique("cli-in")
    assert invoke(target, "topic", "create", topic, "-p", "1").exit_code == 0
    # kafka-python refuses null header values; librdkafka sends them.
    null_header = None if client == "confluent-kafka" else b""
    recs: list[Rec] = [
        (b"k1", b"plain", [("trace", b"abc"), ("empty", null_header)]),
        (None, b"no key", []),
        (b"k3", None, []),
        (b"\xff\x00k", b"line1\nline2\t\\\xfe", [("bin", b"\x00\xff")]),
        ("ключ".encode(), "значение".encode(), []),
    ]
    if client == "kafka-python":
        _produce_with_kafka_python(target, topic, recs)
    else:
        _produce_with_confluent(target, topic, recs)

    res = invoke(target, "--format", "json", "topic", "consume", topic, "--until-end")
    assert res.exit_code == 0, res.stderr
    lines: list[dict[str, Any]] = res.json_lines()  # type: ignore[assignment]
    got = [
        (
            _decode(d["key"], d["key_encoding"]),
            _decode(d["value"], d["value_encoding"]),
            [
                (h["key"], _decode(h["value"], h["value_encoding"]))
                for h in d["headers"]
            ],
        )
        for d in lines
    ]
    assert got == recs
    assert [d["offset"] for d in lines] == [0, 1, 2, 3, 4]

    text = invoke(target, "topic", "consume", topic, "--until-end", "-f", "%k:%v|%h")
    assert text.stdout.decode().splitlines() == [
        "k1:plain|trace=abc,empty=",
        ":no key|",
        "k3:|",
        "\\xff\\x00k:line1\\nline2\\t\\\\\\xfe|bin=\\x00\\xff",
        "ключ:значение|",
    ]


def test_every_cli_compression_is_readable_by_librdkafka(target: Target) -> None:
    """Batches the CLI compresses with each codec decode in confluent-kafka."""
    topic = unique("codecs")
    assert invoke(target, "topic", "create", topic, "-p", "1").exit_code == 0
    codecs = ["none", "gzip", "snappy", "lz4", "zstd"]
    for codec in codecs:
        res = invoke(
            target, "topic", "produce", topic, "-z", codec, "--key-value", f"{codec}:v"
        )
        assert res.exit_code == 0, res.stderr
    got = _confluent_read(target, topic, len(codecs))
    assert got == [(c.encode(), b"v", []) for c in codecs]
