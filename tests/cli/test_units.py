"""Pure pieces of the CLI client: partitioner, escaping, templates, offset specs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_python_murmur2
from kafka.protocol.old.consumer_protocol import (
    ConsumerProtocolMemberAssignment_v0,
    ConsumerProtocolMemberMetadata_v0,
)

from broker.cli.main import hoist_global_flags
from broker.cli.output import escape_bytes, format_record, human_size, json_bytes
from broker.cli.settings import (
    DEFAULT_ADMIN_URL,
    DEFAULT_BROKERS,
    load_profile,
    parse_x,
    resolve,
)
from broker.cli.topic_io import parse_header
from broker.client.auth import Security
from broker.client.connection import parse_address
from broker.client.consumer import OffsetSpec, parse_offset_spec
from broker.client.errors import InvalidArgument
from broker.client.groups import decode_assignment
from broker.client.membership import (
    decode_subscription,
    encode_assignment,
    encode_subscription,
    range_assign,
)
from broker.client.partitioner import Partitioner, murmur2, partition_for_key
from broker.client.types import ConsumedRecord

NOW = 1_700_000_000_000


@settings(deadline=None)
@given(st.binary(max_size=64))
def test_murmur2_matches_the_java_client_port(data: bytes) -> None:
    """Our murmur2 equals kafka-python's port of Utils.murmur2 (which is unsigned)."""
    assert murmur2(data) & 0xFFFFFFFF == kafka_python_murmur2(data)


def test_murmur2_known_partition() -> None:
    """Keys land where the Java client puts them (values from Kafka's UtilsTest)."""
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert partition_for_key(b"foobar", 3) == (-790332482 & 0x7FFFFFFF) % 3


def test_null_keys_are_sticky() -> None:
    """Records without a key all go to one partition."""
    p = Partitioner()
    chosen = {p.partition("t", None, 6) for _ in range(50)}
    assert len(chosen) == 1


@settings(deadline=None)
@given(st.binary(max_size=64))
def test_escaped_bytes_are_one_printable_line(data: bytes) -> None:
    """Escaped output has no control characters and decodes back to the bytes."""
    text = escape_bytes(data)
    assert all(ch.isprintable() for ch in text)
    assert _unescape(text) == data


def _unescape(text: str) -> bytes:
    out = bytearray()
    i = 0
    simple = {"n": b"\n", "r": b"\r", "t": b"\t", "\\": b"\\"}
    while i < len(text):
        if text[i] == "\\":
            nxt = text[i + 1]
            if nxt == "x":
                out.append(int(text[i + 2 : i + 4], 16))
                i += 4
                continue
            if nxt in "uU":
                width = 4 if nxt == "u" else 8
                out += chr(int(text[i + 2 : i + 2 + width], 16)).encode()
                i += 2 + width
                continue
            out += simple[nxt]
            i += 2
            continue
        out += text[i].encode()
        i += 1
    return bytes(out)


def test_escape_examples() -> None:
    """Readable text stays as is; the rest is escaped."""
    assert escape_bytes(b"hello") == "hello"
    assert escape_bytes("héllo".encode()) == "héllo"
    assert escape_bytes(b"a\nb\\") == "a\\nb\\\\"
    assert escape_bytes(b"\xff\x00") == "\\xff\\x00"
    assert escape_bytes(None) == ""
    assert escape_bytes("\x80".encode()) == "\\u0080"
    assert json_bytes(b"\xff") == ("/w==", "base64")
    assert json_bytes(b"ok") == ("ok", "utf-8")
    assert json_bytes(None) == (None, None)


def test_format_record_placeholders() -> None:
    """Every placeholder renders; null key prints as nothing."""
    record = ConsumedRecord(
        topic="t",
        partition=2,
        offset=7,
        timestamp=0,
        key=None,
        value=b"v",
        headers=(("a", b"1"), ("b", None)),
    )
    assert (
        format_record("%t/%p@%o %k:%v %h %d %T 100%%\\n", record)
        == "t/2@7 :v a=1,b= 0 1970-01-01T00:00:00.000+00:00 100%\n"
    )


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("start", OffsetSpec(kind="start")),
        ("end", OffsetSpec(kind="end")),
        ("0", OffsetSpec(kind="absolute", value=0)),
        ("42", OffsetSpec(kind="absolute", value=42)),
        ("-3", OffsetSpec(kind="relative", value=3)),
        ("@1678886400000", OffsetSpec(kind="timestamp", value=1678886400000)),
        ("@2023-03-15T13:20:00Z", OffsetSpec(kind="timestamp", value=1678886400000)),
        ("+2", OffsetSpec(kind="after-start", value=2)),
        ("3:", OffsetSpec(kind="absolute", value=3)),
        ("3:7", OffsetSpec(kind="absolute", value=3, until="offset", until_value=7)),
        (":end", OffsetSpec(kind="start", until="end")),
        (":5", OffsetSpec(kind="start", until="offset", until_value=5)),
        ("-2:end", OffsetSpec(kind="relative", value=2, until="end")),
        (
            "@1000:2000",
            OffsetSpec(
                kind="timestamp", value=1000, until="timestamp", until_value=2000
            ),
        ),
        ("@:2000", OffsetSpec(kind="start", until="timestamp", until_value=2000)),
        ("@1000:end", OffsetSpec(kind="timestamp", value=1000, until="end")),
        ("@-1h", OffsetSpec(kind="timestamp", value=NOW - 3_600_000)),
        (
            "@-2d:-1d",
            OffsetSpec(
                kind="timestamp",
                value=NOW - 2 * 86_400_000,
                until="timestamp",
                until_value=NOW - 86_400_000,
            ),
        ),
        (
            "@-2h:+30m",
            OffsetSpec(
                kind="timestamp",
                value=NOW - 7_200_000,
                until="timestamp",
                until_value=NOW - 7_200_000 + 1_800_000,
            ),
        ),
    ],
)
def test_offset_specs_parse(text: str, spec: OffsetSpec) -> None:
    """--offset accepts rpk's forms: start, end, N, +N, -N, ranges, @times, durations."""
    assert parse_offset_spec(text, now_ms=NOW) == spec


@pytest.mark.parametrize("text", ["soon", "5:3", "@", ":", "@+1h", "1:x", "@:+1h"])
def test_bad_offset_spec_is_an_invalid_argument(text: str) -> None:
    """An offset spec that is none of the forms is refused with the forms listed."""
    with pytest.raises(InvalidArgument, match=r"bad (offset|time)"):
        parse_offset_spec(text, now_ms=NOW)


def test_range_assignor_splits_partitions_like_kafka() -> None:
    """Consecutive ranges per topic; the first members get the remainder."""
    plan = range_assign({"b": ["t", "u"], "a": ["t"]}, {"t": 3, "u": 2})
    assert plan == {"a": {"t": [0, 1]}, "b": {"t": [2], "u": [0, 1]}}


def test_subscription_and_assignment_round_trip_through_kafka_python() -> None:
    """Our consumer-protocol bytes are what kafka-python decodes, and back."""
    sub = ConsumerProtocolMemberMetadata_v0.decode(encode_subscription(["t", "u"]))
    assert list(sub.topics) == ["t", "u"]
    assert decode_subscription(encode_subscription(["t", "u"])) == ["t", "u"]
    raw = encode_assignment({"t": [0, 2]})
    assert decode_assignment(raw) == (("t", (0, 2)),)


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("a:1", ("a", b"1")),
        ("a=1", ("a", b"1")),
        ("a:b=c", ("a", b"b=c")),
        ("u=http://x", ("u", b"http://x")),
        ("k:", ("k", b"")),
    ],
)
def test_headers_parse_rpk_style(text: str, pair: tuple[str, bytes]) -> None:
    """-H key:value as rpk, key=value still accepted: split at the first of the two."""
    assert parse_header(text) == pair


def test_settings_precedence_flag_env_profile_default(tmp_path: Path) -> None:
    """flag > environment > profile > default, per setting."""
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "kafka_api:\n  brokers: [p:1]\n  sasl: {user: pu, password: pp}\n"
        "  tls: {ca_file: /p/ca.pem}\nadmin_api:\n  addresses: [p:9644]\n"
    )
    env = {"AILURUS_USER": "eu", "AILURUS_BROKERS": "e:1"}
    got = resolve(
        x={"brokers": "x:1"}, brokers_flag=None, admin_url_flag=None,
        profile=profile, env=env,
    )  # fmt: skip
    assert got.brokers == "x:1"
    assert got.security.user == "eu"
    assert got.security.password == "pp"
    assert got.security.uses_tls
    assert got.security.ca == "/p/ca.pem"
    assert got.admin_url == "http://p:9644"
    default = resolve(
        x={}, brokers_flag=None, admin_url_flag=None, profile=None, env={}
    )
    assert (default.brokers, default.admin_url) == (DEFAULT_BROKERS, DEFAULT_ADMIN_URL)
    assert default.admin_token is None
    assert default.security == Security()


def test_settings_refuse_unknown_keys_and_mechanisms(tmp_path: Path) -> None:
    """A typo in -X, a profile or a mechanism is an error naming what is known."""
    import click

    with pytest.raises(click.BadParameter, match=r"sasl\.mechanism"):
        parse_x(["sasl.mech=PLAIN"])
    with pytest.raises(InvalidArgument, match="SCRAM-SHA-512"):
        resolve(
            x={"sasl.mechanism": "MD5"},
            brokers_flag=None,
            admin_url_flag=None,
            profile=None,
            env={},
        )
    bad = tmp_path / "bad.yaml"
    bad.write_text("usr: alice\n")
    with pytest.raises(InvalidArgument, match="unknown key 'usr'"):
        load_profile(bad)


def test_x_flags_are_hoisted_from_after_the_subcommand() -> None:
    """-X k=v, -Xk=v and --profile work after the subcommand, as rpk allows."""
    argv = ["topic", "list", "-X", "user=a", "-Xpass=b", "--profile", "f.yaml"]
    assert hoist_global_flags(argv) == [
        "-X", "user=a", "-Xpass=b", "--profile", "f.yaml", "topic", "list",
    ]  # fmt: skip


def test_human_sizes() -> None:
    """Tables show B, KiB, MiB; non-numbers pass through."""
    assert human_size(512) == "512 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(5 * 1024 * 1024) == "5.0 MiB"
    assert human_size(None) is None


def test_addresses_parse() -> None:
    """host:port, bare host (port 9092) and bracketed IPv6."""
    assert parse_address("h:1") == ("h", 1)
    assert parse_address("h") == ("h", 9092)
    assert parse_address("[::1]:9093") == ("::1", 9093)


def test_consumer_assignment_decodes() -> None:
    """A ConsumerProtocolAssignment as kafka-python encodes it decodes to topics."""
    data = ConsumerProtocolMemberAssignment_v0(
        version=0, assigned_partitions=[("a", [0, 2]), ("b", [1])], user_data=b""
    ).encode()
    assert decode_assignment(data) == (("a", (0, 2)), ("b", (1,)))
    assert decode_assignment(b"\x00") == ()


def test_x_brokers_beats_the_environment_and_brokers_flag_beats_x() -> None:
    """The address in the error is the one with the highest precedence."""
    from click.testing import CliRunner

    from broker.cli.main import _register_commands, cli

    _register_commands()
    runner = CliRunner(env={"AILURUS_BROKERS": "127.0.0.1:1", "XDG_CONFIG_HOME": "/x"})
    result = runner.invoke(
        cli, hoist_global_flags(["topic", "list", "-X", "brokers=127.0.0.1:2"])
    )
    assert result.exit_code == 1
    assert "127.0.0.1:2" in result.stderr
    result = runner.invoke(cli, ["topic", "list"])
    assert "127.0.0.1:1" in result.stderr
    result = runner.invoke(
        cli, ["--brokers", "127.0.0.1:3", "-X", "brokers=127.0.0.1:2", "topic", "list"]
    )
    assert "127.0.0.1:3" in result.stderr
