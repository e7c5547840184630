"""The storage seam: the one place the broker builds the FileOps its logs use.

:func:`storage_fileops` wraps the real system calls in the free-space guard
(:mod:`broker.disk.guard`). When ``AILURUS_FAULTS`` is set (tests only) the guard
wraps the fault injector of :mod:`broker.disk.faults` instead; this module is the
only way the broker reaches it.
"""

from __future__ import annotations

from broker.disk.faults import faulty_fileops_from_env
from broker.disk.guard import DiskGuard, GuardedFileOps
from storage.fileops import DEFAULT_FILEOPS, FileOps


def storage_fileops(data_dir: str, min_free_bytes: int) -> tuple[FileOps, DiskGuard]:
    """The FileOps the broker hands to LogManager, and its guard.

    The guard wraps the real FileOps, or the test-only fault injector of
    :mod:`broker.disk.faults` when ``AILURUS_FAULTS`` is set.
    """
    inner = faulty_fileops_from_env() or DEFAULT_FILEOPS
    guard = DiskGuard(data_dir, min_free_bytes)
    return GuardedFileOps(guard, inner), guard
