"""The Makefile's install steps: ``make run`` installs the runtime only; ``make test``
installs the test extra and re-installs the system tools whenever one is missing.

``make -n`` shows what a target would run; the ``clients`` step runs for real with a
PATH of stand-ins (apt-get and npm record their arguments instead of installing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("kcat", "tmux", "etcd", "etcdctl")
APT_PACKAGES = "kcat tmux etcd-server etcd-client"


def _make(*args: str, env: dict[str, str] | None = None) -> str:
    make = shutil.which("make")
    assert make is not None, "make is needed to build this project"
    out = subprocess.run(
        [make, "--no-print-directory", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_run_installs_the_runtime_without_the_test_extra(tmp_path: Path) -> None:
    """In a fresh venv, `make run` pip-installs `-e .` only, then serves."""
    commands = _make("-n", "run", f"VENV={tmp_path / 'venv'}").splitlines()
    installs = [c for c in commands if " install " in c and "pip" in c]
    assert any(c.endswith("install -q -e .") for c in installs), commands
    assert not any("[test" in c for c in commands), commands
    assert commands[-1].endswith("ailurus serve --data-dir ./data")


def test_test_installs_the_test_extra(tmp_path: Path) -> None:
    """In a fresh venv, `make test` installs the test extra before linting."""
    commands = _make("-n", "test", f"VENV={tmp_path / 'venv'}").splitlines()
    assert any(c.endswith("install -q -e '.[test]'") for c in commands), commands


def _stand_ins(bin_dir: Path, log: Path, present: tuple[str, ...]) -> dict[str, str]:
    """A PATH holding ``present`` tools and recording apt-get/npm stand-ins."""
    bin_dir.mkdir()
    for name in present:
        tool = bin_dir / name
        tool.write_text("#!/bin/sh\nexit 0\n")
        tool.chmod(0o755)
    for name in ("apt-get", "npm", "sudo"):
        stand_in = bin_dir / name
        if name == "sudo":
            stand_in.write_text(f'#!/bin/sh\necho "sudo $*" >> {log}\nexec "$@"\n')
        else:
            stand_in.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n')
        stand_in.chmod(0o755)
    env_tool = shutil.which("env")
    id_tool = shutil.which("id")
    assert env_tool is not None
    assert id_tool is not None
    (bin_dir / "env").symlink_to(env_tool)
    (bin_dir / "id").symlink_to(id_tool)
    return {"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/")}


@pytest.mark.parametrize("missing", TOOLS)
def test_clients_installs_the_apt_packages_when_a_tool_is_missing(
    tmp_path: Path, missing: str
) -> None:
    """Any one of kcat, tmux, etcd, etcdctl missing: apt installs all four packages."""
    log = tmp_path / "calls.log"
    env = _stand_ins(tmp_path / "bin", log, tuple(t for t in TOOLS if t != missing))
    _make("clients", env=env)
    apt_calls = [
        line.removeprefix("sudo ").removeprefix("env DEBIAN_FRONTEND=noninteractive ")
        for line in log.read_text().splitlines()
        if line.startswith("apt-get") or " apt-get" in line
    ]
    assert "apt-get update -qq" in apt_calls
    assert f"apt-get install -y -qq {APT_PACKAGES}" in apt_calls


def test_clients_skips_apt_when_every_tool_is_there(tmp_path: Path) -> None:
    """With every tool on PATH the apt step does nothing."""
    log = tmp_path / "calls.log"
    env = _stand_ins(tmp_path / "bin", log, TOOLS)
    _make("clients", env=env)
    calls = log.read_text().splitlines() if log.exists() else []
    assert not [c for c in calls if "apt-get" in c], calls
