"""Why a cluster's leader stamps its own epoch on ingested batches.

A snapshot may come from a log of a later term than the partition it is restored
into. Kept as they were, its batches would put that later epoch in the leader-epoch
cache, later epochs of this partition would be ignored after it, and a replica that
diverged afterwards could no longer be found by OffsetForLeaderEpoch truncation
(KIP-101). Stamped with the leader's epoch, the ingest is like any produce of that
leader, and the divergence is cut away.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.replication.follower_log import truncation_offset
from storage.snapshot_stage import stamp_leader_epoch
from tests.snapshots.test_snapshot_storage import open_log, produce


@pytest.mark.parametrize("stamped", [True, False])
def test_stamped_ingest_keeps_a_later_divergence_detectable(
    root: Path, stamped: bool
) -> None:
    """A leader ingests five batches of term 7 at leader epoch 2, then appends one
    record its follower never fetched; the follower leads at epoch 3 and appends
    another. Asked for its latest epoch, the new leader tells the old one to cut
    at 5 only when the ingest was stamped."""
    source = open_log(root / "source")
    produce(source, [b"s%d" % i for i in range(5)], epoch=7)
    data = b"".join(p.read_bytes() for p in sorted((root / "source").glob("*.log")))
    ingested = stamp_leader_epoch(data, 2) if stamped else data

    old = open_log(root / "old")
    new = open_log(root / "new")
    for replica in (old, new):
        replica.append_verbatim(ingested)
    produce(old, [b"never replicated"], epoch=2)
    produce(new, [b"written by the new leader"], epoch=3)

    epoch, end = new.epoch_end_offset(old.leader_epoch)
    cut = truncation_offset(old, epoch, end)
    if stamped:
        assert old.leader_epoch == 2
        assert cut == 5
    else:  # the term-7 entry hides both later epochs: nothing is cut
        assert old.leader_epoch == new.leader_epoch == 7
        assert cut == old.log_end_offset == 6
