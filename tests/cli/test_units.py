"""Pure pieces of the CLI client: partitioner, escaping, templates, offset specs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_python_murmur2
from kafka.protocol.old.consumer_protocol import ConsumerProtocolMemberAssignment_v0

from broker.cli.output import escape_bytes, format_record, json_bytes
from broker.client.connection import parse_address
from broker.client.consumer import OffsetSpec, parse_offset_spec
from broker.client.errors import InvalidArgument
from broker.client.groups import decode_assignment
from broker.client.partitioner import Partitioner, murmur2, partition_for_key
from broker.client.types import ConsumedRecord


@settings(deadline=None)
@given(st.binary(max_size=64))
def test_murmur2_matches_the_java_client_port(data: bytes) -> None:
    """Our murmur2 equals kafka-python's port of Utils.murmur2 (which is unsigned)."""
    assert murmur2(data) & 0xFFFFFFFF == kafka_python_murmur2(data)


def test_murmur2_known_partition() -> None:
    """Keys land where the Java client puts them (values from Kafka's UtilsTest)."""
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert partition_for_key(b"foobar", 3) == (-790332482 & 0x7FFFFFFF) % 3


def test_null_keys_are_sticky() -> None:
    """Records without a key all go to one partition."""
    p = Partitioner()
    chosen = {p.partition("t", None, 6) for _ in range(50)}
    assert len(chosen) == 1


@settings(deadline=None)
@given(st.binary(max_size=64))
def test_escaped_bytes_are_one_printable_line(data: bytes) -> None:
    """Escaped output has no control characters and decodes back to the bytes."""
    text = escape_bytes(data)
    assert all(ch.isprintable() for ch in text)
    assert _unescape(text) == data


def _unescape(text: str) -> bytes:
    out = bytearray()
    i = 0
    simple = {"n": b"\n", "r": b"\r", "t": b"\t", "\\": b"\\"}
    while i < len(text):
        if text[i] == "\\":
            nxt = text[i + 1]
            if nxt == "x":
                out.append(int(text[i + 2 : i + 4], 16))
                i += 4
                continue
            if nxt in "uU":
                width = 4 if nxt == "u" else 8
                out += chr(int(text[i + 2 : i + 2 + width], 16)).encode()
                i += 2 + width
                continue
            out += simple[nxt]
            i += 2
            continue
        out += text[i].encode()
        i += 1
    return bytes(out)


def test_escape_examples() -> None:
    """Readable text stays as is; the rest is escaped."""
    assert escape_bytes(b"hello") == "hello"
    assert escape_bytes("héllo".encode()) == "héllo"
    assert escape_bytes(b"a\nb\\") == "a\\nb\\\\"
    assert escape_bytes(b"\xff\x00") == "\\xff\\x00"
    assert escape_bytes(None) == ""
    assert escape_bytes("\x80".encode()) == "\\u0080"
    assert json_bytes(b"\xff") == ("/w==", "base64")
    assert json_bytes(b"ok") == ("ok", "utf-8")
    assert json_bytes(None) == (None, None)


def test_format_record_placeholders() -> None:
    """Every placeholder renders; null key prints as nothing."""
    record = ConsumedRecord(
        topic="t",
        partition=2,
        offset=7,
        timestamp=0,
        key=None,
        value=b"v",
        headers=(("a", b"1"), ("b", None)),
    )
    assert (
        format_record("%t/%p@%o %k:%v %h %d %T 100%%\\n", record)
        == "t/2@7 :v a=1,b= 0 1970-01-01T00:00:00.000+00:00 100%\n"
    )


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("start", OffsetSpec(kind="start")),
        ("end", OffsetSpec(kind="end")),
        ("0", OffsetSpec(kind="absolute", value=0)),
        ("42", OffsetSpec(kind="absolute", value=42)),
        ("-3", OffsetSpec(kind="relative", value=3)),
        ("@1678886400000", OffsetSpec(kind="timestamp", value=1678886400000)),
        ("@2023-03-15T13:20:00Z", OffsetSpec(kind="timestamp", value=1678886400000)),
    ],
)
def test_offset_specs_parse(text: str, spec: OffsetSpec) -> None:
    """--offset accepts start, end, N, -N and @timestamp (ms or ISO 8601)."""
    assert parse_offset_spec(text) == spec


def test_bad_offset_spec_is_an_invalid_argument() -> None:
    """An offset spec that is none of the forms is refused with the forms listed."""
    with pytest.raises(InvalidArgument, match="start, end"):
        parse_offset_spec("soon")


def test_addresses_parse() -> None:
    """host:port, bare host (port 9092) and bracketed IPv6."""
    assert parse_address("h:1") == ("h", 1)
    assert parse_address("h") == ("h", 9092)
    assert parse_address("[::1]:9093") == ("::1", 9093)


def test_consumer_assignment_decodes() -> None:
    """A ConsumerProtocolAssignment as kafka-python encodes it decodes to topics."""
    data = ConsumerProtocolMemberAssignment_v0(
        version=0, assigned_partitions=[("a", [0, 2]), ("b", [1])], user_data=b""
    ).encode()
    assert decode_assignment(data) == (("a", (0, 2)), ("b", (1,)))
    assert decode_assignment(b"\x00") == ()
