"""File descriptors: the process limit and the storage limits derived from it.

At start the broker raises its soft ``RLIMIT_NOFILE`` to the hard limit (the most an
unprivileged process may), as Kafka's and Redpanda's service units ask for a high
limit. Storage then gets two limits out of that descriptor budget, unless set:

- ``ailurus.max.open.segment.files``: segment descriptors held open at once, an LRU
  shared by all partitions (``storage.fd_cache``); idle partitions hold none;
- ``ailurus.max.partitions``: partitions of all topics together; creates beyond it
  are refused with POLICY_VIOLATION.

The budget is the limit less a reserve for connections (``max.connections``, at
most half the limit) and a fixed allowance for everything else (listeners, logs,
group and offset stores, snapshot work). A cached segment may hold two descriptors
(its file and its read mapping), so the cache gets a quarter of the budget; the
partition cap is the budget itself (one hot segment per partition at most).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Final

import structlog

from broker.config import BrokerConfig

log = structlog.get_logger("broker.fdlimits")

OTHER_DESCRIPTORS: Final = 256
MIN_BUDGET: Final = 128
_NR_OPEN: Final = "/proc/sys/fs/nr_open"


@dataclass(frozen=True, slots=True, kw_only=True)
class NofileLimit:
    """The descriptor limit before and after raising it."""

    soft_before: int
    soft: int
    hard: int
    error: str | None = None  # why it could not be raised

    def log(self) -> None:
        """Log what was done (called once start-up checks passed: a broker that
        cannot start prints one line and nothing else)."""
        if self.error is not None:
            log.warning(
                "nofile_limit_not_raised",
                soft=self.soft_before,
                hard=_show(self.hard),
                error=self.error,
            )
        log.info(
            "nofile_limit",
            soft_before=self.soft_before,
            soft=self.soft,
            hard=_show(self.hard),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageLimits:
    """The storage limits in force (configured, or derived from the budget)."""

    max_partitions: int
    max_open_segment_files: int


def raise_nofile_limit() -> NofileLimit:
    """Raise the soft descriptor limit to the hard one; what it became (not logged
    here: :meth:`NofileLimit.log`)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        target = _nr_open()  # the kernel refuses "unlimited" descriptors
    new, error = soft, None
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            new = target
        except (ValueError, OSError) as e:
            error = str(e)
    return NofileLimit(soft_before=soft, soft=new, hard=hard, error=error)


def current_nofile() -> int:
    """The soft descriptor limit now (a large number when unlimited)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return _nr_open() if soft == resource.RLIM_INFINITY else soft


def storage_limits(config: BrokerConfig, nofile: int) -> StorageLimits:
    """The partition cap and segment-descriptor cache size for ``nofile``
    descriptors, each unless the configuration sets it."""
    reserve = min(config.max_connections, nofile // 2) + OTHER_DESCRIPTORS
    budget = max(nofile - reserve, MIN_BUDGET)
    return StorageLimits(
        max_partitions=config.max_partitions or budget,
        max_open_segment_files=config.max_open_segment_files or max(budget // 4, 16),
    )


def _nr_open() -> int:
    try:
        with open(_NR_OPEN) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 1 << 20


def _show(value: int) -> int | str:
    return "unlimited" if value == resource.RLIM_INFINITY else value
