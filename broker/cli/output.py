"""How CLI commands print: rich tables on a terminal, plain columns in pipes, JSON.

``--format json`` prints one JSON document per command (streaming commands such as
``topic produce`` / ``topic consume`` print one JSON object per line), with a stable
shape: the keys a command prints are always present, ``null`` when unknown.
Bytes (record keys, values, header values) are shown as text with escapes in text
output (``\\xNN`` for bytes that are not printable UTF-8, ``\\n``, ``\\t``, ``\\\\``),
and in JSON as a string plus its encoding (``"utf-8"`` or ``"base64"``).

Errors: :func:`run_command` turns a :class:`~broker.client.errors.ClientError` (and
the OS errors a person can act on) into one line on stderr and exit status 1; with
``--debug`` the traceback is shown instead.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, ParamSpec, TypeVar

import click
from rich import box
from rich.console import Console
from rich.table import Table

from broker.cli.settings import current_settings
from broker.client.errors import ClientError
from broker.client.types import ConsumedRecord

P = ParamSpec("P")
T = TypeVar("T")

JsonValue = Any

_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def options(ctx: click.Context | None = None) -> tuple[str, str, str, bool]:
    """The global (brokers, admin_url, format, debug) of the running command.

    Brokers and admin URL are resolved from flags, environment and profile
    (:func:`broker.cli.settings.current_settings`).
    """
    ctx = ctx or click.get_current_context()
    settings = current_settings(ctx)
    return settings.brokers, settings.admin_url, _format(ctx), debug_enabled(ctx)


def _format(ctx: click.Context | None = None) -> str:
    ctx = ctx or click.get_current_context()
    return str(getattr(ctx.find_root().obj, "format", "text"))


def debug_enabled(ctx: click.Context | None = None) -> bool:
    ctx = ctx or click.get_current_context()
    return bool(getattr(ctx.find_root().obj, "debug", False))


def is_json(ctx: click.Context | None = None) -> bool:
    """Whether ``--format json`` was given."""
    return _format(ctx) == "json"


def run_command(func: Callable[P, T]) -> Callable[P, T]:
    """Decorate a click callback: client errors become one line and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except BrokenPipeError:
            # The reader went away (``| head``): stop quietly, as cat does.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise SystemExit(0) from None
        except (ClientError, OSError) as exc:
            if debug_enabled():
                raise
            message = str(exc) if isinstance(exc, ClientError) else _os_error(exc)
            click.echo(f"error: {message}", err=True)
            raise SystemExit(1) from None
        except KeyboardInterrupt:
            raise SystemExit(130) from None

    return wrapper


def _os_error(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or type(exc).__name__}{where}"


# -- bytes -----------------------------------------------------------------------------


def escape_bytes(data: bytes | None, *, null: str = "") -> str:
    """Bytes as one line of text: UTF-8 where valid and printable, escapes otherwise.

    Invalid UTF-8 bytes and ASCII control characters become ``\\xNN``; newline,
    carriage return, tab and backslash become ``\\n``, ``\\r``, ``\\t``,
    ``\\\\``; other unprintable characters become ``\\uNNNN``. The escaping is
    reversible, so distinct values always print differently.
    """
    if data is None:
        return null
    # surrogateescape maps each undecodable byte b to the lone surrogate U+DC00+b.
    text = data.decode("utf-8", errors="surrogateescape")
    if "\\" not in text and text.isprintable():
        return text
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def json_bytes(data: bytes | None) -> tuple[str | None, str | None]:
    """``(text, encoding)`` for JSON: UTF-8 text, else base64; (None, None) for null."""
    if data is None:
        return None, None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def record_json(record: ConsumedRecord) -> dict[str, JsonValue]:
    """The stable JSON shape of a consumed record."""
    key, key_encoding = json_bytes(record.key)
    value, value_encoding = json_bytes(record.value)
    headers = []
    for name, raw in record.headers:
        hv, he = json_bytes(raw)
        headers.append({"key": name, "value": hv, "value_encoding": he})
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": key,
        "key_encoding": key_encoding,
        "value": value,
        "value_encoding": value_encoding,
        "headers": headers,
    }


# -- record templates --------------------------------------------------------------

_TEMPLATE: Final = re.compile(r"%[tpokvhdT%]|\\[nrt\\]")


def format_record(template: str, record: ConsumedRecord) -> str:
    """Render ``record`` with a ``%``-template (rpk/kcat style).

    ``%t`` topic, ``%p`` partition, ``%o`` offset, ``%k`` key, ``%v`` value,
    ``%h`` headers (``k=v,k2=v2``), ``%d`` timestamp (ms), ``%T`` timestamp
    (ISO 8601), ``%%`` a percent sign; ``\\n``, ``\\r``, ``\\t``, ``\\\\`` escapes.
    Null keys and values print as nothing.
    """

    def sub(m: re.Match[str]) -> str:
        token = m.group(0)
        match token:
            case "%t":
                return record.topic
            case "%p":
                return str(record.partition)
            case "%o":
                return str(record.offset)
            case "%k":
                return escape_bytes(record.key)
            case "%v":
                return escape_bytes(record.value)
            case "%h":
                return ",".join(f"{k}={escape_bytes(v)}" for k, v in record.headers)
            case "%d":
                return str(record.timestamp)
            case "%T":
                return _iso(record.timestamp)
            case "%%":
                return "%"
            case "\\n":
                return "\n"
            case "\\r":
                return "\r"
            case "\\t":
                return "\t"
            case _:
                return "\\"

    return _TEMPLATE.sub(sub, template)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


# -- human units (tables only; JSON keeps raw numbers) ---------------------------------

_SIZE_UNITS: Final = ("KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(n: object) -> str | None:
    """Bytes as ``512 B``, ``1.5 KiB``, ``12.0 MiB``; None/non-numbers pass through."""
    if not isinstance(n, int | float) or isinstance(n, bool):
        return None if n is None else str(n)
    if abs(n) < 1024:
        return f"{int(n)} B"
    value = float(n)
    for unit in _SIZE_UNITS:
        value /= 1024
        if abs(value) < 1024 or unit == _SIZE_UNITS[-1]:
            return f"{value:.1f} {unit}"
    return f"{value:.1f} {_SIZE_UNITS[-1]}"  # pragma: no cover (loop returns)


def human_time(ms: object) -> str | None:
    """Milliseconds since the epoch as ``YYYY-MM-DD HH:MM:SSZ`` (UTC); 0/None as None."""
    if not isinstance(ms, int | float) or isinstance(ms, bool) or ms <= 0:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# -- printing ---------------------------------------------------------------------------


def echo_json(data: JsonValue, *, compact: bool = False) -> None:
    """Print one JSON document (sorted keys, so the shape is stable)."""
    if compact:
        click.echo(json.dumps(data, sort_keys=True, separators=(",", ":")))
    else:
        click.echo(json.dumps(data, sort_keys=True, indent=2))


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    title: str | None = None,
) -> None:
    """A table: rich with borders on a terminal, aligned plain columns otherwise."""
    cells = [["-" if cell is None else str(cell) for cell in row] for row in rows]
    if sys.stdout.isatty():
        table = Table(title=title, box=box.ROUNDED, header_style="bold")
        for column in columns:
            table.add_column(column)
        for row in cells:
            table.add_row(*row)
        Console().print(table)
        return
    # Pipes get rpk-style columns: upper-case header, two spaces, no trailing blanks.
    lines = [[c.upper() for c in columns], *cells]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    if title:
        click.echo(title)
    for line in lines:
        click.echo(
            "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        )


def print_pairs(pairs: Iterable[tuple[str, object]]) -> None:
    """``key  value`` lines, aligned."""
    items = [(k, "-" if v is None else str(v)) for k, v in pairs]
    width = max((len(k) for k, _ in items), default=0)
    for k, v in items:
        click.echo(f"{k.ljust(width)}  {v}")
