"""``__consumer_offsets`` records: Kafka's offset-commit key (v1) and value (v3,
v1 with an expiry) layouts, round trips, tombstones and undecodable records."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import DecodeError
from protocol.offset_records import (
    GroupMetadataKey,
    OffsetCommitKey,
    OffsetCommitValue,
    OffsetsLogEntry,
    TxnMarkerEntry,
    decode_key,
    decode_value,
    encode_group_key,
    encode_key,
    encode_value,
    offsets_batch,
    read_entries,
)
from protocol.record_builder import (
    ControlType,
    RecordInput,
    build_batch,
    build_control_batch,
)
from protocol.records import patch_base_offset, read_header

SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
names = st.text(max_size=40)
int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)


def test_key_and_value_have_kafkas_layout() -> None:
    """Key v1 is version, group, topic, partition; value v3 is version, offset,
    leader epoch, metadata, commit timestamp (OffsetCommitKey/Value.json)."""
    assert encode_key("g", "t", 3) == bytes.fromhex("000100016700017400000003")
    value = OffsetCommitValue(
        offset=42, leader_epoch=5, metadata="m", commit_timestamp=1000
    )
    assert encode_value(value) == bytes.fromhex(
        "0003000000000000002a0000000500016d00000000000003e8"
    )
    assert encode_group_key("g") == bytes.fromhex("0002000167")


def test_an_explicit_expiry_is_written_as_value_version_1() -> None:
    """A commit with retention (OffsetCommit v2-4) uses value v1, as Kafka does."""
    value = OffsetCommitValue(
        offset=7, metadata="", commit_timestamp=10, expire_timestamp=20
    )
    data = encode_value(value)
    assert data[:2] == b"\x00\x01"
    assert decode_value(data) == value


def test_older_value_versions_decode() -> None:
    """Values v0 and v2 (offset, metadata, commit timestamp) decode with no epoch."""
    body = bytes.fromhex("000000000000000900000000000000000064")
    for version in (b"\x00\x00", b"\x00\x02"):
        assert decode_value(version + body) == OffsetCommitValue(
            offset=9, metadata="", commit_timestamp=100
        )


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\x00\x09\x00\x01g", b"\x00\x01\x00\x05g", b"\x00\x01\x00\x01\xff"],
)
def test_malformed_keys_raise_decode_error(data: bytes) -> None:
    """Truncated, unknown-version, overrunning or non-UTF-8 keys are DecodeErrors."""
    with pytest.raises(DecodeError):
        decode_key(data)


def test_an_unknown_value_version_is_a_decode_error() -> None:
    """Value versions above 3 are refused."""
    with pytest.raises(DecodeError):
        decode_value(b"\x00\x04" + bytes(30))


@SETTINGS
@given(group=names, topic=names, partition=int32)
def test_keys_round_trip(group: str, topic: str, partition: int) -> None:
    """Every key decodes to what was encoded."""
    assert decode_key(encode_key(group, topic, partition)) == OffsetCommitKey(
        group=group, topic=topic, partition=partition
    )
    assert decode_key(encode_group_key(group)) == GroupMetadataKey(group=group)


@SETTINGS
@given(
    offset=int64,
    epoch=int32,
    metadata=names,
    stamp=int64,
    expire=st.none() | int64,
)
def test_values_round_trip(
    offset: int, epoch: int, metadata: str, stamp: int, expire: int | None
) -> None:
    """Every value decodes to what was encoded (v1 carries no leader epoch)."""
    value = OffsetCommitValue(
        offset=offset,
        leader_epoch=epoch if expire is None else -1,
        metadata=metadata,
        commit_timestamp=stamp,
        expire_timestamp=expire,
    )
    assert decode_value(encode_value(value)) == value


def test_batches_read_back_as_entries_with_tombstones_and_skips() -> None:
    """A batch's records come back with their log offsets; a null value is a
    tombstone (a group key's too), a foreign record is a DecodeError,
    and a transaction's COMMIT marker is a TxnMarkerEntry."""
    value = OffsetCommitValue(offset=3, commit_timestamp=1)
    first = bytearray(
        offsets_batch(
            [
                (encode_key("g", "t", 0), encode_value(value)),
                (encode_key("g", "t", 0), None),
                (encode_group_key("g"), None),
            ],
            timestamp=1234,
        )
    )
    patch_base_offset(first, 10)
    foreign = bytearray(build_batch([RecordInput(key=b"\x00\x07x", value=b"v")]))
    patch_base_offset(foreign, 13)
    control = build_control_batch(
        ControlType.COMMIT, producer_id=1, producer_epoch=0, base_offset=14
    )
    got = list(read_entries(bytes(first + foreign) + control))
    assert got[:3] == [
        OffsetsLogEntry(
            offset=10,
            key=OffsetCommitKey(group="g", topic="t", partition=0),
            value=value,
            timestamp=1234,
        ),
        OffsetsLogEntry(
            offset=11,
            key=OffsetCommitKey(group="g", topic="t", partition=0),
            value=None,
            timestamp=1234,
        ),
        OffsetsLogEntry(
            offset=12, key=GroupMetadataKey(group="g"), value=None, timestamp=1234
        ),
    ]
    assert len(got) == 5
    assert isinstance(got[3], DecodeError)
    assert got[4] == TxnMarkerEntry(
        offset=14, producer_id=1, producer_epoch=0, commit=True
    )


def test_transactional_batch_records_carry_their_producer() -> None:
    """Offsets written in a producer's transactional batch read back with its
    producer id and epoch; plain ones with -1."""
    value = OffsetCommitValue(offset=5, commit_timestamp=1)
    batch = offsets_batch(
        [(encode_key("g", "t", 1), encode_value(value))],
        timestamp=7,
        producer_id=42,
        producer_epoch=3,
    )
    header = read_header(batch)
    assert header.is_transactional
    assert (header.producer_id, header.producer_epoch) == (42, 3)
    (entry,) = read_entries(batch)
    assert isinstance(entry, OffsetsLogEntry)
    assert (entry.producer_id, entry.producer_epoch) == (42, 3)
    assert entry.value == value
