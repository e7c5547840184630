"""The snapshot watcher's settings, taken from the broker config.

``--set snapshot.scan.interval.ms=`` (how often data/snapshots is rescanned besides
inotify events), ``snapshot.settle.ms`` (files untouched this long count as settled)
and ``snapshot.ingest.bytes.per.sec`` (0 = unlimited), or
``AILURUS_SNAPSHOT_SCAN_INTERVAL_MS`` etc.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.config import BrokerConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotSettings:
    """Watcher settings, taken from the broker config."""

    scan_interval_s: float = 5.0
    settle_s: float = 2.0
    ingest_bytes_per_s: int = 0  # 0: unlimited

    @classmethod
    def from_config(cls, config: BrokerConfig) -> SnapshotSettings:
        """``snapshot.scan.interval.ms``, ``snapshot.settle.ms``, ``...bytes.per.sec``."""
        return cls(
            scan_interval_s=config.snapshot_scan_interval_ms / 1000,
            settle_s=config.snapshot_settle_ms / 1000,
            ingest_bytes_per_s=config.snapshot_ingest_bytes_per_sec,
        )
