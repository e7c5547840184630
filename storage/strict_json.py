"""A JSON reader for files users hand us (snapshot ``meta.json`` and side files).

Python's ``json`` accepts things no file of ours holds and some that cost a lot to
parse: ``NaN``/``Infinity``, duplicate keys (the last one silently wins), integers
thousands of digits long, UTF-16 input, and nesting deep enough to end in a
``RecursionError``. :func:`loads` refuses all of them with :class:`JsonRejected`, a
final verdict, and keeps :class:`JsonSyntax` for text that does not parse (which,
for a file still being copied, may only mean "not finished yet").
"""

from __future__ import annotations

import json
from typing import Final

# Far above any int64, so the fields' own range checks name the field; far below
# the length where int() gets slow.
MAX_NUMBER_CHARS: Final = 100


class JsonRejected(Exception):
    """The bytes are complete JSON (or not JSON at all) but not acceptable."""


class JsonSyntax(Exception):
    """The text does not parse as JSON (it may be cut short)."""


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JsonRejected(f"duplicate key {key[:100]!r}")
            seen.add(key)
    return obj


def _int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise JsonRejected(f"a number of {len(text)} digits")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise JsonRejected(f"a number of {len(text)} characters")
    return float(text)


def _constant(text: str) -> object:
    raise JsonRejected(f"{text} is not a JSON number")


def loads(data: bytes) -> object:
    """Parse UTF-8 JSON bytes strictly.

    Raises:
        JsonRejected: not UTF-8, NaN/Infinity, a duplicate key, a number over
            100 characters, or nesting too deep to parse.
        JsonSyntax: not JSON (or cut short).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonRejected(f"not UTF-8 at byte {exc.start}") from exc
    try:
        return json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
        )
    except RecursionError as exc:
        raise JsonRejected("nested too deeply") from exc
    except json.JSONDecodeError as exc:
        raise JsonSyntax(str(exc)[:200]) from exc
    except ValueError as exc:  # int() past Python's digit limit, float() overflow
        raise JsonRejected(str(exc)[:200]) from exc
