"""The group coordinator's settings, from the broker config (Kafka's names)."""

from __future__ import annotations

from dataclasses import dataclass

from broker.config import BrokerConfig
from broker.groups.offsets import DEFAULT_METADATA_MAX_BYTES, DEFAULT_RETENTION_MS


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupConfig:
    """Group settings (Kafka names in comments)."""

    initial_rebalance_delay_ms: int = (
        0  # group.initial.rebalance.delay.ms (Kafka: 3000)
    )
    min_session_timeout_ms: int = 1_000  # group.min.session.timeout.ms (Kafka: 6000)
    max_session_timeout_ms: int = 1_800_000  # group.max.session.timeout.ms
    offsets_retention_ms: int = DEFAULT_RETENTION_MS  # offsets.retention.minutes
    offset_metadata_max_bytes: int = (
        DEFAULT_METADATA_MAX_BYTES  # offset.metadata.max.bytes
    )
    retention_check_interval_ms: int = 600_000  # offsets.retention.check.interval.ms

    @classmethod
    def from_config(cls, config: BrokerConfig) -> GroupConfig:
        """The group settings of the broker config (unset ones keep the defaults)."""
        given = {
            "initial_rebalance_delay_ms": config.initial_rebalance_delay_ms,
            "min_session_timeout_ms": config.min_session_timeout_ms,
            "max_session_timeout_ms": config.max_session_timeout_ms,
            "offsets_retention_ms": None
            if config.offsets_retention_minutes is None
            else config.offsets_retention_minutes * 60_000,
            "offset_metadata_max_bytes": config.offset_metadata_max_bytes,
            "retention_check_interval_ms": config.retention_check_interval_ms,
        }
        return cls(**{k: v for k, v in given.items() if v is not None})
