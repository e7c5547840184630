"""The fuzz targets, their allowed exceptions, the corpus and the byte mutators.

Targets (each must raise nothing but its allowed exception on any input):

- ``request``: :func:`protocol.codec.decode_request` on a frame body -> ProtocolError.
- ``meta``: :func:`storage.snapshot_meta.parse_meta` on ``meta.json`` bytes ->
  SnapshotError (SnapshotInvalid / SnapshotIncomplete).
- ``segment``: :func:`storage.snapshot_files.iter_chunks` with CRC verification over a
  snapshot segment file (plain, and the zstd/gzip/lz4 stored forms) -> SnapshotError.
- ``groups``: :func:`storage.snapshot_groups.parse_group_offsets` on
  ``group-offsets.json`` bytes, for a snapshot of partition 0 of ``t`` ending at
  offset 99 -> SnapshotError; whatever it accepts keeps the file's rules.
- ``produce``: a Produce payload through the producer-state path the handler takes
  (:func:`broker.producers.service.append_checked`: batch identity, idempotence check,
  validation, append to a real partition log), twice, so the second run meets the
  state the first left -> StorageError (InvalidBatch, MessageTooLarge); refusals
  such as OUT_OF_ORDER_SEQUENCE_NUMBER come back as error codes.

The corpus lives in ``tests/fuzz/corpus/<target>/<category>__<name>`` (category is
the kind of bad input: truncated, bad-length, bit-flip, ...; ``valid`` seeds are
well-formed). ``python -m tests.fuzz.make_corpus`` regenerates it.
"""

from __future__ import annotations

import atexit
import functools
import os
import random
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from broker.producers.service import ProducerService, append_checked
from protocol.codec import decode_request
from protocol.errors import ProtocolError
from storage.errors import StorageError
from storage.log_manager import LogManager
from storage.offset_store import CommittedOffset, wire_problem
from storage.partition_log import PartitionLog
from storage.producer_state import ProducerIdAllocator
from storage.snapshot_files import iter_chunks
from storage.snapshot_groups import entry_problem, parse_group_offsets
from storage.snapshot_meta import SnapshotError, SnapshotMeta, parse_meta

CORPUS = Path(__file__).parent / "corpus"


def _request(data: bytes) -> None:
    decode_request(data)


def _meta(data: bytes) -> None:
    parse_meta(data)


def _segment(data: bytes) -> None:
    # The first byte picks the stored form, the rest is the file.
    compression = ("none", "zstd", "gzip", "lz4")[data[0] % 4] if data else "none"
    fd = os.memfd_create("segment")
    try:
        os.write(fd, data[1:])
        for _ in iter_chunks(fd, compression, verify=True, chunk_bytes=4096):
            pass
    finally:
        os.close(fd)


GROUPS_META = SnapshotMeta(
    version=1,
    last_offset=99,
    last_term=0,
    ancestor_snapshot_id=None,
    compression="none",
    size=0,
    topic="t",
    partition=0,
)


def _groups(data: bytes) -> None:
    for o in parse_group_offsets(data, GROUPS_META):
        # an accepted entry is one the offset store and OffsetFetch can carry
        assert entry_problem(o, last_offset=GROUPS_META.last_offset) is None
        committed = CommittedOffset(
            topic="t",
            partition=0,
            offset=o.offset,
            leader_epoch=o.leader_epoch,
            metadata=o.metadata,
            commit_ms=o.commit_ms,
        )
        assert wire_problem(o.group, committed) is None


@functools.cache
def _producer_log() -> tuple[ProducerService, PartitionLog]:
    """One partition log and producer service per process (in a temporary dir)."""
    tmp = tempfile.TemporaryDirectory(prefix="fuzz-produce-")
    atexit.register(tmp.cleanup)
    root = Path(tmp.name)
    logs = LogManager(str(root / "data"), {})
    atexit.register(logs.close)  # runs before the cleanup (last in, first out)
    logs.create_topic("fuzz", 1)
    return ProducerService(ProducerIdAllocator(root)), logs.partition("fuzz", 0)


def _produce(data: bytes) -> None:
    producers, plog = _producer_log()
    for _ in range(2):
        append_checked(producers, plog, data, leader_epoch=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    allowed: tuple[type[BaseException], ...]


TARGETS: dict[str, Target] = {
    "request": Target(name="request", run=_request, allowed=(ProtocolError,)),
    "meta": Target(name="meta", run=_meta, allowed=(SnapshotError,)),
    "segment": Target(name="segment", run=_segment, allowed=(SnapshotError,)),
    "groups": Target(name="groups", run=_groups, allowed=(SnapshotError,)),
    "produce": Target(name="produce", run=_produce, allowed=(StorageError,)),
}


def corpus(target: str) -> list[tuple[str, bytes]]:
    """(file name, bytes) of every corpus entry of ``target``, sorted."""
    return [
        (p.name, p.read_bytes())
        for p in sorted((CORPUS / target).iterdir())
        if p.is_file()
    ]


def category(name: str) -> str:
    return name.split("__", 1)[0]


def check(target: Target, data: bytes) -> BaseException | None:
    """Run one input; the unexpected exception it raised, or None."""
    try:
        target.run(data)
    except target.allowed:
        return None
    except Exception as e:  # anything else is a finding  # noqa: BLE001
        return e
    return None


_BOUNDARY_INTS = (0, 1, -1, 0x7F, 0x80, 0xFF, 0x7FFF, -0x8000, 0x7FFFFFFF, -0x80000000)


def mutate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """One to four random edits of ``data`` (``other`` is a splice partner)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:  # set a byte to a boundary value
            buf[rng.randrange(len(buf))] = rng.choice((0, 0x7F, 0x80, 0xFF))
        elif op == 2 and len(buf) >= 4:  # overwrite an int16/int32 with a boundary
            fmt = rng.choice((">h", ">i"))
            size = struct.calcsize(fmt)
            i = rng.randrange(len(buf) - size + 1)
            value = rng.choice(_BOUNDARY_INTS)
            lo, hi = (
                (-(1 << 15), (1 << 15) - 1)
                if fmt == ">h"
                else (-(1 << 31), (1 << 31) - 1)
            )
            buf[i : i + size] = struct.pack(fmt, max(lo, min(hi, value)))
        elif op == 3:  # truncate
            del buf[pos:]
        elif op == 4:  # insert random bytes
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 5 and buf:  # duplicate a chunk
            i = rng.randrange(len(buf))
            j = min(len(buf), i + rng.randint(1, 64))
            buf[pos:pos] = buf[i:j]
        elif op == 6 and buf:  # delete a chunk
            i = rng.randrange(len(buf))
            del buf[i : i + rng.randint(1, 16)]
        elif op == 7 and other:  # splice with another entry
            cut = rng.randrange(len(other) + 1)
            buf = buf[:pos] + bytearray(other[cut:])
    return bytes(buf)
