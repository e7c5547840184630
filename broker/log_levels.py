"""The broker's named loggers and their levels, changeable while it runs (KIP-412).

Every logger the broker creates is named (``structlog.get_logger("broker.topics")``);
the names form a dotted hierarchy under ``root``. A logger's effective level is its
own level if one is set, else its nearest named ancestor's (``broker.cluster`` for
``broker.cluster.etcd``, then ``broker``), else root's. Levels are Kafka's names
(TRACE, DEBUG, INFO, WARN, ERROR, FATAL, OFF), kept in memory only: Kafka does not
persist logger levels either, and a restart starts from ``--log-level``.

Each name has one :class:`Threshold` cell, shared by every logger of that name and
updated in place when a level changes, so the filtering bound logger of
:mod:`broker.logging` decides with one comparison and cached loggers follow changes.
"""

from __future__ import annotations

import logging
from typing import Final

ROOT: Final = "root"

# Kafka's level names (log4j's) and the stdlib numbers they filter at; OFF is above
# every level the broker logs at. TRACE shows what DEBUG shows (we log no trace).
LEVELS: Final = {
    "TRACE": 5,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "FATAL": logging.CRITICAL,
    "OFF": logging.CRITICAL + 10,
}
# ``--log-level`` names -> Kafka's
FROM_CLI: Final = {
    "debug": "DEBUG",
    "info": "INFO",
    "warning": "WARN",
    "error": "ERROR",
    "critical": "FATAL",
}

# The loggers the broker's modules create (tests keep this list complete); their
# ancestors (``broker``, ``broker.cluster``) are loggers too.
LOGGERS: Final = (
    "broker.admin",
    "broker.cleaner",
    "broker.cluster.acls",
    "broker.cluster.cache",
    "broker.cluster.configs",
    "broker.cluster.controller",
    "broker.cluster.etcd",
    "broker.cluster.scram",
    "broker.cluster.service",
    "broker.configs",
    "broker.connection",
    "broker.context",
    "broker.diskguard",
    "broker.durability",
    "broker.faults",
    "broker.fdlimits",
    "broker.groups",
    "broker.listener",
    "broker.produce",
    "broker.producers",
    "broker.replication",
    "broker.security",
    "broker.server",
    "broker.snapshot_scheduler",
    "broker.snapshots",
    "broker.topics",
    "broker.transactions",
)


class Threshold:
    """The lowest level a logger of one name logs at (a stdlib number)."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


def _ancestors(name: str) -> list[str]:
    """``a.b.c`` -> ``["a.b", "a"]``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


class LoggerLevels:
    """Own levels by logger name, and the threshold cells that follow them."""

    def __init__(self, root: str = "INFO") -> None:
        self._own: dict[str, str] = {ROOT: root}
        self._cells: dict[str, Threshold] = {}
        self._names: set[str] = {ROOT}
        for name in LOGGERS:
            self._add(name)

    def _add(self, name: str) -> None:
        self._names.add(name)
        self._names.update(_ancestors(name))

    def threshold(self, name: str) -> Threshold:
        """The cell of logger ``name`` (created, and the name listed, on first use)."""
        cell = self._cells.get(name)
        if cell is None:
            if name != ROOT:
                self._add(name)
            cell = self._cells[name] = Threshold(LEVELS[self.effective(name)])
        return cell

    def names(self) -> list[str]:
        """Every logger, by name."""
        return sorted(self._names)

    def exists(self, name: str) -> bool:
        return name in self._names

    def effective(self, name: str) -> str:
        """A logger's level: its own, else its nearest ancestor's, else root's."""
        for candidate in (name, *_ancestors(name)):
            if candidate in self._own:
                return self._own[candidate]
        return self._own[ROOT]

    def levels(self) -> dict[str, str]:
        """Every logger's effective level, by name."""
        return {name: self.effective(name) for name in self.names()}

    def set(self, name: str, level: str) -> None:
        """Give ``name`` its own ``level`` (one of :data:`LEVELS`)."""
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r}")
        if name != ROOT:
            self._add(name)
        self._own[name] = level
        self._refresh()

    def unset(self, name: str) -> None:
        """Drop ``name``'s own level: it follows its ancestors again (not root)."""
        if name == ROOT:
            raise ValueError("the root logger always has a level")
        self._own.pop(name, None)
        self._refresh()

    def reset(self, root: str) -> None:
        """Forget every own level; root logs at ``root``."""
        self._own = {ROOT: root}
        self._refresh()

    def _refresh(self) -> None:
        for name, cell in self._cells.items():
            cell.value = LEVELS[self.effective(name)]


# One per process, as structlog's configuration is.
loggers: Final = LoggerLevels()
