"""The ``__transaction_state`` key and value codec (Kafka's TransactionLog schemas)."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import DecodeError
from protocol.txn_log_records import (
    TxnLogEntry,
    TxnLogValue,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    read_entries,
    txn_log_batch,
)

_i64 = st.integers(-(2**63), 2**63 - 1)
_names = st.text(max_size=20)
_partitions = st.one_of(
    st.none(),
    st.lists(
        st.tuples(_names, st.lists(st.integers(0, 2**31 - 1), max_size=5).map(tuple)),
        max_size=4,
    ).map(tuple),
)
_values = st.builds(
    TxnLogValue,
    producer_id=_i64,
    producer_epoch=st.integers(-(2**15), 2**15 - 1),
    timeout_ms=st.integers(-(2**31), 2**31 - 1),
    status=st.integers(0, 7),
    partitions=_partitions,
    last_update_ms=_i64,
    start_ms=_i64,
)
_flexible_values = st.builds(
    TxnLogValue,
    producer_id=_i64,
    producer_epoch=st.integers(-(2**15), 2**15 - 1),
    timeout_ms=st.integers(-(2**31), 2**31 - 1),
    status=st.integers(0, 7),
    partitions=_partitions,
    last_update_ms=_i64,
    start_ms=_i64,
    previous_producer_id=_i64,
    next_producer_id=_i64,
    client_transaction_version=st.integers(-(2**15), 2**15 - 1),
    groups=st.lists(_names, max_size=3).map(tuple),
)


@given(_names)
def test_key_round_trips(txn_id: str) -> None:
    """A key decodes to the transactional id it was encoded from."""
    assert decode_key(encode_key(txn_id)) == txn_id


@given(_values)
def test_value_v0_round_trips(value: TxnLogValue) -> None:
    """A version 0 value decodes to what was encoded."""
    assert decode_value(encode_value(value)) == value


@given(_flexible_values)
def test_value_v1_round_trips_with_tagged_fields(value: TxnLogValue) -> None:
    """A version 1 (flexible) value keeps its tagged fields."""
    assert decode_value(encode_value(value, version=1)) == value


def test_value_v0_layout_is_kafkas() -> None:
    """Version 0 is Kafka's layout: fixed fields, int16 strings, int32 arrays."""
    value = TxnLogValue(
        producer_id=100,
        producer_epoch=50,
        timeout_ms=500,
        status=4,
        partitions=(("t", (0, 3)),),
        last_update_ms=1000,
        start_ms=750,
    )
    expected = (
        struct.pack(">hqhib", 0, 100, 50, 500, 4)
        + struct.pack(">ih", 1, 1)
        + b"t"
        + struct.pack(">iii", 2, 0, 3)
        + struct.pack(">qq", 1000, 750)
    )
    assert encode_value(value) == expected
    assert encode_key("TXNID") == b"\x00\x00\x00\x05TXNID"


def test_empty_state_partitions_are_null() -> None:
    """A null partition array (Kafka's Empty state) is written as length -1."""
    value = TxnLogValue(
        producer_id=1,
        producer_epoch=0,
        timeout_ms=60_000,
        status=0,
        partitions=None,
        last_update_ms=1,
        start_ms=-1,
    )
    data = encode_value(value)
    assert data[2 + 8 + 2 + 4 + 1 :][:4] == b"\xff\xff\xff\xff"
    assert decode_value(data).partitions is None


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\x00\x09", b"\x00\x00" + b"\x01" * 5, b"\x00\x00\x00\x05ab"],
)
def test_malformed_records_are_decode_errors(data: bytes) -> None:
    """Truncated or unknown-version records raise DecodeError, nothing else."""
    with pytest.raises(DecodeError):
        decode_value(data)
    if data != b"\x00\x00" + b"\x01" * 5:
        with pytest.raises(DecodeError):
            decode_key(data)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    """Any byte string decodes or raises DecodeError."""
    for decode in (decode_key, decode_value):
        with contextlib.suppress(DecodeError):
            decode(data)


def test_batch_reads_back_as_entries() -> None:
    """A batch of records reads back in order, tombstones as None, bad records as
    DecodeError."""
    value = TxnLogValue(
        producer_id=7,
        producer_epoch=1,
        timeout_ms=1000,
        status=1,
        partitions=(("a", (1,)),),
        last_update_ms=5,
        start_ms=4,
    )
    batch = txn_log_batch(
        [
            (encode_key("x"), encode_value(value)),
            (encode_key("y"), None),
            (b"\x00\x07", b""),
        ]
    )
    entries = list(read_entries(batch))
    assert entries[:2] == [
        TxnLogEntry(offset=0, transactional_id="x", value=value),
        TxnLogEntry(offset=1, transactional_id="y", value=None),
    ]
    assert isinstance(entries[2], DecodeError)
