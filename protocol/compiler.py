"""The codec compiler: schema dataclasses in, specialised Python functions out.

For each (struct or message class, version, flexibility) it generates the source of
one decoder and one encoder and ``exec``s it once, on first use, cached (as attrs and
dataclasses build ``__init__``), so the hot path never interprets a schema:

* runs of fixed-size fields, plus the int16/int32 length prefix of a classic string,
  bytes or array that follows them, are one precomputed ``struct.Struct``;
* decoders read a ``memoryview`` with ``unpack_from`` (no slicing copies); strings
  decode straight from a slice; ``records`` stay a zero-copy slice of the frame;
* encoders append to a ``bytearray`` and hand large record buffers over untouched:
  an encoder is ``enc(obj, out, parts) -> out`` and, on a records field, moves ``out``
  into ``parts``, appends the record buffers, and goes on in a fresh bytearray;
* flexible versions end every struct with a tagged-field section: known tags decode
  into their fields, unknown tags are skipped; a tagged field is written only when it
  differs from its default, in ascending tag order.

Generated decoders raise ``struct.error``/``IndexError``/``ValueError`` (see
``DECODE_FAILURES``) besides :class:`DecodeError` on bad input, and encoders
``ENCODE_FAILURES`` on bad values; :mod:`protocol.codec` turns them into
:class:`DecodeError` / :class:`EncodeError` at its entry points.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from typing import Final, cast

from protocol import primitives
from protocol.errors import DecodeError, EncodeError
from protocol.schema import Buffer, FieldSpec, FieldType, field_specs, message_spec

Decoder = Callable[[memoryview, int], tuple[object, int]]
Encoder = Callable[[object, bytearray, list[Buffer]], bytearray]

_FIXED: Final = {
    "bool": "?",
    "int8": "b",
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "float64": "d",
    "uuid": "16s",
}
# Array elements packed with struct directly ("?" would pack None as False and
# "16s" would pad a short uuid, so those are written one by one with checks).
_PACKED_ELEMENTS: Final = frozenset(
    ("int8", "int16", "uint16", "int32", "uint32", "int64", "float64")
)
_LENGTH_CODE: Final = {"string": "h", "bytes": "i", "records": "i", "array": "i"}
# What malformed input makes the generated decoders raise, besides DecodeError.
DECODE_FAILURES: Final = (struct.error, IndexError, ValueError)
# What an invalid value makes the generated encoders raise, besides EncodeError.
ENCODE_FAILURES: Final = (
    struct.error,
    TypeError,
    AttributeError,
    ValueError,
    OverflowError,
)


# --------------------------------------------------------------------------- source


class _Source:
    """The lines and namespace of one generated function."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ns: dict[str, object] = {
            "_DE": DecodeError,
            "_EE": EncodeError,
            "_new": object.__new__,
            "_ruv": primitives.read_uvarint,
            "_rvi": primitives.read_varint,
            "_rvl": primitives.read_varlong,
            "_uv": primitives.uvarint,
            "_vi": primitives.varint,
            "_vl": primitives.varlong,
            "_skip": primitives.skip_tagged_fields,
            "_recs": primitives.put_records,
            "_join": primitives.join_parts,
        }
        self.count = 0

    def var(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, value: object, prefix: str = "_k") -> str:
        name = self.var(prefix)
        self.ns[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def build(self, name: str) -> object:
        code = "\n".join(self.lines)
        # The source is generated from our own schema declarations, never from input.
        exec(compile(code, f"<codec {name}>", "exec"), self.ns)  # noqa: S102
        return self.ns["_fn"]


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    """One field as it is laid out in one version."""

    name: str
    type: FieldType[object]
    compact: bool
    nullable: bool
    tag: int | None
    default: object


def _default(fld: dataclasses.Field[object]) -> object:
    # Defaults are immutable (ints, strings, tuples, frozen structs), so one
    # instance may be shared by every decoded object.
    if fld.default is not dataclasses.MISSING:
        return fld.default
    if fld.default_factory is not dataclasses.MISSING:
        return fld.default_factory()
    return None


def _layout(cls: type, version: int, flexible: bool) -> list[_Field]:
    fields = {fld.name: fld for fld in dataclasses.fields(cls)}
    return [
        _field(cls, name, spec, _default(fields[name]), version, flexible)
        for name, spec in field_specs(cls)
        if version in spec.versions
    ]


def _field(
    cls: type, name: str, spec: FieldSpec, default: object, version: int, flexible: bool
) -> _Field:
    tag = spec.tag if spec.tag is not None and version in spec.tagged else None
    if tag is not None and not flexible:
        raise TypeError(f"{cls.__name__}.{name} is tagged in non-flexible v{version}")
    return _Field(
        name=name,
        type=spec.type,
        compact=flexible and (spec.flexible is None or version in spec.flexible),
        nullable=version in spec.type.nullable,
        tag=tag,
        default=default,
    )


def _split(layout: list[_Field]) -> tuple[list[_Field], list[_Field]]:
    regular = [f for f in layout if f.tag is None]
    tagged = sorted((f for f in layout if f.tag is not None), key=lambda f: f.tag or 0)
    return regular, tagged


class _Gen:
    """Generates the code of one (class, version, flexibility), nested structs inline."""

    def __init__(self, version: int, flexible: bool) -> None:
        self.src = _Source()
        self.version = version
        self.flexible = flexible

    def emit(self, ind: int, line: str) -> None:
        self.src.emit(ind, line)

    def struct_const(self, code: str) -> str:
        return self.src.const(struct.Struct(">" + code), "_S")

    # ----------------------------------------------------------------------- decode

    def dec_length(
        self, ind: int, var: str, t: FieldType[object], compact: bool
    ) -> None:
        """Read a length (or element count) into ``var``; -1 means null."""
        if compact:
            self.emit(ind, f"{var} = buf[pos]")
            self.emit(ind, f"if {var} < 0x80: pos += 1")
            self.emit(ind, f"else: {var}, pos = _ruv(buf, pos)")
            self.emit(ind, f"{var} -= 1")
        else:
            s = self.struct_const(_LENGTH_CODE[t.name])
            self.emit(ind, f"{var}, = {s}.unpack_from(buf, pos)")
            self.emit(ind, f"pos += {s}.size")

    def dec_value(
        self,
        ind: int,
        var: str,
        t: FieldType[object],
        compact: bool,
        nullable: bool,
        length: str | None = None,
    ) -> None:
        """Decode one value of type ``t`` into ``var``.

        ``length`` names a variable already holding a classic length prefix.
        """
        name = t.name
        if name in _FIXED:
            s = self.struct_const(_FIXED[name])
            self.emit(ind, f"{var}, = {s}.unpack_from(buf, pos)")
            self.emit(ind, f"pos += {s}.size")
        elif name in ("varint", "varlong"):
            fn = "_rvi" if name == "varint" else "_rvl"
            self.emit(ind, f"{var}, pos = {fn}(buf, pos)")
        elif name == "struct":
            assert t.struct is not None
            if nullable:  # Kafka writes an int8 marker: -1 null, 1 present
                self.emit(ind, "pos += 1")
                self.emit(ind, f"if buf[pos - 1] >= 0x80: {var} = None")
                self.emit(ind, "else:")
                ind += 1
            self.dec_struct(ind, t.struct, var)
        elif name in ("string", "bytes", "records", "array"):
            n = length or self.src.var("_l")
            if length is None:
                self.dec_length(ind, n, t, compact)
            self.emit(ind, f"if {n} < 0:")
            if nullable:
                self.emit(ind + 1, f"{var} = None")
            else:
                self.emit(ind + 1, f"raise _DE('null in non-nullable {name}')")
            self.emit(ind, "else:")
            if name == "array":
                self.dec_array_body(ind + 1, var, n, t)
            else:
                self.emit(ind + 1, f"_e = pos + {n}")
                self.emit(ind + 1, "if _e > _end: raise _DE('truncated')")
                expr = {
                    "string": 'str(buf[pos:_e], "utf-8")',
                    "bytes": "bytes(buf[pos:_e])",
                    "records": "buf[pos:_e]",  # zero-copy: buf is a memoryview
                }[name]
                self.emit(ind + 1, f"{var} = {expr}")
                self.emit(ind + 1, "pos = _e")
        else:
            raise TypeError(f"unknown wire type {name!r}")

    def dec_array_body(
        self, ind: int, var: str, count: str, t: FieldType[object]
    ) -> None:
        elem = t.of
        assert elem is not None
        # Kafka's own check: no more elements than bytes left (this also stops a
        # 2**31 count of empty structs from spinning).
        self.emit(ind, f"if {count} > _end - pos: raise _DE('array too long')")
        if elem.name in _FIXED and elem.name != "uuid":
            cache = self.src.const(primitives.ArrayStructs(_FIXED[elem.name]), "_A")
            self.emit(ind, f"_st = {cache}[{count}]")
            self.emit(ind, f"{var} = _st.unpack_from(buf, pos)")
            self.emit(ind, "pos += _st.size")
            return
        items, item = self.src.var("_a"), self.src.var("_x")
        self.emit(ind, f"{items} = []")
        self.emit(ind, f"for _ in range({count}):")
        self.dec_value(ind + 1, item, elem, self.flexible, False)
        self.emit(ind + 1, f"{items}.append({item})")
        self.emit(ind, f"{var} = tuple({items})")

    def dec_struct(self, ind: int, cls: type, target: str) -> None:
        """Decode one ``cls`` into ``target``, inline."""
        regular, tagged = _split(_layout(cls, self.version, self.flexible))
        run_codes: list[str] = []
        run_vars: list[str] = []

        def flush() -> None:
            if run_codes:
                s = self.struct_const("".join(run_codes))
                self.emit(ind, f"{', '.join(run_vars)}, = {s}.unpack_from(buf, pos)")
                self.emit(ind, f"pos += {s}.size")
                run_codes.clear()
                run_vars.clear()

        values: dict[str, str] = {}
        for fld in regular:
            var = values[fld.name] = self.src.var("v")
            t = fld.type
            if t.name in _FIXED:
                run_codes.append(_FIXED[t.name])
                run_vars.append(var)
            elif t.name in _LENGTH_CODE and not fld.compact:
                length = self.src.var("_l")
                run_codes.append(_LENGTH_CODE[t.name])
                run_vars.append(length)
                flush()
                self.dec_value(ind, var, t, False, fld.nullable, length)
            else:
                flush()
                self.dec_value(ind, var, t, fld.compact, fld.nullable)
        flush()
        if self.flexible:
            self.dec_tags(ind, tagged, values)
        c = self.src.const(cls, "_C")
        self.emit(ind, f"{target} = _new({c})")
        for dc_field in dataclasses.fields(cls):
            name = dc_field.name
            value = values.get(name) or self.src.const(_default(dc_field), "_D")
            setter = self.src.const(getattr(cls, name).__set__, "_set")
            self.emit(ind, f"{setter}({target}, {value})")

    def dec_tags(self, ind: int, tagged: list[_Field], values: dict[str, str]) -> None:
        """Decode a tagged-field section: known tags into ``values``, others skipped."""
        if not tagged:
            self.emit(ind, "if buf[pos] == 0: pos += 1")
            self.emit(ind, "else: pos = _skip(buf, pos)")
            return
        for fld in tagged:
            var = values[fld.name] = self.src.var("v")
            self.emit(ind, f"{var} = {self.src.const(fld.default, '_D')}")
        # Fresh names: a tagged value may be a struct with a tag section of its own.
        count, tag, end = self.src.var("_t"), self.src.var("_tag"), self.src.var("_end")
        self.emit(ind, "if buf[pos] == 0: pos += 1")
        self.emit(ind, "else:")
        self.emit(ind + 1, f"{count}, pos = _ruv(buf, pos)")
        self.emit(ind + 1, f"for _ in range({count}):")
        self.emit(ind + 2, f"{tag}, pos = _ruv(buf, pos)")
        self.emit(ind + 2, f"{end}, pos = _ruv(buf, pos)")
        self.emit(ind + 2, f"{end} += pos")
        self.emit(ind + 2, f"if {end} > _end: raise _DE('truncated tagged field')")
        for i, fld in enumerate(tagged):
            self.emit(ind + 2, f"{'if' if i == 0 else 'elif'} {tag} == {fld.tag}:")
            self.dec_value(ind + 3, values[fld.name], fld.type, True, fld.nullable)
        self.emit(ind + 2, f"pos = {end}")

    # ----------------------------------------------------------------------- encode

    def enc_compact_length(self, ind: int, expr: str, bn: str) -> None:
        """Write a compact length (unsigned varint of length + 1)."""
        self.emit(ind, f"_n = {expr}")
        self.emit(ind, f"if _n < 0x80: {bn}.append(_n)")
        self.emit(ind, f"else: {bn} += _uv(_n)")

    def enc_value(
        self,
        ind: int,
        expr: str,
        t: FieldType[object],
        compact: bool,
        nullable: bool,
        bn: str = "b",
        pn: str = "parts",
    ) -> None:
        """Write one value (``expr``, a local name) of type ``t`` to ``bn``."""
        name = t.name
        if name in _FIXED:
            s = self.struct_const(_FIXED[name])
            self.enc_check(ind, expr, name)
            self.emit(ind, f"{bn} += {s}.pack({expr})")
        elif name in ("varint", "varlong"):
            fn = "_vi" if name == "varint" else "_vl"
            self.emit(ind, f"{bn} += {fn}({expr})")
        elif name == "records":
            self.emit(ind, f"{bn} = _recs({expr}, {bn}, {pn}, {compact})")
        elif name == "struct":
            assert t.struct is not None
            if nullable:
                self.emit(ind, f"if {expr} is None: {bn} += b'\\xff'")
                self.emit(ind, "else:")
                ind += 1
                self.emit(ind, f"{bn}.append(1)")
            self.enc_struct(ind, t.struct, expr, bn, pn)
        elif name in ("string", "bytes", "array"):
            if nullable:
                null = b"\x00" if compact else b"\xff" * (2 if name == "string" else 4)
                self.emit(ind, f"if {expr} is None: {bn} += {null!r}")
                self.emit(ind, "else:")
                ind += 1
            data = expr
            if name == "string":
                data = self.src.var("_s")
                self.emit(ind, f"{data} = {expr}.encode('utf-8')")
            if name == "array":
                self.enc_array(ind, data, t, compact, bn, pn)
                return
            if compact:
                self.enc_compact_length(ind, f"len({data}) + 1", bn)
            else:
                s = self.struct_const(_LENGTH_CODE[name])
                self.emit(ind, f"{bn} += {s}.pack(len({data}))")
            self.emit(ind, f"{bn} += {data}")
        else:
            raise TypeError(f"unknown wire type {name!r}")

    def enc_check(self, ind: int, expr: str, type_name: str) -> None:
        # struct packs any object as "?" and pads or cuts "16s": check those first.
        if type_name == "bool":
            self.emit(ind, f"if {expr} is None: raise _EE('null bool')")
        elif type_name == "uuid":
            self.emit(ind, f"if len({expr}) != 16: raise _EE('a uuid is 16 bytes')")

    def enc_array(
        self,
        ind: int,
        expr: str,
        t: FieldType[object],
        compact: bool,
        bn: str,
        pn: str,
        length_done: bool = False,
    ) -> None:
        """Write an array's length (unless ``length_done``) and elements."""
        elem = t.of
        assert elem is not None
        if (
            elem.name in _FIXED
            and elem.name not in ("uuid", "bool")
            and not length_done
        ):
            code = _FIXED[elem.name]
            cache = self.src.const(
                primitives.CompactArrayStructs(code)
                if compact
                else primitives.ArrayStructs(code, "i"),
                "_A",
            )
            self.emit(ind, f"_n = len({expr})")
            plus = " + 1" if compact else ""
            self.emit(ind, f"{bn} += {cache}[_n].pack(_n{plus}, *{expr})")
            return
        if not length_done:
            if compact:
                self.enc_compact_length(ind, f"len({expr}) + 1", bn)
            else:
                self.emit(ind, f"{bn} += {self.struct_const('i')}.pack(len({expr}))")
        if elem.name in _FIXED and elem.name not in ("uuid", "bool"):
            cache = self.src.const(primitives.ArrayStructs(_FIXED[elem.name]), "_A")
            self.emit(ind, f"{bn} += {cache}[len({expr})].pack(*{expr})")
            return
        item = self.src.var("_x")
        self.emit(ind, f"for {item} in {expr}:")
        self.enc_value(ind + 1, item, elem, self.flexible, False, bn, pn)

    def enc_struct(self, ind: int, cls: type, obj: str, bn: str, pn: str) -> None:
        """Write one ``cls`` instance (``obj``), inline.

        Consecutive fixed fields, non-null strings and non-null arrays of fixed-size
        numbers are written with one ``pack``: a Struct per distinct tuple of their
        lengths (:class:`primitives.RunStructs`).
        """
        regular, tagged = _split(_layout(cls, self.version, self.flexible))
        items: list[primitives.RunItem] = []
        exprs: list[str] = []
        counts: list[str] = []

        def flush() -> None:
            if not items:
                return
            if counts:
                cache = self.src.const(primitives.RunStructs(tuple(items)), "_R")
                key = f"({', '.join(counts)},)"
                self.emit(ind, f"{bn} += {cache}[{key}].pack({', '.join(exprs)})")
            else:
                s = self.struct_const("".join(code for _kind, code, _c in items))
                self.emit(ind, f"{bn} += {s}.pack({', '.join(exprs)})")
            items.clear()
            exprs.clear()
            counts.clear()

        for fld in regular:
            t = fld.type
            var = self.src.var("v")
            self.emit(ind, f"{var} = {obj}.{fld.name}")
            elem = t.of.name if t.of is not None else ""
            plus = " + 1" if fld.compact else ""
            if t.name in _FIXED:
                self.enc_check(ind, var, t.name)
                items.append(("fixed", _FIXED[t.name], False))
                exprs.append(var)
            elif t.name == "string" and not fld.nullable:
                data, n = self.src.var("_s"), self.src.var("_n")
                self.emit(ind, f"{data} = {var}.encode('utf-8'); {n} = len({data})")
                items.append(("string", "", fld.compact))
                exprs.extend((f"{n}{plus}", data))
                counts.append(n)
            elif t.name == "array" and not fld.nullable and elem in _PACKED_ELEMENTS:
                n = self.src.var("_n")
                self.emit(ind, f"{n} = len({var})")
                items.append(("array", _FIXED[elem], fld.compact))
                exprs.extend((f"{n}{plus}", f"*{var}"))
                counts.append(n)
            elif t.name in ("bytes", "array") and not (fld.compact or fld.nullable):
                items.append(("fixed", _LENGTH_CODE[t.name], False))
                exprs.append(f"len({var})")
                flush()
                if t.name == "array":
                    self.enc_array(ind, var, t, False, bn, pn, length_done=True)
                else:
                    self.emit(ind, f"{bn} += {var}")
            else:
                flush()
                self.enc_value(ind, var, t, fld.compact, fld.nullable, bn, pn)
        if self.flexible and not tagged and items:
            items.append(("fixed", "B", False))  # an empty tagged-field section
            exprs.append("0")
        elif self.flexible and not tagged:
            self.emit(ind, f"{bn}.append(0)")  # an empty tagged-field section
        flush()
        if tagged:
            self.enc_tags(ind, tagged, obj, bn)

    def enc_tags(self, ind: int, tagged: list[_Field], obj: str, bn: str) -> None:
        """Write the tagged fields that differ from their defaults, by tag."""
        tags = self.src.var("_tg")
        self.emit(ind, f"{tags} = []")
        for fld in tagged:
            var = self.src.var("v")
            self.emit(ind, f"{var} = {obj}.{fld.name}")
            struct_cls = fld.type.struct
            if fld.type.name == "array" and fld.default is not None:
                self.emit(ind, f"if {var} is None or len({var}) != 0:")
            elif struct_cls is not None and fld.default is not None:
                # Compare the fields this version has, not the whole dataclass (as
                # kio does): cheaper, and equal on the wire is what matters.
                inner = _layout(struct_cls, self.version, self.flexible)
                differs = [
                    f"{var}.{f.name} != {self.src.const(f.default, '_D')}"
                    for f in inner
                ]
                self.emit(ind, f"if {' or '.join(differs) or 'False'}:")
            else:
                self.emit(ind, f"if {var} != {self.src.const(fld.default, '_D')}:")
            tb, tp = self.src.var("_tb"), self.src.var("_tp")
            self.emit(ind + 1, f"{tb} = bytearray(); {tp} = []")
            self.enc_value(ind + 1, var, fld.type, True, fld.nullable, tb, tp)
            self.emit(ind + 1, f"{tags}.append(({fld.tag}, _join({tb}, {tp})))")
        self.enc_compact_length(ind, f"len({tags})", bn)
        self.emit(ind, f"for _tag, _data in {tags}:")
        self.emit(ind + 1, f"{bn} += _uv(_tag)")
        self.emit(ind + 1, f"{bn} += _uv(len(_data))")
        self.emit(ind + 1, f"{bn} += _data")


def _compile_decoder(cls: type, version: int, flexible: bool) -> Decoder:
    gen = _Gen(version, flexible)
    gen.emit(0, "def _fn(buf, pos):")
    gen.emit(1, "_end = len(buf)")
    gen.dec_struct(1, cls, "obj")
    gen.emit(1, "return obj, pos")
    return cast("Decoder", gen.src.build(f"decode {cls.__name__} v{version}"))


def _compile_encoder(cls: type, version: int, flexible: bool) -> Encoder:
    gen = _Gen(version, flexible)
    gen.emit(0, "def _fn(o, b, parts):")
    gen.enc_struct(1, cls, "o", "b", "parts")
    gen.emit(1, "return b")
    return cast("Encoder", gen.src.build(f"encode {cls.__name__} v{version}"))


_DECODERS: Final[dict[tuple[type, int, bool], Decoder]] = {}
_ENCODERS: Final[dict[tuple[type, int, bool], Encoder]] = {}


def decoder_for_struct(cls: type, version: int, flexible: bool) -> Decoder:
    """The (cached) decoder of a struct or message as laid out in ``version``."""
    key = (cls, version, flexible)
    fn = _DECODERS.get(key)
    if fn is None:
        fn = _DECODERS[key] = _compile_decoder(cls, version, flexible)
    return fn


def encoder_for_struct(cls: type, version: int, flexible: bool) -> Encoder:
    """The (cached) encoder of a struct or message as laid out in ``version``."""
    key = (cls, version, flexible)
    fn = _ENCODERS.get(key)
    if fn is None:
        fn = _ENCODERS[key] = _compile_encoder(cls, version, flexible)
    return fn


def check_version(cls: type, version: int) -> bool:
    spec = message_spec(cls)
    if version not in spec.valid:
        raise ValueError(
            f"{cls.__name__} has no version {version} (valid {spec.valid})"
        )
    return version in spec.flexible


def decoder_for(cls: type, version: int) -> Decoder:
    """The decoder of a registered message (or header) class in ``version``.

    It is ``dec(buf: memoryview, pos) -> (obj, new_pos)`` and may raise
    ``struct.error``/``IndexError``/``ValueError`` as well as :class:`DecodeError` on
    bad input; :func:`decode` wraps it.
    """
    return decoder_for_struct(cls, version, check_version(cls, version))


def encoder_for(cls: type, version: int) -> Encoder:
    """The encoder of a registered message (or header) class in ``version``.

    It is ``enc(obj, out: bytearray, parts: list) -> out``; see the module docstring.
    """
    return encoder_for_struct(cls, version, check_version(cls, version))
