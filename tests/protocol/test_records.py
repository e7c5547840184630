"""v2 record batches: header, CRC, patching, batch walking and record round trips."""

from __future__ import annotations

import struct

import crc32c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import ProtocolError
from protocol.record_builder import (
    Header,
    RecordInput,
    build_batch,
    control_type,
    iter_records,
)
from protocol.records import (
    BATCH_HEADER_SIZE,
    CRC_START,
    LOG_OVERHEAD,
    BatchHeader,
    Compression,
    CorruptBatch,
    RecordBatchError,
    TimestampType,
    crc_of,
    iter_batches,
    patch_base_offset,
    patch_leader_epoch,
    read_header,
    split_complete,
    verify_batch,
    with_base_offset,
)

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

headers_st = st.lists(
    st.builds(
        Header,
        key=st.text(max_size=8),
        value=st.none() | st.binary(max_size=16),
    ),
    max_size=3,
).map(tuple)

record_st = st.builds(
    RecordInput,
    key=st.none() | st.binary(max_size=24),
    value=st.none() | st.binary(max_size=200),
    headers=headers_st,
    timestamp=st.integers(min_value=0, max_value=2**42),
)
records_st = st.lists(record_st, min_size=1, max_size=12)
codec_st = st.sampled_from(list(Compression))


def _expected(records: list[RecordInput], base_offset: int) -> list[tuple[object, ...]]:
    return [
        (base_offset + i, r.timestamp, r.key, r.value, r.headers)
        for i, r in enumerate(records)
    ]


def _actual(batch: bytes | bytearray, pos: int = 0) -> list[tuple[object, ...]]:
    return [
        (r.offset, r.timestamp, r.key, r.value, r.headers)
        for r in iter_records(batch, pos)
    ]


def _simple(
    n: int = 3, *, base_offset: int = 0, codec: Compression = Compression.NONE
) -> bytes:
    return build_batch(
        [
            RecordInput(key=b"k%d" % i, value=b"v" * i, timestamp=1000 + i)
            for i in range(n)
        ],
        base_offset=base_offset,
        compression=codec,
    )


def test_header_constants_match_the_v2_layout() -> None:
    """The header is 61 bytes and LOG_OVERHEAD is base_offset plus batch_length."""
    assert BATCH_HEADER_SIZE == 61
    assert LOG_OVERHEAD == 12
    assert struct.calcsize(">qiibIhiqqqhii") == BATCH_HEADER_SIZE


def test_read_header_reports_every_field_and_property() -> None:
    """read_header decodes each field and derives the convenience properties."""
    batch = build_batch(
        [RecordInput(value=b"a", timestamp=10), RecordInput(value=b"b", timestamp=30)],
        base_offset=100,
        compression=Compression.ZSTD,
        producer_id=7,
        producer_epoch=2,
        base_sequence=5,
        partition_leader_epoch=4,
        is_transactional=True,
        timestamp_type=TimestampType.LOG_APPEND_TIME,
    )
    header = read_header(batch)
    assert header.base_offset == 100
    assert header.batch_length == len(batch) - LOG_OVERHEAD
    assert header.size == len(batch)
    assert header.partition_leader_epoch == 4
    assert header.magic == 2
    assert header.last_offset_delta == 1
    assert header.last_offset == 101
    assert header.next_offset == 102
    assert header.base_timestamp == 10
    assert header.max_timestamp == 30
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (
        7,
        2,
        5,
    )
    assert header.record_count == 2
    assert header.compression is Compression.ZSTD
    assert header.timestamp_type is TimestampType.LOG_APPEND_TIME
    assert header.is_transactional
    assert header.is_idempotent
    assert not header.is_control
    assert not header.has_delete_horizon
    assert header.crc == crc32c.crc32c(batch[CRC_START:])


def test_read_header_accepts_bytes_bytearray_memoryview_at_offset() -> None:
    """read_header reads any buffer type at any position."""
    batch = _simple(base_offset=9)
    buf = b"xyz" + batch
    expected = read_header(batch)
    assert read_header(buf, 3) == expected
    assert read_header(bytearray(buf), 3) == expected
    assert read_header(memoryview(buf), 3) == expected


def test_read_header_rejects_short_buffers() -> None:
    """Fewer than 61 bytes raise CorruptBatch, a ProtocolError."""
    with pytest.raises(CorruptBatch):
        read_header(_simple()[:60])
    assert issubclass(CorruptBatch, RecordBatchError)
    assert issubclass(RecordBatchError, ProtocolError)


def test_crc_of_reads_memoryviews_without_copy_and_matches_header() -> None:
    """crc_of covers attributes .. end, for the batch at pos, from its own length."""
    batch = _simple()
    buf = bytearray(b"\x00" * 5 + batch + b"junk")
    assert crc_of(memoryview(buf), 5) == read_header(batch).crc
    assert crc_of(buf, 5, len(batch)) == read_header(batch).crc


def test_verify_batch_accepts_built_batches() -> None:
    """A freshly built batch verifies and returns its header."""
    batch = _simple()
    assert verify_batch(batch) == read_header(batch)


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "why"),
    [
        (16, ">b", 1, "magic"),
        (8, ">i", 48, "too small"),
        (8, ">i", 10_000, "truncated"),
        (17, ">I", 0, "crc"),
    ],
)
def test_verify_batch_rejects_damaged_headers(
    offset: int, fmt: str, value: int, why: str
) -> None:
    """Bad magic, impossible lengths and a wrong CRC raise CorruptBatch."""
    buf = bytearray(_simple())
    struct.pack_into(fmt, buf, offset, value)
    with pytest.raises(CorruptBatch):
        verify_batch(buf)


def _recrc(buf: bytearray) -> None:
    struct.pack_into(">I", buf, 17, crc32c.crc32c(bytes(buf[CRC_START:])))


@pytest.mark.parametrize(
    ("record_count", "last_offset_delta"),
    [(-1, 2), (4, 2), (3, -1), (1000, 999)],
)
def test_verify_batch_rejects_inconsistent_counts(
    record_count: int, last_offset_delta: int
) -> None:
    """Counts that no valid batch can have raise even when the CRC matches."""
    buf = bytearray(_simple(3))
    struct.pack_into(">i", buf, 57, record_count)
    struct.pack_into(">i", buf, 23, last_offset_delta)
    _recrc(buf)
    with pytest.raises(CorruptBatch):
        verify_batch(buf)


def test_verify_batch_accepts_compacted_span() -> None:
    """Fewer records than the offset span (compaction) is valid."""
    buf = bytearray(_simple(3))
    struct.pack_into(">i", buf, 23, 10)
    _recrc(buf)
    assert verify_batch(buf).last_offset == 10


def test_patch_base_offset_and_leader_epoch_in_place_keep_crc() -> None:
    """Patching base_offset and leader epoch in place leaves the CRC valid."""
    batch = _simple(base_offset=0)
    buf = bytearray(b"pad" + batch)
    patch_base_offset(buf, 1 << 40, pos=3)
    patch_leader_epoch(memoryview(buf), 17, pos=3)
    header = verify_batch(buf, 3)
    assert header.base_offset == 1 << 40
    assert header.partition_leader_epoch == 17
    assert [r.offset for r in iter_records(buf, 3)] == [
        1 << 40,
        (1 << 40) + 1,
        (1 << 40) + 2,
    ]


def test_with_base_offset_copies_and_patches() -> None:
    """with_base_offset returns new bytes; the input is untouched."""
    batch = _simple(base_offset=5)
    for source in (batch, memoryview(batch), bytearray(batch)):
        patched = with_base_offset(source, 77)
        assert isinstance(patched, bytes)
        assert verify_batch(patched).base_offset == 77
        assert patched[8:] == batch[8:]
    assert read_header(batch).base_offset == 5


def test_iter_batches_walks_concatenations_and_stops_at_a_partial_tail() -> None:
    """Each complete batch is yielded with its position; a partial tail is skipped."""
    batches = [_simple(n, base_offset=i * 10) for i, n in enumerate((1, 4, 2))]
    buf = b"".join(batches)
    positions = [0, len(batches[0]), len(batches[0]) + len(batches[1])]
    got = list(iter_batches(buf))
    assert [pos for pos, _ in got] == positions
    assert [h.base_offset for _, h in got] == [0, 10, 20]
    assert list(iter_batches(buf + b"\x00" * 20)) == got
    assert list(iter_batches(buf[:-1])) == got[:2]
    assert split_complete(buf[:-1]) == positions[2]
    assert split_complete(b"") == 0
    assert list(iter_batches(buf, positions[1])) == got[1:]


def test_iter_batches_rejects_a_zeroed_header() -> None:
    """A zero batch_length (e.g. preallocated space) cannot be a batch and raises."""
    buf = _simple() + b"\x00" * 80
    with pytest.raises(CorruptBatch) as info:
        list(iter_batches(buf))
    assert info.value.position == len(_simple())


def test_build_batch_rejects_an_empty_batch() -> None:
    """A v2 batch needs at least one record."""
    with pytest.raises(RecordBatchError):
        build_batch([])


def test_build_batch_defaults_timestamps_to_now() -> None:
    """Records without a timestamp get the build time in milliseconds."""
    batch = build_batch([RecordInput(value=b"x")])
    (record,) = iter_records(batch)
    assert record.timestamp > 1_600_000_000_000
    assert read_header(batch).base_timestamp == record.timestamp


def test_log_append_time_batches_report_max_timestamp() -> None:
    """Log-append-time records all carry the batch max_timestamp."""
    batch = build_batch(
        [RecordInput(value=b"a", timestamp=5), RecordInput(value=b"b", timestamp=9)],
        timestamp_type=TimestampType.LOG_APPEND_TIME,
    )
    assert [r.timestamp for r in iter_records(batch)] == [9, 9]


def test_explicit_base_timestamp_gives_negative_deltas() -> None:
    """A base timestamp after a record's timestamp encodes a negative delta."""
    batch = build_batch([RecordInput(value=b"a", timestamp=5)], base_timestamp=50)
    assert [r.timestamp for r in iter_records(batch)] == [5]


def test_iter_records_rejects_trailing_garbage_inside_the_batch() -> None:
    """Bytes after the last record (with a valid CRC) are reported as corrupt."""
    buf = bytearray(_simple(2) + b"\x00")
    struct.pack_into(">i", buf, 8, len(buf) - LOG_OVERHEAD)
    _recrc(buf)
    verify_batch(buf)
    with pytest.raises(CorruptBatch):
        list(iter_records(buf))


def test_iter_records_rejects_corrupt_compressed_payload() -> None:
    """A payload the codec cannot decode raises CorruptBatch, not a codec error."""
    buf = bytearray(_simple(2))
    struct.pack_into(">h", buf, 21, Compression.GZIP)
    _recrc(buf)
    with pytest.raises(CorruptBatch):
        list(iter_records(buf))


def test_iter_records_rejects_unknown_codec() -> None:
    """Codec 5-7 in the attributes raise CorruptBatch."""
    buf = bytearray(_simple(2))
    struct.pack_into(">h", buf, 21, 6)
    _recrc(buf)
    with pytest.raises(CorruptBatch):
        list(iter_records(buf))


@SETTINGS
@given(records=records_st, codec=codec_st, base_offset=st.integers(0, 2**62))
def test_round_trip_every_codec(
    records: list[RecordInput], codec: Compression, base_offset: int
) -> None:
    """build_batch → verify_batch → iter_records returns the input records."""
    batch = build_batch(records, base_offset=base_offset, compression=codec)
    header = verify_batch(batch)
    assert header.record_count == len(records)
    assert header.compression is codec
    assert header.max_timestamp == max(r.timestamp or 0 for r in records)
    assert _actual(batch) == _expected(records, base_offset)


@SETTINGS
@given(records=records_st, codec=codec_st, new_base=st.integers(-1, 2**62))
def test_patching_keeps_the_crc_valid(
    records: list[RecordInput], codec: Compression, new_base: int
) -> None:
    """Patching base_offset (in place or by copy) keeps the batch verifiable."""
    batch = build_batch(records, compression=codec)
    copied = with_base_offset(batch, new_base)
    in_place = bytearray(batch)
    patch_base_offset(in_place, new_base)
    assert bytes(in_place) == copied
    assert verify_batch(copied).base_offset == new_base
    assert _actual(copied) == _expected(records, new_base)


@SETTINGS
@given(
    batches=st.lists(st.tuples(records_st, codec_st), min_size=1, max_size=5),
    cut=st.integers(min_value=0),
)
def test_torn_tail_yields_exactly_the_complete_prefix(
    batches: list[tuple[list[RecordInput], Compression]], cut: int
) -> None:
    """Cutting concatenated batches anywhere yields exactly the batches before the cut."""
    built = []
    offset = 0
    for records, codec in batches:
        built.append(build_batch(records, base_offset=offset, compression=codec))
        offset += len(records)
    buf = b"".join(built)
    cut %= len(buf) + 1
    torn = buf[:cut]
    ends = []
    end = 0
    for batch in built:
        end += len(batch)
        ends.append(end)
    complete = [e for e in ends if e <= cut]
    got = list(iter_batches(torn))
    assert [pos + h.size for pos, h in got] == complete
    assert split_complete(torn) == (complete[-1] if complete else 0)
    for pos, _ in got:
        verify_batch(torn, pos)


@SETTINGS
@given(records=records_st, codec=codec_st, data=st.data())
def test_any_single_byte_corruption_under_the_crc_is_detected(
    records: list[RecordInput], codec: Compression, data: st.DataObject
) -> None:
    """Changing any one byte from the crc field to the end fails verify_batch."""
    batch = bytearray(build_batch(records, compression=codec))
    index = data.draw(st.integers(min_value=17, max_value=len(batch) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    batch[index] ^= flip
    with pytest.raises(CorruptBatch):
        verify_batch(batch)


def test_batch_header_is_frozen() -> None:
    """BatchHeader is an immutable value."""
    header: BatchHeader = read_header(_simple())
    with pytest.raises(AttributeError):
        header.base_offset = 3  # type: ignore[misc]


def test_control_type_rejects_non_control_keys() -> None:
    """A record whose key is not a control key raises RecordBatchError."""
    (record,) = iter_records(build_batch([RecordInput(key=b"ab", value=b"")]))
    with pytest.raises(RecordBatchError):
        control_type(record)
    bad = build_batch([RecordInput(key=b"\x00\x00\x00\x07", value=b"")])
    with pytest.raises(RecordBatchError):
        control_type(next(iter_records(bad)))
