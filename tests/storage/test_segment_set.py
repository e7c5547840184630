"""SegmentSet: the ordered segments of one partition, with their base offsets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.fileops import FileOps
from storage.segment import Segment
from storage.segment_set import SegmentSet


@pytest.fixture
def segments(tmp_path: Path) -> Iterator[list[Segment]]:
    made = [Segment.create(FileOps(), str(tmp_path), base) for base in (0, 10, 20)]
    yield made
    for seg in made:
        seg.close()


def _bases(found: Iterator[Segment] | SegmentSet) -> list[int]:
    return [s.base_offset for s in found]


def test_from_offset_starts_at_the_segment_holding_the_offset(
    segments: list[Segment],
) -> None:
    sset = SegmentSet(segments)
    assert _bases(sset.from_offset(15)) == [10, 20]
    assert _bases(sset.from_offset(10)) == [10, 20]
    assert _bases(sset.from_offset(25)) == [20]
    assert _bases(sset.from_offset(0)) == [0, 10, 20]
    # Below every base offset: from the oldest.
    assert _bases(sset.from_offset(-1)) == [0, 10, 20]


def test_ends_keep_segments_and_base_offsets_in_step(
    segments: list[Segment],
) -> None:
    sset = SegmentSet(segments[:1])
    sset.append(segments[1])
    sset.append(segments[2])
    assert (sset.first, sset.active, len(sset)) == (segments[0], segments[2], 3)
    assert sset.closed() == segments[:2]

    assert sset.pop_first() is segments[0]
    assert sset.base_offset == 10
    assert _bases(sset.from_offset(5)) == [10, 20]
    assert _bases(sset.from_offset(15)) == [10, 20]

    assert sset.pop_active() is segments[2]
    assert sset.active is segments[1]
    assert _bases(sset.from_offset(25)) == [10]

    sset.replace_all([segments[2]])
    assert _bases(sset) == [20]
    assert _bases(sset.from_offset(0)) == [20]
    assert sset.end_offset == segments[2].next_offset == 20


def test_size_and_newest_timestamp_cover_every_segment(
    segments: list[Segment],
) -> None:
    sset = SegmentSet(segments)
    assert sset.size_bytes == 0
    assert sset.max_timestamp == -1
    segments[0].max_timestamp = 5_000
    segments[2].max_timestamp = 7_000
    assert sset.max_timestamp == 7_000
    assert SegmentSet().max_timestamp == -1


def test_replace_active_and_extend_swap_in_one_step(
    segments: list[Segment], tmp_path: Path
) -> None:
    """The active segment is replaced by one or more, or more are added after it;
    bases stay in step, and an empty replacement is refused."""
    sset = SegmentSet(segments[:2])
    gone = sset.replace_active([segments[2]])
    assert gone is segments[1]
    assert _bases(sset) == [0, 20]
    assert _bases(sset.from_offset(25)) == [20]
    extra = Segment.create(FileOps(), str(tmp_path), 30)
    try:
        sset.extend([extra])
        assert _bases(sset) == [0, 20, 30]
        assert sset.active is extra
        with pytest.raises(ValueError, match="at least one"):
            sset.replace_active([])
        assert len(sset) == 3
    finally:
        extra.close()
