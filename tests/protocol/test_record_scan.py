"""The compaction scanner agrees with the full record decoder, and a batch rebuilt
from a subset of its records decodes to exactly that subset (Hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.compression import Compression
from protocol.record_builder import Header, RecordInput, build_batch, iter_records
from protocol.record_scan import rebuild_with, scan_keys, scan_records
from protocol.records import read_header, verify_batch

records_st = st.lists(
    st.builds(
        RecordInput,
        key=st.none() | st.binary(max_size=300),
        value=st.none() | st.binary(max_size=300),
        headers=st.lists(
            st.builds(
                Header, key=st.text(max_size=5), value=st.none() | st.binary(max_size=5)
            ),
            max_size=2,
        ).map(tuple),
        timestamp=st.integers(min_value=0, max_value=2**41),
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=150, deadline=None)
@given(
    records=records_st,
    base=st.integers(min_value=0, max_value=2**40),
    codec=st.sampled_from([Compression.NONE, Compression.GZIP, Compression.ZSTD]),
    keep=st.lists(st.booleans(), min_size=20, max_size=20),
)
def test_scan_matches_the_decoder_and_rebuild_keeps_the_subset(
    records: list[RecordInput], base: int, codec: Compression, keep: list[bool]
) -> None:
    """Spans give each record's offset, key and tombstone flag as iter_records
    does; a rebuilt batch keeps header offsets and holds exactly the kept records."""
    batch = build_batch(
        records, base_offset=base, compression=codec, producer_id=5, base_sequence=9
    )
    decoded = list(iter_records(batch))
    header, data, spans = scan_records(batch)
    assert [(s.offset, s.key, s.tombstone) for s in spans] == [
        (r.offset, r.key, r.value is None) for r in decoded
    ]
    offsets: dict[bytes, int] = {}
    assert scan_keys(batch, 0, offsets) == any(r.value is None for r in decoded)
    expected: dict[bytes, int] = {}
    for r in decoded:
        if r.key is not None:
            expected[r.key] = r.offset
    assert offsets == expected
    kept = [s for s, k in zip(spans, keep, strict=False) if k]
    rebuilt = rebuild_with(header, data, kept)
    new = verify_batch(rebuilt)
    assert (new.base_offset, new.last_offset) == (
        header.base_offset,
        header.last_offset,
    )
    assert (new.producer_id, new.base_sequence) == (5, 9)
    assert new.record_count == len(kept)
    wanted = {s.offset for s in kept}
    assert list(iter_records(rebuilt)) == [r for r in decoded if r.offset in wanted]
    assert read_header(rebuilt).max_timestamp == header.max_timestamp
