"""Start-up failures: one line that names the setting to change, and an exit code.

Everything that can stop ``ailurus serve`` from starting (a bad setting, unreadable
TLS files, the data dir, a taken port) is checked before the first log line and
before recovery runs, and raised as a :class:`StartupError`; the CLI prints its
message as ``error: ...`` on stderr and exits with its code (a traceback only with
``--debug``).

Exit codes of ``ailurus serve``:

    0  stopped by SIGTERM/SIGINT
    1  any other start-up failure
    2  bad configuration: a flag, AILURUS_* variable, config file value or TLS file
    3  a listen address cannot be bound (already in use, not local, privileged)
    4  the data dir is locked by another broker
    5  the data dir cannot be opened (permission denied, not a directory, ...)
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Final

from storage.errors import DataDirLocked
from storage.lock import DataDirLock

EXIT_FAILURE: Final = 1
EXIT_CONFIG: Final = 2
EXIT_ADDRESS: Final = 3
EXIT_LOCKED: Final = 4
EXIT_DATA_DIR: Final = 5

EXIT_CODES_HELP: Final = (
    "Exit codes: 0 stopped by a signal, 1 other start-up failure, 2 bad "
    "configuration (flag, variable, config file, TLS files), 3 a listen address "
    "cannot be bound (in use), 4 data dir locked by another broker, 5 data dir "
    "cannot be opened (permissions)."
)

DATA_DIR_SETTING: Final = "--data-dir / AILURUS_DATA_DIR"
KAFKA_ADDR_SETTING: Final = "--kafka-addr / AILURUS_KAFKA_ADDR"
ADMIN_ADDR_SETTING: Final = (
    "--admin-addr / AILURUS_ADMIN_ADDR, or 'none' to turn the admin API off"
)


class StartupError(Exception):
    """The broker cannot start; the message is one line naming what to change."""

    def __init__(self, message: str, *, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def bind_error(
    address: str, exc: OSError, *, setting: str, what: str = ""
) -> StartupError:
    """The error for a listener that cannot bind ``address`` (``host:port``)."""
    where = f"{what} {address}" if what else address
    if exc.errno == errno.EADDRINUSE:
        text = f"{where} is already in use"
    else:
        text = f"cannot listen on {where}: {_reason(exc)}"
    return StartupError(f"{text} (change {setting})", exit_code=EXIT_ADDRESS)


def data_dir_error(path: Path | str, exc: OSError) -> StartupError:
    """The error for a data dir the process cannot create, open or write."""
    reason = _reason(exc)
    if exc.filename:
        reason = f"{reason} on {exc.filename}"
    hint = (
        "give this user write access to it, or change"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
        else "change"
    )
    return StartupError(
        f"cannot use data dir {path}: {reason} ({hint} {DATA_DIR_SETTING})",
        exit_code=EXIT_DATA_DIR,
    )


def check_readable(path: Path, setting: str) -> None:
    """Raise a configuration :class:`StartupError` if ``path`` cannot be read."""
    try:
        with path.open("rb"):
            pass
    except OSError as e:
        raise StartupError(
            f"cannot read {path}: {_reason(e)} (change {setting})",
            exit_code=EXIT_CONFIG,
        ) from e


def lock_data_dir(path: Path) -> DataDirLock:
    """Create the data dir if needed and take its lock, or raise :class:`StartupError`."""
    if path.exists() and not path.is_dir():
        raise StartupError(
            f"data dir {path} is not a directory (change {DATA_DIR_SETTING})",
            exit_code=EXIT_DATA_DIR,
        )
    try:
        return DataDirLock(str(path))
    except DataDirLocked as e:
        holder = "another process" if e.pid is None else f"another broker (pid {e.pid})"
        raise StartupError(
            f"data dir {path} is locked by {holder} "
            f"(stop it, or change {DATA_DIR_SETTING})",
            exit_code=EXIT_LOCKED,
        ) from e
    except OSError as e:
        raise data_dir_error(path, e) from e


def _reason(exc: OSError) -> str:
    """The OS's short reason, e.g. ``permission denied`` (not uvloop's long text)."""
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno).lower()
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def find_startup_error(group: BaseExceptionGroup[BaseException]) -> StartupError | None:
    """The first :class:`StartupError` in ``group``, however deeply nested."""
    for exc in group.exceptions:
        if isinstance(exc, StartupError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = find_startup_error(exc)
            if found is not None:
                return found
    return None
