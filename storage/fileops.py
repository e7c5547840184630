"""The injectable file-operations seam: every syscall storage makes goes through here.

:class:`FileOps` calls the real OS. Tests pass a subclass that raises ``OSError``
(ENOSPC on write, EIO on fsync, ...) at chosen moments, so fault handling is tested
without a full disk. Callers translate ``OSError`` into :class:`StorageIOError`.
:class:`DelegatingFileOps` forwards every call to another FileOps, for wrappers that
change only a few of them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
from collections.abc import Callable, Sequence
from typing import TypeAlias, cast

_SYNC_FILE_RANGE_WRITE = 2

Buffer: TypeAlias = bytes | bytearray | memoryview


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return cast("Callable[[int, int, int, int], int]", fn)


_sync_file_range = _load_sync_file_range()


class FileOps:
    """Thin wrappers over ``os``; override any method to inject faults."""

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        """Open ``path``; returns a file descriptor (O_CLOEXEC is always added)."""
        return os.open(path, flags | os.O_CLOEXEC, mode)

    def close(self, fd: int) -> None:
        """Close a file descriptor."""
        os.close(fd)

    def dup(self, fd: int) -> int:
        """Duplicate a descriptor (sync works on a dup so a racing close is harmless)."""
        return os.dup(fd)

    def pwrite(self, fd: int, data: Buffer, offset: int) -> int:
        """Write at ``offset``; may write fewer bytes than asked."""
        return os.pwrite(fd, data, offset)

    def pwritev(self, fd: int, buffers: Sequence[Buffer], offset: int) -> int:
        """Gather-write ``buffers`` at ``offset``; may write fewer bytes than asked."""
        return os.pwritev(fd, buffers, offset)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        """Read up to ``size`` bytes at ``offset``."""
        return os.pread(fd, size, offset)

    def fsync(self, fd: int) -> None:
        """Flush a file's data and metadata to stable storage."""
        os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        """Flush a file's data (and the size) to stable storage."""
        os.fdatasync(fd)

    def start_writeback(self, fd: int) -> None:
        """Start writing a file's dirty pages back without waiting for it (Linux
        ``sync_file_range(SYNC_FILE_RANGE_WRITE)``; elsewhere nothing).

        Unlike fsync it forces no journal commit and blocks nobody else: a bulk
        writer calls it as it goes so its final fsync has little left to do.
        """
        if _sync_file_range is not None:
            _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)

    def fsync_dir(self, path: str) -> None:
        """Flush a directory's entries (new, renamed or removed files)."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        """Cut a file to ``size`` bytes."""
        os.ftruncate(fd, size)

    def fstat_size(self, fd: int) -> int:
        """Current size of an open file."""
        return os.fstat(fd).st_size

    def replace(self, src: str, dst: str) -> None:
        """Atomically rename ``src`` over ``dst``."""
        os.replace(src, dst)

    def unlink(self, path: str) -> None:
        """Remove a file."""
        os.unlink(path)

    def link(self, src: str, dst: str) -> None:
        """Hard-link ``src`` as ``dst``."""
        os.link(src, dst)

    def makedirs(self, path: str) -> None:
        """Create a directory and its parents (no error if it exists)."""
        os.makedirs(path, exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        """Names in a directory."""
        return os.listdir(path)

    def rmtree(self, path: str) -> None:
        """Remove a directory tree (best effort if it vanished meanwhile)."""
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(path)

    def write_file_atomic(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        """Write ``data`` to ``path`` via ``path.tmp``: write, fsync, rename, fsync dir.

        ``mode`` is the new file's permission bits (0o600 for secrets).
        """
        tmp = path + ".tmp"
        fd = self.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data)
            done = 0
            while done < len(view):
                done += self.pwrite(fd, view[done:], done)
            self.fsync(fd)
        finally:
            self.close(fd)
        self.replace(tmp, path)
        self.fsync_dir(os.path.dirname(path) or ".")


DEFAULT_FILEOPS = FileOps()


class DelegatingFileOps(FileOps):
    """A FileOps that forwards every call to ``inner``: the base of wrappers that
    change a few calls (the broker's free-space guard, test fault injection)."""

    def __init__(self, inner: FileOps = DEFAULT_FILEOPS) -> None:
        self.inner = inner

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return self.inner.open(path, flags, mode)

    def close(self, fd: int) -> None:
        self.inner.close(fd)

    def dup(self, fd: int) -> int:
        return self.inner.dup(fd)

    def pwrite(self, fd: int, data: Buffer, offset: int) -> int:
        return self.inner.pwrite(fd, data, offset)

    def pwritev(self, fd: int, buffers: Sequence[Buffer], offset: int) -> int:
        return self.inner.pwritev(fd, buffers, offset)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return self.inner.pread(fd, size, offset)

    def fsync(self, fd: int) -> None:
        self.inner.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        self.inner.fdatasync(fd)

    def start_writeback(self, fd: int) -> None:
        self.inner.start_writeback(fd)

    def fsync_dir(self, path: str) -> None:
        self.inner.fsync_dir(path)

    def ftruncate(self, fd: int, size: int) -> None:
        self.inner.ftruncate(fd, size)

    def fstat_size(self, fd: int) -> int:
        return self.inner.fstat_size(fd)

    def replace(self, src: str, dst: str) -> None:
        self.inner.replace(src, dst)

    def unlink(self, path: str) -> None:
        self.inner.unlink(path)

    def link(self, src: str, dst: str) -> None:
        self.inner.link(src, dst)

    def makedirs(self, path: str) -> None:
        self.inner.makedirs(path)

    def listdir(self, path: str) -> list[str]:
        return self.inner.listdir(path)

    def rmtree(self, path: str) -> None:
        self.inner.rmtree(path)
