"""Reading a snapshot's files safely: entries, ``meta.json`` bytes, segment files.

Everything under a snapshot directory may be hostile or half-copied. Entries are
checked before they are opened (:func:`check_entry`: no symlink out of the data dir,
no device, FIFO or socket, UTF-8 names), files are opened non-blocking and read with
a cap, and segment files are read in runs of whole, checked batches
(:func:`iter_chunks`), plain or as stored compressed. The format itself (layout,
``meta.json``, names, errors) is :mod:`storage.snapshot_meta`.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from typing import Final

import cramjam
import crc32c as _crc32c

from protocol.records import (
    BATCH_HEADER_SIZE,
    LOG_OVERHEAD,
    BatchHeader,
    CorruptBatch,
    read_header,
    verify_batch,
)
from storage.snapshot_meta import (
    CODECS,
    MAX_META_BYTES,
    META_FILE,
    SEGMENT_RE,
    SegmentMeta,
    SnapshotIncomplete,
    SnapshotInvalid,
    is_utf8_name,
)

MAX_BATCH_BYTES: Final = 128 * 1024 * 1024
_CHUNK: Final = 2 * 1024 * 1024


def _inside(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def check_entry(path: str, root: str, *, directory: bool = False) -> os.stat_result:
    """stat ``path`` after checking it is safe to read: not a symlink leading out of
    ``root`` (the data dir, real path), a regular file (or a directory).

    Raises:
        SnapshotIncomplete: it does not exist (yet).
        SnapshotInvalid: symlink out of the data dir, device, FIFO, socket...
    """
    name = os.path.basename(path)
    if not is_utf8_name(name):
        raise SnapshotInvalid("non-utf8-name", repr(name))
    try:
        lst = os.lstat(path)
    except FileNotFoundError as exc:
        raise SnapshotIncomplete("missing-file", name) from exc
    except OSError as exc:
        raise SnapshotInvalid("unreadable", f"{name}: {exc.strerror}") from exc
    if stat.S_ISLNK(lst.st_mode) and not _inside(path, root):
        raise SnapshotInvalid("symlink-outside-data-dir", name)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise SnapshotInvalid("dangling-symlink", name) from exc
    want = stat.S_ISDIR if directory else stat.S_ISREG
    if not want(st.st_mode):
        raise SnapshotInvalid("not-a-regular-file", name)
    return st


def read_meta_bytes(snapshot_dir: str, root: str) -> bytes:
    """Read ``meta.json`` safely (capped at :data:`MAX_META_BYTES`, never blocking)."""
    path = os.path.join(snapshot_dir, META_FILE)
    st = check_entry(path, root)
    if st.st_size > MAX_META_BYTES:
        raise SnapshotInvalid("meta-too-large", f"{st.st_size} bytes")
    return read_capped(path, MAX_META_BYTES + 1)


def read_capped(path: str, cap: int) -> bytes:
    """Read at most ``cap`` bytes of a regular file without blocking on a FIFO."""
    fd = _open_regular(path)
    try:
        data = os.read(fd, cap)
    finally:
        os.close(fd)
    if len(data) >= cap:
        raise SnapshotInvalid("meta-too-large", f"over {cap - 1} bytes")
    return data


def open_segment(path: str, root: str) -> int:
    """Open a snapshot file for reading after :func:`check_entry` (returns an fd)."""
    check_entry(path, root)
    return _open_regular(path)


def _open_regular(path: str) -> int:
    """Open ``path`` read-only without blocking on a FIFO; refuse anything but a
    regular file (the descriptor is closed then)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise SnapshotIncomplete(
            "unreadable", f"{os.path.basename(path)}: {exc.strerror}"
        ) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SnapshotInvalid("not-a-regular-file", os.path.basename(path))
    return fd


def list_segment_files(snapshot_dir: str, compression: str) -> tuple[SegmentMeta, ...]:
    """The segment files beside a minimal ``meta.json``, by base offset."""
    found = []
    for name in os.listdir(snapshot_dir):
        m = SEGMENT_RE.match(name) if is_utf8_name(name) else None
        if m is not None and (m.group(2) or "") == CODECS[compression]:
            found.append(SegmentMeta(file=name, base_offset=int(m.group(1))))
    if not found:
        raise SnapshotIncomplete("no-segments", "no segment files yet")
    return tuple(sorted(found, key=lambda s: s.base_offset))


# -- reading segment files ---------------------------------------------------------


def file_crc32c(fd: int) -> tuple[int, int]:
    """(size, crc32c) of a file's bytes."""
    crc = 0
    pos = 0
    buf = bytearray(_CHUNK)
    while n := os.preadv(fd, [buf], pos):
        crc = _crc32c.crc32c(memoryview(buf)[:n], crc)
        pos += n
        pause()
    return pos, crc


def decompress_file(data: bytes, compression: str) -> bytes:
    """Undo a snapshot's file compression (``none`` returns ``data``).

    Raises:
        SnapshotInvalid: the bytes do not decode.
    """
    try:
        match compression:
            case "none":
                return data
            case "zstd":
                return bytes(cramjam.zstd.decompress(data))
            case "gzip":
                return bytes(cramjam.gzip.decompress(data))
            case "lz4":
                return bytes(cramjam.lz4.decompress(data))
    except cramjam.DecompressionError as exc:
        raise SnapshotInvalid("bad-compression", str(exc)[:200]) from exc
    raise SnapshotInvalid("bad-meta", f"unknown compression {compression!r}")


def compress_file(data: bytes | memoryview, compression: str) -> bytes:
    """Compress a segment file's bytes as stored in a snapshot."""
    match compression:
        case "zstd":
            return bytes(cramjam.zstd.compress(data))
        case "gzip":
            return bytes(cramjam.gzip.compress(data))
        case "lz4":
            return bytes(cramjam.lz4.compress(data))
    return bytes(data)


def iter_chunks(
    fd: int, compression: str, *, verify: bool, chunk_bytes: int = _CHUNK
) -> Iterator[tuple[memoryview, list[tuple[int, BatchHeader]]]]:
    """Yield runs of whole batches of a segment file: (bytes, [(pos, header)]).

    Positions are relative to the yielded view. ``verify`` checks every batch (CRC,
    magic, lengths, counts). A trailing partial batch is an error.

    Raises:
        SnapshotInvalid: a damaged batch, a batch over 128 MiB or a torn tail.
    """
    if compression != "none":
        stored = _read_all(fd)
        yield from _split(
            memoryview(decompress_file(stored, compression)), verify, final=True
        )
        return
    buf = bytearray(chunk_bytes)
    pos = 0
    while True:
        view = memoryview(buf)
        n = os.preadv(fd, [view], pos)
        if n == 0:
            return
        data = view[:n]
        batches = list(_split_partial(data, verify))
        used = batches[-1][0] + batches[-1][1].size if batches else 0
        if used:
            # The view is reused: callers finish with it before asking for more.
            yield data[:used], batches
            pos += used
            pause()
            continue
        if n < len(buf):
            raise SnapshotInvalid("torn-batch", f"{n} bytes after the last batch")
        need = read_length(data[:LOG_OVERHEAD])
        if need > MAX_BATCH_BYTES or need <= len(buf):
            raise SnapshotInvalid("corrupt-batch", f"batch size {need} at {pos}")
        buf = bytearray(need)  # one batch larger than the buffer


def pause() -> None:
    """Let other threads (the broker's event loop) take the GIL between chunks."""
    time.sleep(0)


def read_length(buf: bytes | memoryview) -> int:
    """Whole size of the batch starting ``buf`` (LOG_OVERHEAD included)."""
    return int.from_bytes(buf[8:12], "big", signed=True) + LOG_OVERHEAD


def _read_all(fd: int) -> bytes:
    parts = []
    pos = 0
    while chunk := os.pread(fd, _CHUNK, pos):
        parts.append(chunk)
        pos += len(chunk)
    return b"".join(parts)


def _check(view: memoryview, pos: int, verify: bool) -> BatchHeader:
    try:
        header = verify_batch(view, pos) if verify else read_header(view, pos)
    except CorruptBatch as exc:
        raise SnapshotInvalid("corrupt-batch", str(exc)) from exc
    if header.magic != 2 or header.batch_length < BATCH_HEADER_SIZE - LOG_OVERHEAD:
        raise SnapshotInvalid("corrupt-batch", f"not a v2 batch at {pos}")
    return header


def _split_partial(view: memoryview, verify: bool) -> Iterator[tuple[int, BatchHeader]]:
    pos = 0
    end = len(view)
    while end - pos >= BATCH_HEADER_SIZE:
        size = read_length(view[pos : pos + LOG_OVERHEAD])
        if size > MAX_BATCH_BYTES or size < BATCH_HEADER_SIZE:
            raise SnapshotInvalid("corrupt-batch", f"batch size {size} at {pos}")
        if pos + size > end:
            return
        yield pos, _check(view, pos, verify)
        pos += size


def _split(
    view: memoryview, verify: bool, *, final: bool
) -> Iterator[tuple[memoryview, list[tuple[int, BatchHeader]]]]:
    batches = list(_split_partial(view, verify))
    used = batches[-1][0] + batches[-1][1].size if batches else 0
    if final and used != len(view):
        raise SnapshotInvalid(
            "torn-batch", f"{len(view) - used} bytes after the last batch"
        )
    # Hand out runs of about _CHUNK bytes so appends interleave with producers.
    start = 0
    run: list[tuple[int, BatchHeader]] = []
    for pos, header in batches:
        if run and pos + header.size - start > _CHUNK:
            yield view[start:pos], [(p - start, h) for p, h in run]
            start, run = pos, []
        run.append((pos, header))
    if run:
        yield view[start:used], [(p - start, h) for p, h in run]
