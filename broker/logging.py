"""structlog setup for the broker process: console renderer on a TTY, JSON lines otherwise.

Events are snake_case names with key-value context (``log.info("listening",
listener="default", host=..., port=...)``). Output goes to stderr, one line per event,
so tests that start the broker as a subprocess can read ``listening`` events from it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog globally.

    Args:
        level: debug, info, warning, error or critical.
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
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            _LEVELS.get(level, logging.INFO)
        ),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
