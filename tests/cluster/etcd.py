"""A real etcd for tests: one ``etcd`` process on free 127.0.0.1 ports.

:class:`EtcdProcess` starts ``/usr/bin/etcd`` (Debian's etcd-server 3.4) with its
own data dir, waits until it answers, and can be stopped, killed and restarted on
the same ports and data dir (what an outage of the cluster's store looks like to
the brokers). ``endpoint`` is ``host:port``; ``url(prefix)`` is what ``--cluster``
takes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests._broker import free_port

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
INSTALL_HINT = (
    "the cluster tests need etcd 3.4+ and etcdctl: `make test` installs them "
    "(`make clients`; apt: etcd-server etcd-client)"
)


def missing_etcd() -> str | None:
    """Why a real etcd cannot run here (a message naming the fix), or None."""
    missing = [p for p in (ETCD, ETCDCTL) if not os.access(p, os.X_OK)]
    if not missing:
        return None
    return f"{' and '.join(missing)} not found: {INSTALL_HINT}"


class EtcdProcess:
    """One single-member etcd on 127.0.0.1."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def url(self, prefix: str = "/ailurus") -> str:
        return f"etcd://{self.endpoint}{prefix}"

    def start(self, timeout: float = 15) -> None:
        """Start (or start again on the same ports and data dir) and wait until
        it accepts client connections and answers a read."""
        assert self.proc is None or self.proc.poll() is not None
        if (why := missing_etcd()) is not None:
            raise RuntimeError(why)
        peer = f"http://127.0.0.1:{self.peer_port}"
        client = f"http://{self.endpoint}"
        cmd = [
            ETCD,
            "--data-dir",
            str(self.data_dir),
            "--name",
            "n",
            "--listen-client-urls",
            client,
            "--advertise-client-urls",
            client,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            f"n={peer}",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"etcd exited with {self.proc.returncode}:\n"
                    + self.log_path.read_text()[-4000:]
                )
            if self._answers():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"etcd not ready in {timeout}s")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.client_port), 0.5):
                pass
        except OSError:
            return False
        return self.ctl("get", "--prefix", "/__ready_probe", check=False)[0] == 0

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def ctl(self, *args: str, check: bool = True) -> tuple[int, str]:
        """Run ``etcdctl`` (API v3) against this etcd: (exit code, stdout)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        env["ETCDCTL_API"] = "3"
        r = subprocess.run(
            [ETCDCTL, "--endpoints", self.endpoint, "--dial-timeout", "2s", *args],
            capture_output=True,
            env=env,
            timeout=20,
            check=False,
        )
        if check and r.returncode != 0:
            raise RuntimeError(f"etcdctl {args} failed: {r.stderr.decode()}")
        return r.returncode, r.stdout.decode()

    def keys(self, prefix: str) -> list[str]:
        """The keys under ``prefix`` now."""
        _, out = self.ctl("get", "--prefix", "--keys-only", prefix)
        return [line for line in out.splitlines() if line.strip()]
