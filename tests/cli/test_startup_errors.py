"""``ailurus serve`` that cannot start: one line on stderr naming the setting, an exit code.

Each test starts the real broker as a subprocess against one failure condition and
checks stderr is exactly one ``error: ...`` line (no traceback, no log lines) and the
documented exit code (broker.startup).
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from broker.startup import (
    EXIT_ADDRESS,
    EXIT_CONFIG,
    EXIT_DATA_DIR,
    EXIT_LOCKED,
)
from tests._broker import ROOT, BrokerProcess, start_broker

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2


def serve(
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``ailurus serve`` (free ports unless ``args`` say otherwise) to its exit."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AILURUS_")}
    full_env.update(env or {})
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "broker",
            "serve",
            "--data-dir",
            str(data_dir),
            "--kafka-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            *args,
        ],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=preexec_fn,
    )


def one_line(res: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line (asserting there is exactly one and no stdout)."""
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), lines
    assert res.stdout == ""
    return lines[0]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 another process (this one) is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_kafka_port_in_use(tmp_path: Path, taken_port: int) -> None:
    """A taken Kafka port names the address and --kafka-addr; exit 3; nothing recovered."""
    data_dir = tmp_path / "data"
    res = serve(data_dir, "--kafka-addr", f"127.0.0.1:{taken_port}")
    assert res.returncode == EXIT_ADDRESS
    assert one_line(res) == (
        f"error: 127.0.0.1:{taken_port} is already in use "
        "(change --kafka-addr / AILURUS_KAFKA_ADDR)"
    )
    assert not (data_dir / "kafka").exists()  # failed before opening storage


def test_named_kafka_listener_in_use_names_the_listener(
    tmp_path: Path, taken_port: int
) -> None:
    """With several listeners the line says which one could not bind."""
    res = serve(
        tmp_path / "data",
        "--kafka-addr",
        f"internal://127.0.0.1:0,external://127.0.0.1:{taken_port}",
    )
    assert res.returncode == EXIT_ADDRESS
    line = one_line(res)
    assert f"Kafka listener 'external' 127.0.0.1:{taken_port} is already in use" in line
    assert "--kafka-addr" in line


def test_admin_port_in_use(tmp_path: Path, taken_port: int) -> None:
    """A taken admin port names the address and --admin-addr; exit 3."""
    res = serve(tmp_path / "data", "--admin-addr", f"127.0.0.1:{taken_port}")
    assert res.returncode == EXIT_ADDRESS
    line = one_line(res)
    assert line.startswith(
        f"error: admin API address 127.0.0.1:{taken_port} is already in use "
        "(change --admin-addr / AILURUS_ADMIN_ADDR"
    ), line


def test_data_dir_locked_by_another_broker(tmp_path: Path) -> None:
    """A second broker on a data dir in use names the holder's pid; exit 4."""
    first: BrokerProcess = start_broker(tmp_path / "data")
    try:
        res = serve(tmp_path / "data")
        assert res.returncode == EXIT_LOCKED
        assert one_line(res) == (
            f"error: data dir {tmp_path / 'data'} is locked by another broker "
            f"(pid {first.proc.pid}) (stop it, or change --data-dir / AILURUS_DATA_DIR)"
        )
    finally:
        assert first.stop() == 0


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        (("--set", "retention.ms=soon"), {}, "retention.ms"),
        (("--set", "num.partitions=0"), {}, "num.partitions"),
        ((), {"AILURUS_NODE_ID": "abc"}, "AILURUS_NODE_ID"),
        (("--log-level", "loud"), {}, "--log-level"),
        (("--kafka-addr", "127.0.0.1:port"), {}, "127.0.0.1:port"),
    ],
)
def test_bad_config_value(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], names: str
) -> None:
    """A malformed flag, --set item or variable: one line naming it; exit 2."""
    res = serve(tmp_path / "data", *args, env=env)
    assert res.returncode == EXIT_CONFIG
    assert names in one_line(res)
    assert not (tmp_path / "data").exists()


def test_bad_config_file(tmp_path: Path) -> None:
    """A missing, malformed or unknown-key config file: one line naming it; exit 2."""
    missing = tmp_path / "missing.yaml"
    broken = tmp_path / "broken.yaml"
    broken.write_text("data_dir: [unclosed\n")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('kafka_adr = "127.0.0.1:0"\n')
    for path, expected in (
        (missing, f"cannot read config file {missing}"),
        (broken, f"bad config file {broken}: line 2, column 1: expected"),
        (unknown, "unknown keys in config file: ['kafka_adr']"),
    ):
        res = serve(tmp_path / "data", "--config", str(path))
        assert res.returncode == EXIT_CONFIG, res.stderr
        assert expected in one_line(res)


def _without_dac_override() -> None:
    """Runs in the child: as root, drop the capability to ignore file permissions."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_data_dir_permission_denied(tmp_path: Path) -> None:
    """A data dir this user may not write: one line naming --data-dir; exit 5."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(0o500)
    try:
        res = serve(
            data_dir,
            preexec_fn=_without_dac_override if os.geteuid() == 0 else None,
        )
    finally:
        data_dir.chmod(0o700)
    assert res.returncode == EXIT_DATA_DIR
    assert one_line(res) == (
        f"error: cannot use data dir {data_dir}: permission denied on "
        f"{data_dir / '.lock'} (give this user write access to it, or change "
        "--data-dir / AILURUS_DATA_DIR)"
    )


def test_corrupt_broker_configs_file(tmp_path: Path) -> None:
    """A broker-configs.json that is not JSON: one line naming the file; exit 5."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "broker-configs.json").write_text("{not json")
    res = serve(data_dir)
    assert res.returncode == EXIT_DATA_DIR
    line = one_line(res)
    assert line.startswith(f"error: unreadable {data_dir / 'broker-configs.json'}: ")
    assert line.endswith("(fix or remove the file)")


def test_unreadable_tls_files(tmp_path: Path) -> None:
    """A missing certificate or key file names its flag; exit 2."""
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    cert.write_text("not a certificate\n")
    tls = ("--kafka-addr", "ssl://127.0.0.1:0")
    res = serve(tmp_path / "data", *tls, "--tls-cert", str(cert), "--tls-key", str(key))
    assert res.returncode == EXIT_CONFIG
    assert one_line(res) == (
        f"error: cannot read {key}: no such file or directory "
        "(change --tls-key / AILURUS_TLS_KEY)"
    )
    key.write_text("not a key either\n")
    res = serve(tmp_path / "data", *tls, "--tls-cert", str(cert), "--tls-key", str(key))
    assert res.returncode == EXIT_CONFIG
    line = one_line(res)
    assert line.startswith("error: cannot load TLS material"), line
    assert "--tls-cert" in line


def test_debug_adds_the_traceback(tmp_path: Path, taken_port: int) -> None:
    """--debug shows the traceback, then the same one-line error and exit code."""
    res = serve(tmp_path / "data", "--kafka-addr", f"127.0.0.1:{taken_port}", "--debug")
    assert res.returncode == EXIT_ADDRESS
    assert "Traceback" in res.stderr
    assert res.stderr.splitlines()[-1] == (
        f"error: 127.0.0.1:{taken_port} is already in use "
        "(change --kafka-addr / AILURUS_KAFKA_ADDR)"
    )


def test_help_documents_the_exit_codes() -> None:
    """`ailurus serve --help` lists the exit codes these tests check."""
    res = subprocess.run(
        [sys.executable, "-m", "broker", "serve", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    text = " ".join(res.stdout.split())
    for code, meaning in (
        (EXIT_CONFIG, "bad configuration"),
        (EXIT_ADDRESS, "a listen address cannot be bound"),
        (EXIT_LOCKED, "data dir locked by another broker"),
        (EXIT_DATA_DIR, "data dir cannot be opened"),
    ):
        assert f"{code} {meaning}" in text
