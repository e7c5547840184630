"""Regenerate the malformed-input corpus: ``python -m tests.fuzz.make_corpus``.

Writes ``tests/fuzz/corpus/<target>/<category>__<name>`` (deterministic; seeded).
Request seeds are the golden frames captured from real clients
(``tests/protocol/golden``), mangled per category; meta.json, segment and produce
(plain, idempotent and transactional payloads) seeds are built here. The files are
kept in the repo so the corpus test and the fuzzers start from the same inputs
everywhere.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
from pathlib import Path

from protocol.record_builder import RecordInput, build_batch
from protocol.records import Compression
from storage.snapshot_files import compress_file
from tests.fuzz._fuzz import CORPUS

GOLDEN = Path(__file__).parents[1] / "protocol" / "golden"


def _write(target: str, name: str, data: bytes) -> None:
    path = CORPUS / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _requests(rng: random.Random) -> None:
    seeds: list[tuple[str, bytes]] = []
    for p in sorted(GOLDEN.glob("*/*.bin")):
        if p.name.endswith(".response.bin"):
            continue
        seeds.append((f"{p.parent.name.split('-')[0]}_{p.stem}", p.read_bytes()[4:]))
    # One of each api/version from each client is plenty.
    seen: set[str] = set()
    valid = []
    for name, body in seeds:
        key = name.rsplit("_", 1)[0]
        if key not in seen:
            seen.add(key)
            valid.append((name, body))
    for name, body in valid:
        _write("request", f"valid__{name}", body)
    for name, body in rng.sample(valid, 12):
        for cut in (1, 5, 9, len(body) // 2, len(body) - 1):
            if 0 < cut < len(body):
                _write("request", f"truncated__{name}_at{cut}", body[:cut])
    for name, body in rng.sample(valid, 12):
        # Header: api_key int16, version int16, correlation int32, client_id len int16.
        for label, value in (("neg", -2), ("huge", 0x7FFF)):
            _write(
                "request",
                f"bad-length__{name}_client_id_{label}",
                body[:8] + struct.pack(">h", value) + body[10:],
            )
        for i in range(3):
            pos = rng.randrange(10, max(11, len(body) - 4))
            value = rng.choice((-1, -2, 0x7FFFFFFF, -0x80000000, 0x10000000))
            _write(
                "request",
                f"bad-length__{name}_int32_{i}",
                body[:pos] + struct.pack(">i", value) + body[pos + 4 :],
            )
    base = valid[0][1]
    for key in (-1, 999, 0x7FFF, 68, 100):
        _write("request", f"unknown-api__key{key}", struct.pack(">h", key) + base[2:])
    for name, body in valid[:6]:
        for version in (-1, 99, 0x7FFF):
            _write(
                "request",
                f"bad-version__{name}_v{version}",
                body[:2] + struct.pack(">h", version) + body[4:],
            )
    flexible = [(n, b) for n, b in valid if "api_versions_v3" in n or "_v9" in n]
    for name, body in flexible[:6]:
        for pos in (10, len(body) // 2, len(body) - 2):
            _write(
                "request",
                f"bad-varint__{name}_at{pos}",
                body[:pos] + b"\xff" * 10 + body[pos:],
            )
        _write("request", f"bad-tagged__{name}_tags", body[:-1] + b"\x05\x01\xff")
    for i in range(10):
        _write(
            "request", f"random__{i}", rng.randbytes(rng.choice((0, 1, 3, 8, 64, 500)))
        )
    for name, body in rng.sample(valid, 10):
        b = bytearray(body)
        for _ in range(3):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        _write("request", f"bit-flip__{name}", bytes(b))


def _meta_valid() -> dict[str, object]:
    return {
        "version": 1,
        "last_offset": 1,
        "last_term": 0,
        "ancestor_snapshot_id": "0" * 36,
        "compression": "none",
        "size": 1234,
        "snapshot_id": "1678886400000000000",
        "topic": "my-topic",
        "topic_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "partition": 0,
        "partition_count": 1,
        "base_offset": 0,
        "max_timestamp": 1700000000000,
        "created_at": "2026-01-01T00:00:00.000000Z",
        "topic_configs": {"retention.ms": "1000"},
        "segments": [
            {
                "file": "00000000000000000000.log",
                "base_offset": 0,
                "last_offset": 1,
                "size": 1234,
                "crc32c": 305419896,
            }
        ],
    }


def _metas(rng: random.Random) -> None:
    good = _meta_valid()
    _write("meta", "valid__full", json.dumps(good).encode())
    seed6 = {k: good[k] for k in list(good)[:6]}
    _write("meta", "valid__seed_six_fields", json.dumps(seed6).encode())
    text = json.dumps(good).encode()
    for cut in (0, 1, 10, len(text) // 2, len(text) - 1):
        _write("meta", f"truncated__at{cut}", text[:cut])
    _write("meta", "not-json__garbage", b"\x00\x01not json{")
    _write("meta", "not-json__nan", text.replace(b"1234", b"NaN"))
    _write("meta", "not-json__array", b"[1, 2, 3]")
    _write("meta", "not-utf8__latin1", text.replace(b"my-topic", b"my-t\xf6pic"))
    _write("meta", "deep-nesting__list", b"[" * 50_000 + b"]" * 50_000)
    _write("meta", "deep-nesting__object", b'{"a":' * 20_000 + b"1" + b"}" * 20_000)

    def variant(category: str, name: str, **changes: object) -> None:
        obj = json.loads(json.dumps(good))
        for key, value in changes.items():
            if value is _DROP:
                obj.pop(key, None)
            else:
                obj[key] = value
        _write("meta", f"{category}__{name}", json.dumps(obj).encode())

    seg = dict(good["segments"][0])  # type: ignore[index]
    for name, file in (
        ("dotdot", "../00000000000000000000.log"),
        ("slash", "sub/00000000000000000000.log"),
        ("absolute", "/etc/passwd"),
        ("dotdot_deep", "../../../../etc/shadow"),
        ("nul", "00000000000000000000.log\x00.txt"),
    ):
        variant("path-traversal", name, segments=[seg | {"file": file}])
    variant("path-traversal", "group_offsets", group_offsets="../../x.json")
    variant("path-traversal", "topic_dotdot", topic="..")
    variant("path-traversal", "topic_slash", topic="a/b")
    for name, file in (
        ("short", "0.log"),
        ("suffix", "00000000000000000000.txt"),
        ("codec", "00000000000000000000.log.zst"),
        ("unicode", "０００００００００００００００００００００.log"),
    ):
        variant("bad-name", name, segments=[seg | {"file": file}])
    for key in ("version", "last_offset", "size", "partition", "partition_count"):
        variant("wrong-type", f"{key}_str", **{key: "7"})
        variant("wrong-type", f"{key}_float", **{key: 1.5})
        variant("wrong-type", f"{key}_bool", **{key: True})
        variant("wrong-type", f"{key}_null", **{key: None})
        variant("huge-number", f"{key}_2e64", **{key: 2**64})
        variant("negative", f"{key}_neg", **{key: -5})
    for key in ("version", "last_offset", "last_term", "size"):
        variant("missing-field", key, **{key: _DROP})
    variant("wrong-type", "segments_obj", segments={"a": 1})
    variant("wrong-type", "segments_empty", segments=[])
    variant("wrong-type", "segment_not_obj", segments=[1, 2])
    variant("wrong-type", "configs_list", topic_configs=["a"])
    variant("wrong-type", "configs_int_value", topic_configs={"a": 1})
    variant("bad-value", "compression", compression="brotli")
    variant("bad-value", "version2", version=2)
    variant("bad-value", "topic_id", topic_id="not-a-uuid")
    variant("bad-value", "snapshot_id", snapshot_id="../x")
    variant("bad-value", "partition_ge_count", partition=5, partition_count=2)
    variant("bad-value", "crc_range", segments=[seg | {"crc32c": 2**32}])
    variant("bad-value", "sha", segments=[seg | {"sha256": "xyz"}])
    variant("bad-value", "dup_segments", segments=[seg, seg])
    variant("bad-value", "base_mismatch", segments=[seg | {"base_offset": 5}])
    _write(
        "meta",
        "duplicate-keys__version",
        text.replace(b'"version": 1', b'"version": 1, "version": "x"'),
    )
    for i in range(5):
        b = bytearray(text)
        for _ in range(4):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        _write("meta", f"bit-flip__{i}", bytes(b))


class _Drop:
    pass


_DROP = _Drop()


def _segments(rng: random.Random) -> None:
    batches = b"".join(
        build_batch(
            [RecordInput(key=b"k%d" % i, value=rng.randbytes(40)) for i in range(3)],
            base_offset=3 * n,
        )
        for n in range(4)
    )
    compressed = build_batch(
        [RecordInput(value=b"v" * 200) for _ in range(5)],
        base_offset=12,
        compression=Compression.ZSTD,
    )
    plain = batches + compressed
    codecs = {"none": 0, "zstd": 1, "gzip": 2, "lz4": 3}
    for codec, tag in codecs.items():
        _write("segment", f"valid__{codec}", bytes([tag]) + compress_file(plain, codec))
    _write("segment", "valid__empty", b"\x00")
    for cut in (5, 30, 61, len(plain) - 1):
        _write("segment", f"truncated__at{cut}", b"\x00" + plain[:cut])
    b = bytearray(plain)
    b[30] ^= 0x01  # inside the CRC-covered part of batch 0
    _write("segment", "bad-crc__batch0", b"\x00" + bytes(b))
    b = bytearray(plain)
    b[16] = 1  # magic
    _write("segment", "bad-magic__v1", b"\x00" + bytes(b))
    for label, value in (("neg", -1), ("zero", 0), ("small", 10), ("huge", 0x7FFFFFFF)):
        b = bytearray(plain)
        b[8:12] = struct.pack(">i", value)
        _write("segment", f"bad-length__{label}", b"\x00" + bytes(b))
    b = bytearray(plain)
    b[57:61] = struct.pack(">i", 1000)  # record count
    _write("segment", "bad-count__records", b"\x00" + bytes(b))
    for codec, tag in list(codecs.items())[1:]:
        stored = compress_file(plain, codec)
        _write(
            "segment",
            f"bad-compression__{codec}_cut",
            bytes([tag]) + stored[: len(stored) // 2],
        )
        _write(
            "segment",
            f"bad-compression__{codec}_garbage",
            bytes([tag]) + rng.randbytes(64),
        )
    for i in range(5):
        _write(
            "segment",
            f"random__{i}",
            b"\x00" + rng.randbytes(rng.choice((12, 61, 200))),
        )
    for i in range(5):
        b = bytearray(plain)
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        _write("segment", f"bit-flip__{i}", b"\x00" + bytes(b))


def _group_offsets(rng: random.Random) -> None:
    first: dict[str, object] = {
        "group": "billing",
        "offset": 42,
        "leader_epoch": 7,
        "metadata": "m",
        "commit_ms": 1700000000000,
    }
    good = {
        "version": 1,
        "topic": "t",
        "partition": 0,
        "groups": [
            first,
            {"group": "team/app.v2", "offset": 100},
            {"group": "grüppe ☃", "offset": 0, "leader_epoch": -1, "metadata": ""},
        ],
    }
    text = json.dumps(good).encode()
    _write("groups", "valid__full", text)
    _write("groups", "valid__minimal", b'{"groups": []}')
    _write("groups", "valid__at_end", b'{"groups": [{"group": "g", "offset": 100}]}')
    for cut in (0, 1, 10, len(text) // 2, len(text) - 1):
        _write("groups", f"truncated__at{cut}", text[:cut])
    _write("groups", "not-json__garbage", b"\x00\x01not json{")
    _write("groups", "not-json__nan", text.replace(b": 42", b": NaN"))
    _write("groups", "not-json__array", b"[1, 2, 3]")
    _write("groups", "not-utf8__latin1", text.replace(b"billing", b"b\xf6lling"))
    _write("groups", "deep-nesting__list", b"[" * 50_000 + b"]" * 50_000)
    _write(
        "groups",
        "deep-nesting__object",
        b'{"groups":' + b'{"a":' * 20_000 + b"1" + b"}" * 20_001,
    )
    _write(
        "groups",
        "duplicate-keys__offset",
        text.replace(b'"offset": 42', b'"offset": 42, "offset": -1'),
    )

    def variant(category: str, name: str, **changes: object) -> None:
        obj = json.loads(json.dumps(good))
        obj["groups"][0].update(changes)
        _write("groups", f"{category}__{name}", json.dumps(obj).encode())

    for key in ("offset", "leader_epoch", "commit_ms"):
        variant("wrong-type", f"{key}_str", **{key: "7"})
        variant("wrong-type", f"{key}_float", **{key: 1.5})
        variant("wrong-type", f"{key}_bool", **{key: True})
        variant("wrong-type", f"{key}_null", **{key: None})
        variant("huge-number", f"{key}_2e70", **{key: 2**70})
        variant("negative", f"{key}_neg", **{key: -5})
    for key in ("group", "metadata"):
        variant("wrong-type", f"{key}_int", **{key: 7})
        variant("control-char", f"{key}_newline", **{key: "\n../x"})
        variant("control-char", f"{key}_nul", **{key: "a\x00b"})
        variant("not-utf8", f"{key}_surrogate", **{key: "\ud800"})
    variant("bad-value", "offset_past_end", offset=101)
    variant("bad-value", "group_empty", group="")
    variant("bad-value", "group_too_long", group="g" * 32768)
    variant("bad-value", "metadata_too_long", metadata="m" * 4097)
    variant("bad-value", "epoch_past_int32", leader_epoch=2**31)
    for name, change in (
        ("partition", {"partition": 3}),
        ("topic", {"topic": "other"}),
        ("version", {"version": 2}),
        ("groups_obj", {"groups": {"g": 1}}),
        ("group_not_obj", {"groups": [1]}),
        ("duplicate_group", {"groups": [first, first]}),
    ):
        _write("groups", f"bad-value__{name}", json.dumps(good | change).encode())
    for i in range(5):
        b = bytearray(text)
        for _ in range(4):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        _write("groups", f"bit-flip__{i}", bytes(b))


def _produce_payloads(rng: random.Random) -> None:
    """Produce payloads for the producer-state path: plain, idempotent (producer id,
    epoch, sequence set) and transactional batches, then mangled lengths, CRCs,
    record counts and producer fields."""

    def batch(
        pid: int,
        seq: int,
        n: int = 2,
        compression: Compression = Compression.NONE,
        *,
        is_transactional: bool = False,
    ) -> bytes:
        return build_batch(
            [RecordInput(key=b"k%d" % i, value=rng.randbytes(30)) for i in range(n)],
            producer_id=pid,
            producer_epoch=0 if pid >= 0 else -1,
            base_sequence=seq if pid >= 0 else -1,
            compression=compression,
            is_transactional=is_transactional,
        )

    def put_int(data: bytes, pos: int, fmt: str, value: int) -> bytes:
        out = bytearray(data)
        struct.pack_into(fmt, out, pos, value)
        return bytes(out)

    one, two = batch(7000, 0), batch(7000, 2, n=3)
    valid = {
        "plain": batch(-1, -1),
        "plain_two": batch(-1, -1) + batch(-1, -1),
        "plain_gzip": batch(-1, -1, Compression.GZIP),
        "idempotent": batch(7001, 0),
        "idempotent_two": one + two,
        "idempotent_zstd": batch(7002, 0, 4, Compression.ZSTD),
        "idempotent_wrapping_seq": batch(7003, 0x7FFFFFFF, n=2),
        "idempotent_then_other_producer": batch(7004, 0) + batch(7005, 0),
        "transactional": batch(7006, 0, is_transactional=True),
    }
    for name, data in valid.items():
        _write("produce", f"valid__{name}", data)
    second = len(one)
    # batch header: base_offset 0, batch_length 8, magic 16, crc 17, attributes 21,
    # last_offset_delta 23, producer_id 43, producer_epoch 51, base_sequence 53,
    # record_count 57
    for label, value in (("neg", -1000), ("zero", 0), ("small", 10), ("huge", 1 << 30)):
        _write(
            "produce", f"bad-length__first_{label}", put_int(one + two, 8, ">i", value)
        )
        _write(
            "produce",
            f"bad-length__second_{label}",
            put_int(one + two, second + 8, ">i", value),
        )
    _write(
        "produce",
        "bad-length__first_short_by_40",
        put_int(one, 8, ">i", len(one) - 52) + two,
    )
    _write(
        "produce",
        "bad-length__first_long_by_500",
        put_int(one, 8, ">i", len(one) + 488) + two,
    )
    _write("produce", "bad-crc__first", put_int(one, 17, ">I", 0))
    _write("produce", "bad-crc__second", put_int(one + two, second + 17, ">I", 1))
    _write("produce", "bad-magic__second", put_int(one + two, second + 16, ">b", 1))
    for label, value in (("neg", -1), ("zero", 0), ("more", 9), ("huge", 0x7FFFFFFF)):
        _write("produce", f"bad-count__{label}", put_int(one, 57, ">i", value))
        _write(
            "produce",
            f"bad-count__second_{label}",
            put_int(one + two, second + 57, ">i", value),
        )
    for label, value in (("neg", -5), ("max", 0x7FFFFFFF)):
        _write("produce", f"bad-sequence__{label}", put_int(one, 53, ">i", value))
    _write("produce", "bad-epoch__neg", put_int(one, 51, ">h", -2))
    _write("produce", "bad-delta__neg", put_int(one, 23, ">i", -1))
    _write(
        "produce",
        "bad-transactional__crc",
        put_int(valid["transactional"], 17, ">I", 0),
    )
    for cut in (1, 12, 60, 61, len(one) - 1, len(one) + 30):
        _write("produce", f"truncated__at{cut}", (one + two)[:cut])
    for i in range(4):
        b = bytearray(one + two)
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        _write("produce", f"bit-flip__{i}", bytes(b))


def main() -> None:
    if CORPUS.exists():
        shutil.rmtree(CORPUS)
    _requests(random.Random(1))
    _produce_payloads(random.Random(4))
    _metas(random.Random(2))
    _segments(random.Random(3))
    _group_offsets(random.Random(4))
    for target in sorted(p.name for p in CORPUS.iterdir()):
        print(target, len(list((CORPUS / target).iterdir())))


if __name__ == "__main__":
    main()
