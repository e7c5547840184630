"""Test-only fault injection for a broker subprocess: failing writes and fsyncs.

**Never set this in production.** When the environment variable ``AILURUS_FAULTS``
names a JSON file, the broker wraps its storage :class:`~storage.fileops.FileOps`
in :class:`FaultyFileOps`, which re-reads that file whenever it changes and makes
the listed operations on the listed partitions fail with the listed errno::

    {"faults": [{"partition": "orders/1", "op": "fsync", "errno": "EIO"},
                {"partition": "orders/2", "op": "write", "errno": "ENOSPC"}]}

``partition`` is ``<topic>/<index>`` (matched against the partition's directory,
``<data_dir>/kafka/<topic>/<index>/``); ``op`` is ``write`` (``pwrite``/``pwritev``
of any file of the partition) or ``fsync`` (``fsync``/``fdatasync`` of its files
and of its directory). An empty list, or no file, means no faults, so a test arms
and disarms faults on a running broker by rewriting the file (write a temporary file
and rename it over, so the broker never reads half a file). It is how
``tests/reliability`` checks that an EIO takes exactly one partition offline.
"""

from __future__ import annotations

import errno as errno_mod
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from storage.fileops import DEFAULT_FILEOPS, Buffer, DelegatingFileOps, FileOps

log = structlog.get_logger("broker.faults")

ENV_VAR = "AILURUS_FAULTS"
OPS = ("write", "fsync")


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One armed fault: ``op`` on files of ``partition`` fails with ``errno``."""

    partition: str
    op: str
    errno: int


def parse_faults(data: bytes) -> tuple[Fault, ...]:
    """Parse the fault file; raises ValueError when malformed."""
    obj = json.loads(data or b"{}")
    if not isinstance(obj, dict) or not isinstance(obj.get("faults", []), list):
        raise ValueError("fault file must be {'faults': [...]}")
    out = []
    for item in obj.get("faults", []):
        if not isinstance(item, dict):
            raise ValueError(f"bad fault {item!r}")
        part, op, name = item.get("partition"), item.get("op"), item.get("errno", "EIO")
        if not isinstance(part, str) or op not in OPS or not isinstance(name, str):
            raise ValueError(f"bad fault {item!r}")
        code = getattr(errno_mod, name, None)
        if not isinstance(code, int):
            raise ValueError(f"unknown errno {name!r}")
        out.append(Fault(partition=part.strip("/"), op=str(op), errno=code))
    return tuple(out)


class FaultyFileOps(DelegatingFileOps):
    """Fails the armed operations; everything else goes to ``inner``."""

    def __init__(self, spec_path: str, inner: FileOps = DEFAULT_FILEOPS) -> None:
        super().__init__(inner)
        self.spec_path = spec_path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._faults: tuple[Fault, ...] = ()
        self._paths: dict[int, str] = {}

    def _current(self) -> tuple[Fault, ...]:
        try:
            st = os.stat(self.spec_path)
            stamp = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp == self._stamp:
                return self._faults
            faults: tuple[Fault, ...] = ()
            if stamp is not None:
                try:
                    with open(self.spec_path, "rb") as f:
                        faults = parse_faults(f.read())
                except (OSError, ValueError) as e:
                    log.error("fault_file_invalid", path=self.spec_path, error=str(e))
            self._stamp, self._faults = stamp, faults
            log.warning(
                "faults_armed",
                faults=[
                    f"{f.op}:{f.partition}:{errno_mod.errorcode[f.errno]}"
                    for f in faults
                ],
            )
            return faults

    def _maybe_fail(self, op: str, path: str | None) -> None:
        if path is None:
            return
        wrapped = "/" + path.strip("/") + "/"
        for fault in self._current():
            if fault.op == op and f"/{fault.partition}/" in wrapped:
                log.warning("fault_injected", op=op, path=path, errno=fault.errno)
                raise OSError(fault.errno, f"injected {op} fault", path)

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        fd = self.inner.open(path, flags, mode)
        self._paths[fd] = path
        return fd

    def close(self, fd: int) -> None:
        self._paths.pop(fd, None)
        self.inner.close(fd)

    def dup(self, fd: int) -> int:
        new = self.inner.dup(fd)
        path = self._paths.get(fd)
        if path is not None:
            self._paths[new] = path
        return new

    def pwrite(self, fd: int, data: Buffer, offset: int) -> int:
        self._maybe_fail("write", self._paths.get(fd))
        return self.inner.pwrite(fd, data, offset)

    def pwritev(self, fd: int, buffers: Sequence[Buffer], offset: int) -> int:
        self._maybe_fail("write", self._paths.get(fd))
        return self.inner.pwritev(fd, buffers, offset)

    def fsync(self, fd: int) -> None:
        self._maybe_fail("fsync", self._paths.get(fd))
        self.inner.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        self._maybe_fail("fsync", self._paths.get(fd))
        self.inner.fdatasync(fd)

    def fsync_dir(self, path: str) -> None:
        self._maybe_fail("fsync", path)
        self.inner.fsync_dir(path)


def faulty_fileops_from_env(inner: FileOps = DEFAULT_FILEOPS) -> FileOps | None:
    """A :class:`FaultyFileOps` when ``AILURUS_FAULTS`` is set (test-only), else None."""
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return None
    log.warning(
        "fault_injection_enabled", path=spec, note="test-only; never in production"
    )
    return FaultyFileOps(spec, inner)
