"""Group membership lines of the offset store: stored, reloaded, compacted, deleted."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from storage.group_meta import StoredGroup, StoredMember
from storage.offset_store import CommittedOffset, OffsetStore

_TEXT = st.text(max_size=20)
_MEMBERS = st.builds(
    StoredMember,
    member_id=_TEXT,
    group_instance_id=st.none() | _TEXT,
    client_id=_TEXT,
    client_host=_TEXT,
    rebalance_timeout_ms=st.integers(0, 2**31 - 1),
    session_timeout_ms=st.integers(0, 2**31 - 1),
    subscription=st.binary(max_size=40),
    assignment=st.binary(max_size=40),
)
_GROUPS = st.builds(
    StoredGroup,
    group=_TEXT,
    protocol_type=_TEXT,
    generation=st.integers(0, 2**31 - 1),
    protocol=st.none() | _TEXT,
    leader=st.none() | _TEXT,
    state_ms=st.integers(0, 2**62),
    members=st.lists(_MEMBERS, max_size=4).map(tuple),
)


def _group(name: str, generation: int, *members: str) -> StoredGroup:
    return StoredGroup(
        group=name,
        protocol_type="consumer",
        generation=generation,
        protocol="range" if members else None,
        leader=members[0] if members else None,
        state_ms=1_700_000_000_000,
        members=tuple(
            StoredMember(
                member_id=m,
                group_instance_id=None,
                client_id="c",
                client_host="/127.0.0.1",
                rebalance_timeout_ms=30_000,
                session_timeout_ms=10_000,
                subscription=b"\x00\x01sub",
                assignment=b"\x00\x01" + m.encode(),
            )
            for m in members
        ),
    )


@given(stored=_GROUPS)
def test_group_line_round_trips(stored: StoredGroup) -> None:
    """A group's line, through JSON text, reads back as the same group."""
    line = json.loads(json.dumps(stored.to_json(), ensure_ascii=False))
    assert StoredGroup.from_json(line) == stored


def test_last_stored_membership_survives_reopen(tmp_path: Path) -> None:
    """The last line of each group wins, and a reopened store reads it back."""
    store = OffsetStore(tmp_path)
    store.store_group(_group("g", 1, "a"))
    store.store_group(_group("g", 2, "a", "b"))
    store.store_group(_group("h", 4))
    store.sync()
    store.close(clean=False)
    again = OffsetStore(tmp_path)
    assert sorted(again.stored_groups(), key=lambda s: s.group) == [
        _group("g", 2, "a", "b"),
        _group("h", 4),
    ]
    again.close()


def test_compaction_keeps_only_the_last_membership_per_group(tmp_path: Path) -> None:
    """A compacted log holds one group line per group, and the offsets."""
    store = OffsetStore(tmp_path)
    for gen in range(1, 6):
        store.store_group(_group("g", gen, "a"))
    store.commit("g", [CommittedOffset(topic="t", partition=0, offset=9)])
    store.close()  # clean: compacted
    lines = [json.loads(x) for x in store.path.read_text().splitlines()]
    assert [x["op"] for x in lines] == ["commit", "group"]
    assert lines[1]["generation"] == 5
    again = OffsetStore(tmp_path)
    assert again.stored_groups() == [_group("g", 5, "a")]
    assert again.fetch("g")[("t", 0)].offset == 9
    again.close()


def test_delete_group_forgets_its_membership(tmp_path: Path) -> None:
    """DeleteGroups' line drops the stored membership, also of a group without
    offsets, and the deletion survives a reopen."""
    store = OffsetStore(tmp_path)
    store.store_group(_group("g", 3))
    seq = store.delete_group("g")
    assert seq == store.written_seq
    assert store.stored_groups() == []
    store.sync()
    store.close(clean=False)
    again = OffsetStore(tmp_path)
    assert again.stored_groups() == []
    again.close()


def test_torn_group_line_is_cut_off(tmp_path: Path) -> None:
    """A group line torn by a crash is dropped; the one before it stays."""
    store = OffsetStore(tmp_path)
    store.store_group(_group("g", 1, "a"))
    store.store_group(_group("g", 2, "a"))
    store.sync()
    store.close(clean=False)
    data = store.path.read_bytes()
    store.path.write_bytes(data[:-10])
    again = OffsetStore(tmp_path)
    assert again.stored_groups() == [_group("g", 1, "a")]
    assert again.recovered_bytes_dropped > 0
    again.close()
