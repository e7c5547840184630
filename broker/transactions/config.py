"""The transaction coordinator's settings, and its test hook."""

from __future__ import annotations

from dataclasses import dataclass

# Test hook: a broker started with this variable set to 1 exits (status 86) right
# after writing a PrepareCommit, before any marker, so that tests can check that a
# restart completes the transaction. Never set in production.
CRASH_AFTER_PREPARE_ENV = "AILURUS_TEST_CRASH_AFTER_PREPARE"
CRASH_EXIT_STATUS = 86


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnConfig:
    """The coordinator's settings (Kafka's names)."""

    max_timeout_ms: int = 900_000  # transaction.max.timeout.ms
    log_partitions: int = 1  # transaction.state.log.num.partitions
    # transaction.abort.timed.out.transaction.cleanup.interval.ms
    abort_interval_ms: int = 10_000
    crash_after_prepare: bool = False  # the test hook above
