"""The snapshot upload a non-leader hands to its partition's leader (cluster mode),
taken by the receiver with its bounds, and what a cluster's ingest stamps.

The receiver is driven with an in-memory body and the real verification
(storage.snapshot.inspect_snapshot); the whole cluster flow is in
tests/cluster/test_snapshots_cluster.py.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from broker.disk.guard import DiskGuard
from broker.snapshots.handover import (
    UploadFile,
    UploadRefused,
    receive_snapshot,
    upload_header,
)
from protocol.records import iter_batches, verify_batch
from storage.snapshot import Snapshot, inspect_snapshot
from storage.snapshot_meta import META_FILE, parse_meta
from storage.snapshot_stage import stamp_leader_epoch
from tests.snapshots.test_snapshot_side_files import make_snapshot


@dataclass
class Body:
    """A request body held in memory, read as the admin server streams one."""

    data: bytes
    pos: int = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    async def read(self, max_bytes: int = 1 << 20) -> bytes:
        out = self.data[self.pos : self.pos + min(max_bytes, 7000)]
        self.pos += len(out)
        return out

    async def read_exactly(self, n: int) -> bytes:
        if n > self.remaining:
            raise anyio.EndOfStream
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


@dataclass
class Receiver:
    snapshots_dir: str
    root: str
    disk: DiskGuard | None = None
    woken: list[bool] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    async def verify(self, path: str, *, settle_s: float) -> Snapshot:
        return await anyio.to_thread.run_sync(
            functools.partial(inspect_snapshot, path, self.root, settle_s=settle_s)
        )

    async def keep_as_created(self, rel: str, snap: Snapshot) -> None:
        assert not (Path(self.snapshots_dir) / rel).exists()  # recorded first
        self.created.append(rel)

    def wake(self) -> None:
        self.woken.append(True)


def _body(
    src: Path, *, name: str = "100", tamper: bool = False, copy: bool = False
) -> bytes:
    names = [META_FILE]
    if (src / "group-offsets.json").exists():
        names.append("group-offsets.json")
    names += sorted(p.name for p in src.glob("*.log"))
    contents = [(src / n).read_bytes() for n in names]
    if tamper:
        last = bytearray(contents[-1])
        last[-3] ^= 0xFF
        contents[-1] = bytes(last)
    files = [UploadFile(n, len(c)) for n, c in zip(names, contents, strict=True)]
    return upload_header("t", name, 2, files, copy=copy) + b"".join(contents)


@pytest.fixture
def receiver(root: Path) -> Receiver:
    (root / "data" / "snapshots").mkdir(parents=True)
    return Receiver(str(root / "data" / "snapshots"), str(root.resolve()))


def _leftovers(receiver: Receiver) -> list[str]:
    return sorted(p.name for p in Path(receiver.snapshots_dir).glob("*/*"))


def test_verified_upload_is_published_once_and_wakes_the_watcher(
    root: Path, receiver: Receiver
) -> None:
    """A good upload lands as <topic>/<name> with the sender's bytes; sending it
    again is answered as already received and changes nothing."""
    src = make_snapshot(root, [])
    body = _body(src)
    first = anyio.run(receive_snapshot, receiver, Body(body))
    assert first == {"path": "t/100", "status": "received"}
    landed = Path(receiver.snapshots_dir) / "t" / "100"
    for f in src.iterdir():
        assert (landed / f.name).read_bytes() == f.read_bytes()
    again = anyio.run(receive_snapshot, receiver, Body(body))
    assert again == {"path": "t/100", "status": "already-received"}
    assert receiver.woken == [True, True]
    assert _leftovers(receiver) == ["100"]


def test_copy_is_recorded_as_created_before_it_appears_and_not_ingested(
    root: Path, receiver: Receiver
) -> None:
    """A snapshot gathered back from the leader that cut it is recorded as this
    broker's own before it is renamed into place, and the watcher is not woken."""
    src = make_snapshot(root, [])
    answer = anyio.run(receive_snapshot, receiver, Body(_body(src, copy=True)))
    assert answer == {"path": "t/100", "status": "received"}
    assert receiver.created == ["t/100"]
    assert receiver.woken == []
    assert (Path(receiver.snapshots_dir) / "t" / "100" / META_FILE).exists()


def test_upload_that_does_not_verify_is_refused_and_nothing_kept(
    root: Path, receiver: Receiver
) -> None:
    """A segment damaged on the way fails the receiver's own checks: 422, and no
    trace of it is left in the snapshots dir."""
    src = make_snapshot(root, [])
    with pytest.raises(UploadRefused) as err:
        anyio.run(receive_snapshot, receiver, Body(_body(src, tamper=True)))
    assert err.value.status == 422
    assert _leftovers(receiver) == []
    assert receiver.woken == []


@pytest.mark.parametrize(
    ("mangle", "status"),
    [
        (lambda b: b[:-1], 400),  # shorter than its manifest says
        (lambda b: b.replace(b'"100"', b'"../x"', 1), 400),  # a path as its name
        (lambda b: b.replace(b'"meta.json"', b'"evil.json"', 1), 400),  # not meta first
        (lambda b: b"\xff\xff\xff\xff" + b[4:], 413),  # manifest over its bound
    ],
)
def test_upload_breaking_a_bound_is_refused_before_it_is_kept(
    root: Path, receiver: Receiver, mangle: object, status: int
) -> None:
    """Length, names and the manifest's size are checked; nothing is kept."""
    src = make_snapshot(root, [])
    assert callable(mangle)
    with pytest.raises(UploadRefused) as err:
        anyio.run(receive_snapshot, receiver, Body(mangle(_body(src))))
    assert err.value.status == status
    assert _leftovers(receiver) == []


def test_segments_must_add_up_to_the_size_meta_json_declares(
    root: Path, receiver: Receiver
) -> None:
    """An upload whose segments hold more than meta.json's size is refused."""
    src = make_snapshot(root, [])
    segment = min(src.glob("*.log"))
    segment.write_bytes(segment.read_bytes() + b"\0" * 100)
    with pytest.raises(UploadRefused) as err:
        anyio.run(receive_snapshot, receiver, Body(_body(src)))
    assert err.value.status == 422
    assert "meta.json says" in str(err.value)
    assert _leftovers(receiver) == []


def test_leader_epoch_in_meta_is_optional_and_round_trips(root: Path) -> None:
    """meta.json records leader_epoch when create knows it; older files without it
    still parse (None)."""
    src = make_snapshot(root, [])
    meta = parse_meta((src / META_FILE).read_bytes())
    assert meta.leader_epoch is None
    with_epoch = parse_meta(dataclasses.replace(meta, leader_epoch=4).encode())
    assert with_epoch.leader_epoch == 4


def test_stamped_batches_carry_the_epoch_and_keep_their_crc(root: Path) -> None:
    """Stamping sets every batch's partition leader epoch; each batch still
    verifies (the field is outside the CRC)."""
    src = make_snapshot(root, [])
    data = b"".join(p.read_bytes() for p in sorted(src.glob("*.log")))
    stamped = stamp_leader_epoch(data, 9)
    headers = [h for _, h in iter_batches(stamped)]
    assert len(headers) == len(list(iter_batches(data))) > 0
    assert {h.partition_leader_epoch for h in headers} == {9}
    for pos, _ in iter_batches(stamped):
        verify_batch(stamped, pos)
