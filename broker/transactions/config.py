"""The transaction coordinator's settings, and its test hook."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Test hook: a broker started with this variable set to a file's path exits (status
# 86) right after writing a PrepareCommit, before any marker, if that file exists;
# it deletes the file first, so that of several brokers sharing the path one crashes
# once. Tests check that a restart (or a new coordinator) completes the transaction.
# Never set in production.
CRASH_AFTER_PREPARE_ENV = "AILURUS_TEST_CRASH_AFTER_PREPARE"
CRASH_EXIT_STATUS = 86


def take_crash_flag(flag: Path) -> bool:
    """Whether the test hook fires now: ``flag`` existed (and is now deleted)."""
    try:
        flag.unlink()
    except FileNotFoundError:
        return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnConfig:
    """The coordinator's settings (Kafka's names)."""

    max_timeout_ms: int = 900_000  # transaction.max.timeout.ms
    log_partitions: int = 1  # transaction.state.log.num.partitions
    # transaction.abort.timed.out.transaction.cleanup.interval.ms
    abort_interval_ms: int = 10_000
    # transactional.id.expiration.ms: an id idle this long is removed (7 days)
    id_expiration_ms: int = 604_800_000
    # transaction.remove.expired.transaction.cleanup.interval.ms
    remove_expired_interval_ms: int = 3_600_000
    crash_after_prepare: Path | None = None  # the test hook's flag file
