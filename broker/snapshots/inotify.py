"""A minimal inotify binding (ctypes; Linux) for the snapshot watcher.

Only "something changed under these directories" matters: the watcher rescans on any
event and also rescans periodically, because inotify misses events (``cp -r`` creates
subdirectories before a watch on them exists). Where inotify is unavailable,
:meth:`Inotify.open` returns None and the periodic rescan does the work alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from collections.abc import Iterable

_IN_MASK = (
    0x00000002  # IN_MODIFY
    | 0x00000004  # IN_ATTRIB
    | 0x00000008  # IN_CLOSE_WRITE
    | 0x00000040  # IN_MOVED_FROM
    | 0x00000080  # IN_MOVED_TO
    | 0x00000100  # IN_CREATE
    | 0x00000200  # IN_DELETE
    | 0x00000400  # IN_DELETE_SELF
)
_IN_NONBLOCK_CLOEXEC = 0o4000 | 0o2000000


class Inotify:
    """A non-blocking inotify descriptor; ``None`` from :meth:`open` where unsupported."""

    def __init__(self, libc: ctypes.CDLL, fd: int) -> None:
        self._libc = libc
        self.fd = fd
        self._watched: set[str] = set()

    @classmethod
    def open(cls) -> Inotify | None:
        name = ctypes.util.find_library("c")
        if name is None:
            return None
        try:
            libc = ctypes.CDLL(name, use_errno=True)
            fd = libc.inotify_init1(_IN_NONBLOCK_CLOEXEC)
        except (OSError, AttributeError):
            return None
        return None if fd < 0 else cls(libc, fd)

    def watch(self, paths: Iterable[str]) -> None:
        for path in paths:
            if path in self._watched:
                continue
            wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), _IN_MASK)
            if wd >= 0:
                self._watched.add(path)

    def forget(self) -> None:
        """Re-add every watch on the next :meth:`watch` (directories come and go)."""
        self._watched.clear()

    def drain(self) -> bool:
        got = False
        while True:
            try:
                data = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                return got
            if not data:
                return got
            got = True
            pos = 0
            while pos + 16 <= len(data):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", data, pos)
                if mask & 0x8000:  # IN_IGNORED: a watched dir went away
                    self.forget()
                pos += 16 + length

    def close(self) -> None:
        os.close(self.fd)
