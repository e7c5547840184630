"""Per-logger levels (:mod:`broker.log_levels`) and the bound logger that filters by
them (:mod:`broker.logging`), without a broker: the hierarchy against a model, the
list of loggers against the source, and events written or dropped as levels change.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from broker.log_levels import LEVELS, LOGGERS, ROOT, LoggerLevels, loggers
from broker.logging import LevelFilteringBoundLogger, NamedLogger
from tests._broker import ROOT as REPO

_NAMES = ["a", "a.b", "a.b.c", "a.d", "e"]
_OPS = st.lists(
    st.tuples(
        st.sampled_from([ROOT, *_NAMES]),
        st.sampled_from([None, *LEVELS]),  # None: unset
    ),
    max_size=20,
)


def _model(own: dict[str, str], name: str) -> str:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in own:
            return own[candidate]
    return own[ROOT]


@given(_OPS)
def test_effective_levels_follow_the_nearest_own_level(
    ops: list[tuple[str, str | None]],
) -> None:
    """After any sets and unsets, every logger and every cell is at the level of
    its nearest ancestor (itself included) that has one, else root's."""
    levels = LoggerLevels()
    cells = {name: levels.threshold(name) for name in _NAMES[:2]}
    own = {ROOT: "INFO"}
    for name, level in ops:
        if level is None:
            if name == ROOT:
                with pytest.raises(ValueError, match="root"):
                    levels.unset(name)
                continue
            levels.unset(name)
            own.pop(name, None)
        else:
            levels.set(name, level)
            own[name] = level
        cells.setdefault(name, levels.threshold(name))
    for name in _NAMES:
        assert levels.effective(name) == _model(own, name)
    for name, cell in cells.items():
        assert cell.value == LEVELS[_model(own, name)]
    assert {"a", "a.b", ROOT} <= set(levels.names())


def test_every_logger_the_broker_creates_is_listed() -> None:
    """Each ``structlog.get_logger("broker...")`` name in the source is in LOGGERS,
    so DescribeConfigs lists it before its first event."""
    pattern = re.compile(r"structlog\.get_logger\(\"(broker[.\w]*)\"\)")
    used = {
        m.group(1)
        for path in (REPO / "broker").rglob("*.py")
        for m in pattern.finditer(path.read_text())
    }
    assert used
    assert used <= set(LOGGERS)
    assert LoggerLevels().names()[:3] == ["broker", "broker.admin", "broker.cleaner"]


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    yield buffer
    loggers.reset("INFO")


def _logger(out: io.StringIO, name: str) -> LevelFilteringBoundLogger:
    return LevelFilteringBoundLogger(
        NamedLogger(out, name),
        [structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        {},
    )


def _events(out: io.StringIO) -> list[tuple[str, str]]:
    return [
        (e["event"], e["level"]) for e in map(json.loads, out.getvalue().splitlines())
    ]


def test_a_bound_logger_follows_level_changes(out: io.StringIO) -> None:
    """A logger made before a change filters at the new level at once, bound
    copies too; other loggers keep root's level."""
    loggers.reset("INFO")
    log = _logger(out, "broker.topics").bind(topic="t")
    other = _logger(out, "broker.groups")
    log.debug("hidden")
    log.info("shown")
    loggers.set("broker.topics", "DEBUG")
    log.debug("now_shown")
    other.debug("still_hidden")
    loggers.set("broker", "OFF")
    log.critical("topics_has_its_own")
    other.critical("silenced")
    loggers.unset("broker.topics")
    log.error("silenced_too")
    loggers.set("broker", "WARN")
    log.warning("warned %s", "x")
    assert _events(out) == [
        ("shown", "info"),
        ("now_shown", "debug"),
        ("topics_has_its_own", "critical"),
        ("warned x", "warning"),
    ]
    assert log.is_enabled_for(30)
    assert not log.is_enabled_for(20)


def test_a_logger_of_another_factory_filters_at_roots_level(out: io.StringIO) -> None:
    """A plain write logger (a command that swaps the factory) follows root."""
    log = LevelFilteringBoundLogger(
        structlog.WriteLogger(out), [structlog.processors.JSONRenderer()], {}
    )
    loggers.reset("WARN")
    log.info("hidden")
    log.warning("shown")
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == [
        "shown"
    ]
