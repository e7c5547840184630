"""GroupMetadataValue records of ``__consumer_offsets``: Kafka's layout, round trips."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import DecodeError
from protocol.group_metadata_records import (
    GroupMetadataValue,
    MemberMetadataValue,
    decode_group_value,
    encode_group_value,
)

_TEXT = st.text(max_size=20)
_I32 = st.integers(-(2**31), 2**31 - 1)
_MEMBERS = st.builds(
    MemberMetadataValue,
    member_id=_TEXT,
    group_instance_id=st.none() | _TEXT,
    client_id=_TEXT,
    client_host=_TEXT,
    rebalance_timeout_ms=_I32,
    session_timeout_ms=_I32,
    subscription=st.binary(max_size=40),
    assignment=st.binary(max_size=40),
)
_VALUES = st.builds(
    GroupMetadataValue,
    protocol_type=_TEXT,
    generation=_I32,
    protocol=st.none() | _TEXT,
    leader=st.none() | _TEXT,
    current_state_timestamp=st.integers(-(2**63), 2**63 - 1),
    members=st.lists(_MEMBERS, max_size=4).map(tuple),
)


@given(value=_VALUES)
def test_group_value_round_trips(value: GroupMetadataValue) -> None:
    """Every group value decodes back from its version-3 encoding."""
    assert decode_group_value(encode_group_value(value)) == value


@given(value=_VALUES, cut=st.integers(min_value=1))
def test_truncated_group_value_is_a_decode_error(
    value: GroupMetadataValue, cut: int
) -> None:
    """A value cut short anywhere fails to decode with DecodeError only."""
    data = encode_group_value(value)
    with pytest.raises(DecodeError):
        decode_group_value(data[: len(data) - 1 - cut % len(data)])


def _s(text: str) -> bytes:
    return struct.pack(">h", len(text)) + text.encode()


def test_version_3_layout_is_kafkas() -> None:
    """The bytes follow GroupMetadataValue.json v3 field by field."""
    value = GroupMetadataValue(
        protocol_type="consumer",
        generation=7,
        protocol="range",
        leader="m1",
        current_state_timestamp=1_700_000_000_000,
        members=(
            MemberMetadataValue(
                member_id="m1",
                group_instance_id=None,
                client_id="c",
                client_host="/127.0.0.1",
                rebalance_timeout_ms=300_000,
                session_timeout_ms=45_000,
                subscription=b"S",
                assignment=b"AA",
            ),
        ),
    )
    expected = (
        struct.pack(">h", 3)
        + _s("consumer")
        + struct.pack(">i", 7)
        + _s("range")
        + _s("m1")
        + struct.pack(">q", 1_700_000_000_000)
        + struct.pack(">i", 1)
        + _s("m1")
        + struct.pack(">h", -1)
        + _s("c")
        + _s("/127.0.0.1")
        + struct.pack(">ii", 300_000, 45_000)
        + struct.pack(">i", 1)
        + b"S"
        + struct.pack(">i", 2)
        + b"AA"
    )
    assert encode_group_value(value) == expected


def test_version_0_value_reads_with_defaults() -> None:
    """A v0 value (no rebalance timeout, timestamp or instance id) decodes with
    the session timeout as rebalance timeout and timestamp -1."""
    data = (
        struct.pack(">h", 0)
        + _s("consumer")
        + struct.pack(">i", 1)
        + _s("range")
        + _s("m")
        + struct.pack(">i", 1)
        + _s("m")
        + _s("c")
        + _s("/h")
        + struct.pack(">i", 10_000)
        + struct.pack(">i", 0)
        + struct.pack(">i", 0)
    )
    value = decode_group_value(data)
    assert value.current_state_timestamp == -1
    assert value.members[0].rebalance_timeout_ms == 10_000
    assert value.members[0].group_instance_id is None
