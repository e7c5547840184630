"""Legacy message sets (magic 0 and 1) from kafka-python and aiokafka builders."""

from __future__ import annotations

import struct
import warnings
import zlib

import cramjam
import pytest
from aiokafka.record.legacy_records import (
    _LegacyRecordBatchBuilderCython,
    _LegacyRecordBatchBuilderPy,
)

from protocol.compression import Compression
from protocol.legacy import (
    LegacyMessage,
    convert_legacy,
    detect_magic,
    iter_legacy_messages,
    xxh32,
)
from protocol.record_builder import iter_records
from protocol.records import CorruptBatch, TimestampType, verify_batch

with warnings.catch_warnings():
    # kafka-python 3.0 imports its schemas with deprecated importlib APIs.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.record.legacy_records import (
        LegacyRecordBatchBuilder as KafkaPythonLegacyBuilder,
    )

MESSAGES = [
    (b"k0", b"v0", 1_700_000_000_000),
    (None, b"no key", 1_700_000_000_001),
    (b"tomb", None, 1_700_000_000_002),
    (b"big", b"legacy " * 10_000, 1_700_000_000_003),
]


def _build(builder: object) -> bytes:
    for offset, (key, value, ts) in enumerate(MESSAGES):
        assert builder.append(offset, ts, key, value) is not None  # type: ignore[attr-defined]
    return bytes(builder.build())  # type: ignore[attr-defined]


def _expected(magic: int, first_offset: int = 0) -> list[LegacyMessage]:
    return [
        LegacyMessage(
            offset=first_offset + i,
            magic=magic,
            timestamp=ts if magic == 1 else -1,
            timestamp_type=TimestampType.CREATE_TIME,
            key=key,
            value=value,
        )
        for i, (key, value, ts) in enumerate(MESSAGES)
    ]


def _check(data: bytes, magic: int, codec: Compression) -> None:
    assert detect_magic(data) == magic
    if codec == Compression.NONE or magic == 0:
        assert list(iter_legacy_messages(data)) == _expected(magic)
        return
    # A magic-1 wrapper carries the absolute offset of its last inner message;
    # producers leave it 0 and the broker assigns it, so set it as a log would.
    patched = struct.pack(">q", 100) + data[8:]
    assert list(iter_legacy_messages(patched)) == _expected(magic, 100 - 3)


@pytest.mark.parametrize("magic", [0, 1])
@pytest.mark.parametrize("codec", [Compression.NONE, Compression.GZIP], ids=str)
def test_reads_kafka_python_message_sets(magic: int, codec: Compression) -> None:
    """kafka-python's LegacyRecordBatchBuilder output parses, plain and gzipped."""
    data = _build(KafkaPythonLegacyBuilder(magic, int(codec), 1 << 20))
    _check(data, magic, codec)


AIOKAFKA_CASES = [
    (magic, codec)
    for magic in (0, 1)
    for codec in (Compression.NONE, Compression.GZIP, Compression.SNAPPY)
] + [(1, Compression.LZ4)]  # aiokafka refuses LZ4 for magic 0


@pytest.mark.parametrize(
    "builder_cls",
    [_LegacyRecordBatchBuilderPy, _LegacyRecordBatchBuilderCython],
    ids=["py", "cython"],
)
@pytest.mark.parametrize(("magic", "codec"), AIOKAFKA_CASES, ids=str)
def test_reads_aiokafka_message_sets(
    builder_cls: type, magic: int, codec: Compression
) -> None:
    """aiokafka's legacy builders' output parses with every codec they write."""
    data = _build(builder_cls(magic, int(codec), 1 << 20))
    _check(data, magic, codec)


def _message(offset: int, magic: int, attributes: int, value: bytes) -> bytes:
    body = struct.pack(">bb", magic, attributes)
    if magic == 1:
        body += struct.pack(">q", 0)
    body += struct.pack(">i", -1) + struct.pack(">i", len(value)) + value
    crc = zlib.crc32(body)
    return struct.pack(">qiI", offset, len(body) + 4, crc) + body


def test_reads_magic0_lz4_with_the_pre_kip57_header_checksum() -> None:
    """Magic-0 LZ4 wrappers whose header checksum also hashed the magic decode."""
    inner = _build(KafkaPythonLegacyBuilder(0, 0, 1 << 20))
    frame = bytearray(cramjam.lz4.compress(inner))
    frame[6] = (xxh32(bytes(frame[0:6])) >> 8) & 0xFF  # the old, wrong checksum
    wrapper = _message(3, 0, int(Compression.LZ4), bytes(frame))
    assert list(iter_legacy_messages(wrapper)) == _expected(0)


def test_xxh32_matches_the_lz4_frame_header_checksum() -> None:
    """xxh32 reproduces the descriptor checksums lz4 writes (2 and 10 bytes)."""
    frame = bytes(cramjam.lz4.compress(b"abc"))
    assert (xxh32(frame[4:6]) >> 8) & 0xFF == frame[6]
    assert xxh32(b"") == 0x02CC5D05
    assert xxh32(b"abc") == 0x32D153FF


def test_crc_mismatch_is_corrupt() -> None:
    """A flipped value byte fails the message CRC."""
    data = bytearray(_build(KafkaPythonLegacyBuilder(1, 0, 1 << 20)))
    data[36] ^= 0xFF  # first message's value (offset 36)
    with pytest.raises(CorruptBatch):
        list(iter_legacy_messages(data))


def test_partial_trailing_message_is_ignored() -> None:
    """A message cut short at the end of the set ends iteration without error."""
    data = _build(KafkaPythonLegacyBuilder(1, 0, 1 << 20))
    assert list(iter_legacy_messages(data[:-5])) == _expected(1)[:-1]


def test_bad_magic_and_short_sizes_are_corrupt() -> None:
    """Magic 2 inside a legacy set, or an impossible size, raise CorruptBatch."""
    data = bytearray(_build(KafkaPythonLegacyBuilder(1, 0, 1 << 20)))
    bad_magic = bytearray(data)
    bad_magic[16] = 2
    with pytest.raises(CorruptBatch):
        list(iter_legacy_messages(bad_magic))
    bad_size = bytearray(data)
    struct.pack_into(">i", bad_size, 8, 3)
    with pytest.raises(CorruptBatch):
        list(iter_legacy_messages(bad_size))


def test_detect_magic_needs_17_bytes() -> None:
    """detect_magic reads byte 16 and rejects shorter buffers."""
    with pytest.raises(CorruptBatch):
        detect_magic(b"\x00" * 16)


@pytest.mark.parametrize("magic", [0, 1])
def test_convert_legacy_makes_an_equivalent_v2_batch(magic: int) -> None:
    """A gzipped legacy set converts into one verifiable v2 batch, records intact."""
    data = _build(KafkaPythonLegacyBuilder(magic, int(Compression.GZIP), 1 << 20))
    batch = convert_legacy(data, base_offset=40, compression=Compression.ZSTD)
    header = verify_batch(batch)
    assert header.base_offset == 40
    assert header.compression is Compression.ZSTD
    records = list(iter_records(batch))
    assert [(r.offset, r.key, r.value) for r in records] == [
        (40 + i, key, value) for i, (key, value, _) in enumerate(MESSAGES)
    ]
    assert [r.timestamp for r in records] == [
        ts if magic == 1 else -1 for _, _, ts in MESSAGES
    ]


def test_convert_legacy_rejects_an_empty_set() -> None:
    """Nothing to convert raises CorruptBatch."""
    with pytest.raises(CorruptBatch):
        convert_legacy(b"")
