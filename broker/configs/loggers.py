"""BROKER_LOGGER config resources (type 8, KIP-412): the broker's loggers and levels.

The resource is named by a broker id, and a broker answers for its own id only (an
admin client sends the request to the broker it names), as Kafka's
``RuntimeLoggerManager`` and ``ConfigHelper`` do. DescribeConfigs lists every logger
of :mod:`broker.log_levels` with its effective level (source
DYNAMIC_BROKER_LOGGER_CONFIG, writable, no synonyms). IncrementalAlterConfigs SET
gives a logger its own level (Kafka's names: TRACE, DEBUG, INFO, WARN, ERROR, FATAL,
OFF) and DELETE drops it, so the logger follows its ancestors again (root's level
unless an ancestor has one); all changes are checked before any is applied, and
none is persisted. Refusals: an empty, non-numeric or other broker id, APPEND or
SUBTRACT, DELETE of ``root`` -> INVALID_REQUEST; an unknown logger or level ->
INVALID_CONFIG. AlterConfigs does not serve this resource type (nor does Kafka's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import structlog

from broker.configs.describe import Entry
from broker.configs.ops import DELETE, OP_NAMES, SET, Change, ConfigRefused
from broker.log_levels import LEVELS, ROOT, loggers
from protocol.error_codes import ErrorCode

log = structlog.get_logger("broker.configs")

DYNAMIC_BROKER_LOGGER: Final = 6  # DescribeConfigs ConfigSource
_VALID = ", ".join(sorted(LEVELS))


def check_broker_id(name: str, node_id: int) -> None:
    """Refuse a BROKER_LOGGER resource that does not name this broker.

    Raises:
        ConfigRefused: INVALID_REQUEST.
    """
    if name == "":
        raise ConfigRefused(ErrorCode.INVALID_REQUEST, "Broker id must not be empty")
    try:
        requested = int(name)
    except ValueError:
        raise ConfigRefused(
            ErrorCode.INVALID_REQUEST, f"Node id must be an integer, but it is: {name}"
        ) from None
    if requested != node_id:
        raise ConfigRefused(
            ErrorCode.INVALID_REQUEST,
            f"Unexpected broker id, expected {node_id} but received {name}",
        )


def logger_entries() -> list[Entry]:
    """Every logger of this broker with its effective level, by name."""
    return [
        Entry(
            name=name,
            value=level,
            source=DYNAMIC_BROKER_LOGGER,
            read_only=False,
            sensitive=False,
            synonyms=(),
            config_type=0,  # Kafka leaves a logger's type UNKNOWN
        )
        for name, level in loggers.levels().items()
    ]


def _check(c: Change) -> None:
    if c.op not in (SET, DELETE):
        if c.op in OP_NAMES:
            message = f"{OP_NAMES[c.op]} operation is not allowed for the BROKER_LOGGER"
        else:
            message = (
                f"Unknown operation type {c.op} is not allowed for the BROKER_LOGGER"
            )
        raise ConfigRefused(ErrorCode.INVALID_REQUEST, message + " resource")
    if not loggers.exists(c.name):
        raise ConfigRefused(
            ErrorCode.INVALID_CONFIG, f"Logger {c.name} does not exist!"
        )
    if c.op == DELETE:
        if c.name == ROOT:
            raise ConfigRefused(
                ErrorCode.INVALID_REQUEST,
                f"Removing the log level of the {ROOT} logger is not allowed",
            )
        return
    if c.value is None:
        raise ConfigRefused(
            ErrorCode.INVALID_REQUEST, f"Null value not supported for : {c.name}"
        )
    if c.value not in LEVELS:
        raise ConfigRefused(
            ErrorCode.INVALID_CONFIG,
            f"Cannot set the log level of {c.name} to {c.value} as it is not a "
            f"supported log level. Valid log levels are {_VALID}",
        )


def alter_loggers(
    name: str, node_id: int, changes: Sequence[Change], *, validate_only: bool
) -> None:
    """Check every change to this broker's loggers, then (unless ``validate_only``)
    apply them in order.

    Raises:
        ConfigRefused: a change is refused (nothing was changed).
    """
    check_broker_id(name, node_id)
    if len({c.name for c in changes}) != len(changes):
        raise ConfigRefused(
            ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys"
        )
    for c in changes:
        _check(c)
    if validate_only:
        return
    for c in changes:
        if c.op == SET:
            assert c.value is not None  # checked above
            loggers.set(c.name, c.value)
            # WARN, as Kafka does, so the change shows whatever root's level is
            log.warning("logger_level_set", logger=c.name, level=c.value)
        else:
            loggers.unset(c.name)
            log.warning(
                "logger_level_unset", logger=c.name, level=loggers.effective(c.name)
            )
