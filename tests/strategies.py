"""Shared Hypothesis strategies derived from the message schemas.

``messages(cls, version)`` builds valid instances of any schema dataclass for one
version: fields the version lacks keep their defaults, null appears only where the
field is nullable in that version, records are random bytes.
"""

from __future__ import annotations

import dataclasses
from functools import cache

from hypothesis import strategies as st

from protocol.schema import FieldType, field_specs

_INTS: dict[str, tuple[int, int]] = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "varint": (-(2**31), 2**31 - 1),
    "varlong": (-(2**63), 2**63 - 1),
}

_TEXT = st.text(max_size=12)


def _value(
    t: FieldType[object], version: int, nullable: bool
) -> st.SearchStrategy[object]:
    name = t.name
    base: st.SearchStrategy[object]
    if name in _INTS:
        low, high = _INTS[name]
        base = st.integers(low, high)
    elif name == "bool":
        base = st.booleans()
    elif name == "float64":
        base = st.floats(allow_nan=False)
    elif name == "uuid":
        base = st.binary(min_size=16, max_size=16)
    elif name == "string":
        base = _TEXT
    elif name in ("bytes", "records"):
        base = st.binary(max_size=24)
    elif name == "struct":
        assert t.struct is not None
        base = st.deferred(lambda: messages(t.struct, version))  # type: ignore[arg-type]
    elif name == "array":
        assert t.of is not None
        base = st.lists(_value(t.of, version, False), max_size=3).map(tuple)
    else:
        raise TypeError(f"no strategy for wire type {name!r}")
    return st.none() | base if nullable else base


@cache
def messages(cls: type, version: int) -> st.SearchStrategy[object]:
    """Valid instances of schema class ``cls`` as laid out in ``version``."""
    kwargs = {}
    for fld, (name, spec) in zip(
        dataclasses.fields(cls), field_specs(cls), strict=True
    ):
        assert fld.name == name
        if version not in spec.versions:
            continue
        kwargs[name] = _value(spec.type, version, version in spec.type.nullable)
    return st.builds(cls, **kwargs)
