"""Compares our message schemas with kio's generated ones, for tests/protocol/test_schemas_*.

Owns the kio-oracle machinery both schema test files share: finding our class and
kio's for a module, kind and version, listing the (module, kind, version) cases kio
covers, and listing every difference between our fields at a version and kio's
dataclass fields: names in order (``_ms`` stripped, as kio drops it), wire types,
tags, nullability, array-ness and Kafka's non-zero defaults, recursing into nested
structures.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import types
import typing
from collections.abc import Iterator, Mapping

from protocol.schema import FieldSpec, FieldType, field_specs, message_spec

# kio's wire-type names that differ from Kafka's for the same bytes.
KIO_TYPES = {
    "error_code": "int16",
    "timedelta_i32": "int32",
    "timedelta_i64": "int64",
    "datetime_i64": "int64",
}

# kio types every uuid as ``UUID | None`` (None for the zero UUID) and every
# timestamp as ``datetime | None`` (None for -1); neither is null on the wire.
_SENTINEL_TYPES = ("uuid", "datetime_i64")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class KioOracle:
    """Our message classes and kio's, by module name and kind (0 request, 1 response)."""

    names: Mapping[str, tuple[str, str]]  # module -> (request class, response class)

    def ours(self, mod: str, kind: int) -> type:
        module = importlib.import_module(f"protocol.messages.{mod}")
        cls = getattr(module, self.names[mod][kind])
        assert isinstance(cls, type)
        return cls

    def kio(self, mod: str, version: int, kind: int) -> type | None:
        """kio's class for this version, or None where kio lacks the version."""
        part = ("request", "response")[kind]
        try:
            module = importlib.import_module(f"kio.schema.{mod}.v{version}.{part}")
        except ModuleNotFoundError:
            return None
        cls = getattr(module, self.names[mod][kind])
        assert isinstance(cls, type)
        return cls

    def cases(self) -> list[tuple[str, int, int]]:
        """Every (module, kind, version) we declare and kio has."""
        return [
            (mod, kind, version)
            for mod in self.names
            for kind in (0, 1)
            for version in _versions(self.ours(mod, kind))
            if self.kio(mod, version, kind) is not None
        ]

    def check_fields(self, mod: str, kind: int, version: int) -> None:
        """Assert our fields at ``version`` are kio's (see ``differences``)."""
        ours = self.ours(mod, kind)
        kio = self.kio(mod, version, kind)
        assert kio is not None
        assert list(differences(ours, kio, version, ours.__name__)) == []

    def check_flexibility(self, mod: str, kind: int, version: int) -> None:
        """Assert ``version`` is flexible in our schema exactly when kio says so."""
        kio = self.kio(mod, version, kind)
        assert kio is not None
        spec = message_spec(self.ours(mod, kind))
        assert (version in spec.flexible) == kio.__flexible__  # type: ignore[attr-defined]


def present(cls: type, version: int) -> list[tuple[str, FieldSpec]]:
    """Our fields of ``cls`` that exist in ``version``, in order."""
    return [(n, s) for n, s in field_specs(cls) if version in s.versions]


def default(cls: type, name: str) -> object:
    """The default of our field ``name`` (a default factory called)."""
    fld = {fl.name: fl for fl in dataclasses.fields(cls)}[name]
    if fld.default is not dataclasses.MISSING:
        return fld.default
    assert fld.default_factory is not dataclasses.MISSING
    return fld.default_factory()


def differences(ours: type, kio: type, version: int, path: str) -> Iterator[str]:
    """Yield every difference between our struct at ``version`` and kio's."""
    mine = present(ours, version)
    theirs = dataclasses.fields(kio)
    hints = typing.get_type_hints(kio)
    our_names = [_strip_ms(n) for n, _ in mine]
    kio_names = [_strip_ms(fl.name) for fl in theirs]
    if our_names != kio_names:
        yield f"{path} v{version}: fields {our_names} != kio {kio_names}"
        return
    for (name, spec), kfl in zip(mine, theirs, strict=True):
        where = f"{path}.{name} v{version}"
        yield from _field_differences(spec, kfl, hints[kfl.name], version, where)
        if spec.type.name not in ("array", "struct", "uuid"):
            yield from _default_differences(default(ours, name), kfl, where)


def _versions(cls: type) -> range:
    valid = message_spec(cls).valid
    return range(valid.low, valid.high + 1)


def _strip_ms(name: str) -> str:
    return name.removesuffix("_ms")


def _unwrap(hint: object) -> tuple[object, bool]:
    """A kio annotation without its ``| None``, and whether it had one."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        assert len(args) == 1, hint
        return args[0], True
    return hint, False


def _default_differences(
    ours: object, kfl: dataclasses.Field[object], where: str
) -> Iterator[str]:
    """Kafka's defaults (-1, 0x7fffffff, true...) are kio's, and a non-zero default
    of ours must come from Kafka's JSON, which kio shows."""
    theirs: object = kfl.default
    if isinstance(theirs, datetime.timedelta):
        theirs = theirs // datetime.timedelta(milliseconds=1)
    if theirs is dataclasses.MISSING:
        if ours not in (0, "", b"", None):
            yield f"{where}: default {ours!r}, but kio has none"
        return
    if kfl.metadata.get("kafka_type") == "datetime_i64":
        return  # kio's None stands for -1
    if ours != theirs:
        yield f"{where}: default {ours!r} != kio {theirs!r}"


def _field_differences(
    spec: FieldSpec,
    kfl: dataclasses.Field[object],
    hint: object,
    version: int,
    where: str,
) -> Iterator[str]:
    kio_tag = kfl.metadata.get("tag")
    our_tag = spec.tag if version in spec.tagged else None
    if our_tag != kio_tag:
        yield f"{where}: tag {our_tag} != kio {kio_tag}"
    t: FieldType[object] = spec.type
    inner, kio_nullable = _unwrap(hint)
    sentinel = kfl.metadata.get("kafka_type") in _SENTINEL_TYPES
    if not sentinel and (version in t.nullable) != kio_nullable:
        yield f"{where}: nullable {version in t.nullable} != kio {kio_nullable}"
    is_array = typing.get_origin(inner) is tuple
    if (t.name == "array") != is_array:
        yield f"{where}: array-ness differs from kio {hint}"
    element = t.of if t.name == "array" else t
    assert element is not None
    if element.name == "struct":
        assert element.struct is not None
        nested = typing.get_args(inner)[0] if is_array else inner
        if not isinstance(nested, type) or not dataclasses.is_dataclass(nested):
            yield f"{where}: struct, but kio has {hint}"
            return
        yield from differences(element.struct, nested, version, where)
        return
    kio_type = kfl.metadata.get("kafka_type")
    kio_type = KIO_TYPES.get(str(kio_type), kio_type)
    if element.name != kio_type:
        yield f"{where}: type {element.name} != kio {kio_type}"
