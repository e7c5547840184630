"""The edit semantics of AlterConfigs and IncrementalAlterConfigs, pure.

AlterConfigs replaces a resource's whole set of dynamic configs with the request's.
IncrementalAlterConfigs (KIP-339) edits it key by key: SET (0) replaces a value,
DELETE (1) removes the override (the key falls back to its default), APPEND (2) and
SUBTRACT (3) add list items that are not there yet and remove the ones given, on
list-type keys only, starting from the key's current value (its override, else its
effective default), as Kafka's ``ConfigAdminManager.prepareIncrementalConfigs``
does. Errors carry Kafka's codes and messages.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from protocol.error_codes import ErrorCode

SET: Final = 0
DELETE: Final = 1
APPEND: Final = 2
SUBTRACT: Final = 3
OP_NAMES: Final = {SET: "SET", DELETE: "DELETE", APPEND: "APPEND", SUBTRACT: "SUBTRACT"}

# A resource's change as a function of its configs as stored: the new configs (it
# raises ConfigRefused to refuse). Stores run it on what they hold, again if that
# moved on meanwhile (a compare-and-set in cluster mode).
Edit = Callable[[Mapping[str, str]], dict[str, str]]


class ConfigRefused(Exception):
    """A resource's change is refused: Kafka's error code and message."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Change:
    """One config of a request: its name, operation and value."""

    name: str
    op: int
    value: str | None


def split_list(value: str | None) -> list[str]:
    """A LIST config's items (empty items dropped, order kept)."""
    if not value:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]


def replace_all(changes: Sequence[Change]) -> dict[str, str]:
    """AlterConfigs: the new set of overrides is exactly the request's.

    Raises:
        ConfigRefused: a key given twice, or a null value (INVALID_REQUEST).
    """
    _check_duplicates(changes)
    out: dict[str, str] = {}
    for c in changes:
        if c.value is None:
            raise ConfigRefused(
                ErrorCode.INVALID_REQUEST, f"Null value not supported for : {c.name}"
            )
        out[c.name] = c.value
    return out


def apply_incremental(
    current: Mapping[str, str],
    changes: Sequence[Change],
    *,
    is_list: Callable[[str], bool],
    default_of: Callable[[str], str | None],
) -> dict[str, str]:
    """IncrementalAlterConfigs: ``current`` overrides edited by ``changes``, in order.

    ``default_of(name)`` is what a key is worth without an override (APPEND and
    SUBTRACT start from it).

    Raises:
        ConfigRefused: a key given twice, an unknown operation or a null value
            (INVALID_REQUEST); APPEND/SUBTRACT on a key that is not a list
            (INVALID_CONFIG).
    """
    _check_duplicates(changes)
    out = dict(current)
    for c in changes:
        if c.op not in OP_NAMES:
            raise ConfigRefused(
                ErrorCode.INVALID_REQUEST, f"Unknown operation type {c.op}"
            )
        if c.op == DELETE:
            out.pop(c.name, None)
            continue
        if c.value is None:
            raise ConfigRefused(
                ErrorCode.INVALID_REQUEST, f"Null value not supported for : {c.name}"
            )
        if c.op == SET:
            out[c.name] = c.value
            continue
        if not is_list(c.name):
            raise ConfigRefused(
                ErrorCode.INVALID_CONFIG,
                f"Can't {OP_NAMES[c.op]} to key {c.name} because its type is not LIST.",
            )
        old = split_list(out[c.name] if c.name in out else default_of(c.name))
        given = split_list(c.value)
        if c.op == APPEND:
            new = old + [item for item in dict.fromkeys(given) if item not in old]
        else:
            new = [item for item in old if item not in given]
        out[c.name] = ",".join(new)
    return out


def _check_duplicates(changes: Sequence[Change]) -> None:
    counts = Counter(c.name for c in changes)
    if any(n > 1 for n in counts.values()):
        raise ConfigRefused(
            ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys"
        )
