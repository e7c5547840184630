"""structlog setup for the broker process: console renderer on a TTY, JSON lines otherwise.

Events are snake_case names with key-value context (``log.info("listening",
listener="default", host=..., port=...)``). Output goes to stderr, one line per event,
so tests that start the broker as a subprocess can read ``listening`` events from it.

Levels are per named logger and change while the broker runs (DescribeConfigs and
IncrementalAlterConfigs on BROKER_LOGGER resources, see :mod:`broker.log_levels`):
the logger factory hands each logger its name's threshold cell and
:class:`LevelFilteringBoundLogger` compares an event's level with it, one attribute
read per call, where structlog's own filtering bound logger fixes one level at
configuration time.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import structlog

from broker.log_levels import FROM_CLI, ROOT, Threshold, loggers

_DEBUG, _INFO, _WARNING = logging.DEBUG, logging.INFO, logging.WARNING
_ERROR, _CRITICAL = logging.ERROR, logging.CRITICAL
_NAMES = {
    _DEBUG: "debug",
    _INFO: "info",
    _WARNING: "warning",
    _ERROR: "error",
    _CRITICAL: "critical",
}


class NamedLogger(structlog.WriteLogger):
    """A structlog write logger that knows its name and its level cell."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name
        self.threshold = loggers.threshold(name)


class _NamedLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> NamedLogger:
        name = args[0] if args and isinstance(args[0], str) else ROOT
        return NamedLogger(self._file, name)


def _format(event: str, args: tuple[Any, ...]) -> str:
    if not args:
        return event
    if len(args) == 1 and isinstance(args[0], dict) and args[0]:
        return event % args[0]
    return event % args


class LevelFilteringBoundLogger(structlog.BoundLoggerBase):
    """structlog's filtering bound logger API, filtering at its logger's live level.

    Loggers of another factory (a command that swaps it) filter at root's level.
    """

    def __init__(self, logger: Any, processors: Iterable[Any], context: Any) -> None:
        super().__init__(logger, processors, context)
        cell = getattr(logger, "threshold", None)
        self._threshold: Threshold = (
            cell if isinstance(cell, Threshold) else loggers.threshold(ROOT)
        )

    def _emit(self, level: int, event: str, args: tuple[Any, ...], kw: Any) -> Any:
        if level < self._threshold.value:
            return None
        return self._proxy_to_logger(_NAMES[level], _format(event, args), **kw)

    def debug(self, event: str, *args: Any, **kw: Any) -> Any:
        if self._threshold.value > _DEBUG:
            return None
        return self._emit(_DEBUG, event, args, kw)

    def info(self, event: str, *args: Any, **kw: Any) -> Any:
        if self._threshold.value > _INFO:
            return None
        return self._emit(_INFO, event, args, kw)

    def warning(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._emit(_WARNING, event, args, kw)

    def error(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._emit(_ERROR, event, args, kw)

    def critical(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._emit(_CRITICAL, event, args, kw)

    def exception(self, event: str, *args: Any, **kw: Any) -> Any:
        kw.setdefault("exc_info", True)
        return self._emit(_ERROR, event, args, kw)

    def log(self, level: int, event: str, *args: Any, **kw: Any) -> Any:
        return self._emit(level if level in _NAMES else _INFO, event, args, kw)

    warn = warning
    fatal = critical
    msg = info

    def is_enabled_for(self, level: int) -> bool:
        return level >= self._threshold.value

    def get_effective_level(self) -> int:
        return self._threshold.value


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog globally; every logger's own level is forgotten.

    Args:
        level: root's level: debug, info, warning, error or critical.
        fmt: ``console``, ``json`` or ``auto`` (console when stderr is a TTY).
    """
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "console":
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    else:
        processors += [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    loggers.reset(FROM_CLI.get(level, "INFO"))
    structlog.configure(
        processors=processors,
        wrapper_class=LevelFilteringBoundLogger,
        logger_factory=_NamedLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
