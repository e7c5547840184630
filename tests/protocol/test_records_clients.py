"""Record batches agree with real Kafka clients' codecs, builders and readers.

kafka-python 3.0 here finds only gzip (no python-snappy, lz4 or zstandard package is
installed), so it is checked with NONE and GZIP; aiokafka uses cramjam and is checked
with every codec, through both its pure-Python and its Cython implementations.
"""

from __future__ import annotations

import gzip
import json
import struct
import warnings
from pathlib import Path

import cramjam
import crc32c
import pytest
from aiokafka.record.default_records import (
    _DefaultRecordBatchBuilderCython,
    _DefaultRecordBatchBuilderPy,
    _DefaultRecordBatchCython,
    _DefaultRecordBatchPy,
)

from protocol.compression import Compression, compress, decompress
from protocol.record_builder import (
    ControlType,
    Header,
    RecordInput,
    build_batch,
    build_control_batch,
    control_type,
    iter_records,
)
from protocol.records import (
    BATCH_HEADER_SIZE,
    CRC_START,
    LOG_OVERHEAD,
    iter_batches,
    verify_batch,
)

with warnings.catch_warnings():
    # kafka-python 3.0 imports its protocol schemas with the deprecated
    # importlib.resources.read_text, and pytest turns warnings into errors.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.record.default_records import DefaultRecordBatch as KafkaPythonBatch
    from kafka.record.default_records import (
        DefaultRecordBatchBuilder as KafkaPythonBuilder,
    )

DATA = Path(__file__).parent / "batches"

SAMPLE = [
    RecordInput(key=b"k1", value=b"v1", timestamp=1_700_000_000_000),
    RecordInput(key=None, value=None, timestamp=1_700_000_000_005),
    RecordInput(
        key=b"k3",
        value=b"x" * 70_000,  # spans several snappy / lz4 blocks
        headers=(Header(key="h1", value=b"hv"), Header(key="n\u00e9", value=None)),
        timestamp=1_699_999_999_000,
    ),
    RecordInput(key=b"", value=b"", timestamp=1_700_000_000_010),
]
KAFKA_PYTHON_CODECS = [Compression.NONE, Compression.GZIP]
ALL_CODECS = list(Compression)
AIOKAFKA_BUILDERS = [_DefaultRecordBatchBuilderPy, _DefaultRecordBatchBuilderCython]
AIOKAFKA_READERS = [_DefaultRecordBatchPy, _DefaultRecordBatchCython]


def _as_tuples(records: list[RecordInput]) -> list[tuple[object, ...]]:
    return [
        (i, r.timestamp, r.key, r.value, [(h.key, h.value) for h in r.headers])
        for i, r in enumerate(records)
    ]


def _ours(batch: bytes | bytearray) -> list[tuple[object, ...]]:
    return [
        (
            r.offset,
            r.timestamp,
            r.key,
            r.value,
            [(h.key, h.value) for h in r.headers],
        )
        for r in iter_records(batch)
    ]


def _theirs(reader: object) -> list[tuple[object, ...]]:
    return [
        (
            r.offset,
            r.timestamp,
            None if r.key is None else bytes(r.key),
            None if r.value is None else bytes(r.value),
            [(k, None if v is None else bytes(v)) for k, v in r.headers],
        )
        for r in reader  # type: ignore[attr-defined]
    ]


def _append_all(builder: object, records: list[RecordInput]) -> bytes:
    for i, r in enumerate(records):
        meta = builder.append(  # type: ignore[attr-defined]
            i, r.timestamp, r.key, r.value, [(h.key, h.value) for h in r.headers]
        )
        assert meta is not None
    return bytes(builder.build())  # type: ignore[attr-defined]


@pytest.mark.parametrize("codec", KAFKA_PYTHON_CODECS, ids=lambda c: c.name)
def test_reads_kafka_python_batches(codec: Compression) -> None:
    """Batches from kafka-python's DefaultRecordBatchBuilder verify and decode."""
    builder = KafkaPythonBuilder(
        magic=2,
        compression_type=int(codec),
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    batch = _append_all(builder, SAMPLE)
    header = verify_batch(batch)
    assert header.compression is codec
    assert header.record_count == len(SAMPLE)
    assert _ours(batch) == _as_tuples(SAMPLE)


@pytest.mark.parametrize("codec", KAFKA_PYTHON_CODECS, ids=lambda c: c.name)
def test_kafka_python_reads_our_batches(codec: Compression) -> None:
    """kafka-python's DefaultRecordBatch validates and decodes our batches."""
    batch = build_batch(SAMPLE, compression=codec)
    reader = KafkaPythonBatch(batch)
    assert reader.validate_crc()
    assert reader.compression_type == codec
    assert _theirs(reader) == _as_tuples(SAMPLE)


@pytest.mark.parametrize("builder_cls", AIOKAFKA_BUILDERS, ids=["py", "cython"])
@pytest.mark.parametrize("codec", ALL_CODECS, ids=lambda c: c.name)
def test_reads_aiokafka_batches(codec: Compression, builder_cls: type) -> None:
    """Batches from aiokafka's builders verify and decode, for every codec."""
    builder = builder_cls(
        magic=2,
        compression_type=int(codec),
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    batch = _append_all(builder, SAMPLE)
    assert verify_batch(batch).compression is codec
    assert _ours(batch) == _as_tuples(SAMPLE)


@pytest.mark.parametrize("reader_cls", AIOKAFKA_READERS, ids=["py", "cython"])
@pytest.mark.parametrize("codec", ALL_CODECS, ids=lambda c: c.name)
def test_aiokafka_reads_our_batches(codec: Compression, reader_cls: type) -> None:
    """aiokafka's readers validate and decode our batches, for every codec."""
    batch = build_batch(SAMPLE, compression=codec, base_offset=0)
    reader = reader_cls(batch)
    assert reader.validate_crc()
    assert reader.compression_type == codec
    assert _theirs(reader) == _as_tuples(SAMPLE)


def _body() -> bytes:
    """The uncompressed records section of SAMPLE."""
    return build_batch(SAMPLE)[BATCH_HEADER_SIZE:]


def _rebatch(codec: Compression, payload: bytes) -> bytes:
    """SAMPLE's batch header around a records section compressed elsewhere."""
    head = bytearray(build_batch(SAMPLE)[:BATCH_HEADER_SIZE])
    struct.pack_into(">i", head, 8, BATCH_HEADER_SIZE - LOG_OVERHEAD + len(payload))
    struct.pack_into(">h", head, 21, int(codec))
    out = head + payload
    struct.pack_into(">I", out, 17, crc32c.crc32c(bytes(out[CRC_START:])))
    return bytes(out)


def _xerial(data: bytes, block: int) -> bytes:
    parts = [b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)]
    for i in range(0, len(data), block):
        chunk = bytes(cramjam.snappy.compress_raw(data[i : i + block]))
        parts.append(struct.pack(">i", len(chunk)) + chunk)
    return b"".join(parts)


def _zstd_streamed(data: bytes) -> bytes:
    compressor = cramjam.zstd.Compressor()
    compressor.compress(data)
    return bytes(compressor.finish())


def _lz4_with_content_size(data: bytes) -> bytes:
    """An LZ4 frame with the optional content-size field, header checksum fixed up."""
    from protocol.legacy import xxh32

    frame = bytearray(cramjam.lz4.compress(data))
    frame[4] |= 0x08
    frame[6:6] = struct.pack("<q", len(data))
    frame[14] = (xxh32(bytes(frame[4:14])) >> 8) & 0xFF
    return bytes(frame)


def _payloads() -> list[tuple[str, Compression, bytes]]:
    body = _body()
    return [
        ("gzip-python", Compression.GZIP, gzip.compress(body)),
        (
            "gzip-two-members",
            Compression.GZIP,
            gzip.compress(body[:100]) + gzip.compress(body[100:]),
        ),
        ("snappy-raw", Compression.SNAPPY, bytes(cramjam.snappy.compress_raw(body))),
        ("snappy-xerial-32k", Compression.SNAPPY, _xerial(body, 32 * 1024)),
        ("snappy-xerial-1k", Compression.SNAPPY, _xerial(body, 1024)),
        ("snappy-framed", Compression.SNAPPY, bytes(cramjam.snappy.compress(body))),
        ("lz4-frame-linked", Compression.LZ4, bytes(cramjam.lz4.compress(body))),
        ("lz4-content-size", Compression.LZ4, _lz4_with_content_size(body)),
        ("zstd-one-shot", Compression.ZSTD, bytes(cramjam.zstd.compress(body))),
        ("zstd-streamed-no-size", Compression.ZSTD, _zstd_streamed(body)),
        (
            "zstd-two-frames",
            Compression.ZSTD,
            bytes(cramjam.zstd.compress(body[:50])) + _zstd_streamed(body[50:]),
        ),
    ]


@pytest.mark.parametrize(
    ("codec", "payload"),
    [(codec, payload) for _, codec, payload in _payloads()],
    ids=[name for name, _, _ in _payloads()],
)
def test_reads_payloads_compressed_by_reference_libraries(
    codec: Compression, payload: bytes
) -> None:
    """Records sections compressed by gzip / cramjam in each framing decode."""
    batch = _rebatch(codec, payload)
    assert decompress(codec, payload) == _body()
    assert _ours(batch) == _as_tuples(SAMPLE)


def test_zstd_streamed_frames_have_no_content_size() -> None:
    """The streamed zstd fixture really lacks the frame content size field."""
    frame = _zstd_streamed(b"abc")
    assert frame[4] & 0xC0 == 0  # Frame_Content_Size_flag 0 and not single segment


def test_snappy_is_written_in_xerial_framing_with_32k_blocks() -> None:
    """Our snappy output is the xerial stream the Java client writes."""
    body = _body()
    assert compress(Compression.SNAPPY, body) == _xerial(body, 32 * 1024)


def test_lz4_is_written_with_independent_blocks() -> None:
    """Our LZ4 frames set the block-independence flag Java's reader requires."""
    frame = compress(Compression.LZ4, _body())
    assert frame[:4] == b"\x04\x22\x4d\x18"
    flg = frame[4]
    assert flg >> 6 == 1  # version
    assert flg & 0x20  # block independence
    assert not flg & 0x04  # no content checksum
    assert decompress(Compression.LZ4, frame) == _body()


@pytest.mark.parametrize("codec", ALL_CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_codecs_accept_any_buffer(codec: Compression, kind: type) -> None:
    """compress and decompress take bytes, bytearray and memoryview."""
    data = b"hello kafka " * 100
    packed = compress(codec, kind(data))
    assert decompress(codec, kind(packed)) == data


def _fixture_files() -> list[Path]:
    return sorted(DATA.glob("*.bin"))


@pytest.mark.parametrize("path", _fixture_files(), ids=lambda p: p.name)
def test_captured_batches_decode_to_their_expected_records(path: Path) -> None:
    """Each tests/protocol/batches/NAME.bin decodes to the records in NAME.json.

    A .bin file holds one or more concatenated v2 batches as a client sent them;
    the .json file lists ``{"key", "value", "headers"}`` per record, with bytes as
    latin-1 strings and null as null, in log order; a long value may be written
    ``{"repeat": TEXT, "times": N}``.
    """
    data = path.read_bytes()
    expected = json.loads(path.with_name(path.stem + ".json").read_text())
    for record in expected:
        if isinstance(record["value"], dict):
            record["value"] = record["value"]["repeat"] * record["value"]["times"]
    got = []
    end = 0
    for pos, header in iter_batches(data):
        verify_batch(data, pos)
        got.extend(iter_records(data, pos))
        end = pos + header.size
    assert end == len(data)
    as_json = [
        {
            "key": None if r.key is None else r.key.decode("latin-1"),
            "value": None if r.value is None else r.value.decode("latin-1"),
            "headers": [
                [h.key, None if h.value is None else h.value.decode("latin-1")]
                for h in r.headers
            ],
        }
        for r in got
    ]
    assert as_json == expected


def test_fixture_directory_is_not_empty() -> None:
    """The captured-batch fixtures exist, so the test above really runs."""
    assert _fixture_files()


def test_librdkafka_writes_raw_snappy_independent_lz4_and_sizeless_zstd() -> None:
    """The captured librdkafka batches use the framings our decoder must accept."""
    sections = {}
    for codec in ("snappy", "lz4", "zstd"):
        data = (DATA / f"librdkafka-2.16.0-{codec}.bin").read_bytes()
        sections[codec] = data[BATCH_HEADER_SIZE : verify_batch(data).size]
    assert not sections["snappy"].startswith(b"\x82SNAPPY\x00")  # raw, not xerial
    assert sections["lz4"][:4] == b"\x04\x22\x4d\x18"
    assert sections["lz4"][4] & 0x20  # independent blocks
    assert sections["zstd"][:4] == b"\x28\xb5\x2f\xfd"
    assert sections["zstd"][4] & 0xC0 == 0  # no frame content size


@pytest.mark.parametrize("kind", list(ControlType), ids=lambda k: k.name)
def test_control_batches_read_as_markers_by_kafka_python(kind: ControlType) -> None:
    """Our transaction markers are control batches kafka-python reads as such."""
    batch = build_control_batch(
        kind, producer_id=9, producer_epoch=1, coordinator_epoch=3, base_offset=12
    )
    header = verify_batch(batch)
    assert header.is_control
    assert header.is_transactional
    (record,) = iter_records(batch)
    assert control_type(record) is kind
    assert record.offset == 12
    reader = KafkaPythonBatch(batch)
    assert reader.is_control_batch
    assert reader.producer_id == 9
    (theirs,) = list(reader)
    assert theirs.commit is (kind is ControlType.COMMIT)
    assert theirs.abort is (kind is ControlType.ABORT)
