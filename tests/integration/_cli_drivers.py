"""Drivers for the command-line clients: kcat and kafkajs (``node``), as subprocesses.

Same interface as the in-process drivers in ``_client_drivers``: kcat produces from
``key<TAB>value`` lines and prints what it reads with a ``-f`` format; kafkajs runs
``tests/js/kafka_client.js``, which speaks JSON lines. Followers (consumers at the
latest offset) keep the process running and read its stdout without blocking.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.integration._client_drivers import (
    READ_TIMEOUT_S,
    Follower,
    Rec,
    Start,
    ck_create_topic,
    ck_delete_topic,
    rec_from_json,
    rec_to_json,
)

JS_RUNNER = Path(__file__).resolve().parents[1] / "js" / "kafka_client.js"
KCAT = "/usr/bin/kcat"


class LineFollower:
    """Reads the records a subprocess prints, one per line, without blocking."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        parse: Callable[[str], Rec | None],
        *,
        encoding: str,
    ) -> None:
        self.proc = proc
        self.encoding = encoding
        self.parse = parse
        self.buf = b""
        self.sel = selectors.DefaultSelector()
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        self.sel.register(proc.stdout, selectors.EVENT_READ)

    def read_line(self, timeout: float) -> str | None:
        """The next full line, or None if none arrives within ``timeout``."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                return None
            assert self.proc.stdout is not None
            chunk = self.proc.stdout.read()
            if not chunk:
                if self.proc.poll() is not None:
                    raise AssertionError(f"follower exited {self.proc.returncode}")
                continue
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode(self.encoding)

    def poll(self, timeout: float) -> list[Rec]:
        out: list[Rec] = []
        line = self.read_line(timeout)
        while line is not None:
            r = self.parse(line)
            if r is not None:
                out.append(r)
            line = self.read_line(0.05)
        return out

    def close(self) -> None:
        self.sel.close()
        self.proc.kill()
        self.proc.wait(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


# kcat prints: partition, offset, timestamp, key, headers (n=v CSV), value
_KCAT_FMT = r"%p\t%o\t%T\t%k\t%h\t%s\n"  # kcat expands the escapes
KCAT_HEADERS = (("src", b"kcat"), ("h1", b"v1"))


def _kcat_parse(line: str) -> Rec:
    p, o, ts, key, headers, value = line.split("\t", 5)
    hs = tuple(
        (k, v.encode("latin1"))
        for k, _, v in (h.partition("=") for h in headers.split(",") if h)
    )
    return Rec(
        partition=int(p),
        offset=int(o),
        key=key.encode("latin1"),
        value=value.encode("latin1"),
        headers=hs,
        timestamp=int(ts),
    )


class KcatDriver:
    name: str = "kcat"
    codecs: tuple[str, ...] = ("none", "gzip", "snappy", "lz4", "zstd")
    varied_records: bool = False

    def create_topic(self, bootstrap: str, topic: str, partitions: int) -> None:
        ck_create_topic(bootstrap, topic, partitions)  # kcat has no admin API

    def delete_topic(self, bootstrap: str, topic: str) -> None:
        ck_delete_topic(bootstrap, topic)

    def produce(
        self,
        bootstrap: str,
        topic: str,
        codec: str,
        records: Sequence[Rec],
        *,
        idempotent: bool = False,
    ) -> None:
        for p in sorted({r.partition for r in records}):
            lines = b"".join(
                (r.key or b"") + b"\t" + (r.value or b"") + b"\n"
                for r in records
                if r.partition == p
            )
            assert all(r.headers == KCAT_HEADERS for r in records)
            cmd = [KCAT, "-P", "-b", bootstrap, "-t", topic, "-p", str(p), "-K", "\t"]
            cmd += ["-X", f"compression.codec={codec}", "-X", "acks=all"]
            if idempotent:
                cmd += ["-X", "enable.idempotence=true"]
            for k, v in KCAT_HEADERS:
                cmd += ["-H", f"{k}={v.decode()}"]
            subprocess.run(
                cmd, input=lines, check=True, timeout=60, capture_output=True
            )

    def read(
        self, bootstrap: str, topic: str, starts: dict[int, tuple[Start, int]]
    ) -> dict[int, list[Rec]]:
        out: dict[int, list[Rec]] = {}
        for p, (start, n) in starts.items():
            offset = "beginning" if start == "earliest" else str(start)
            cmd = [KCAT, "-C", "-b", bootstrap, "-t", topic, "-p", str(p), "-o", offset]
            cmd += ["-c", str(n), "-e", "-q", "-f", _KCAT_FMT]
            proc = subprocess.run(
                cmd,
                check=True,
                timeout=READ_TIMEOUT_S,
                capture_output=True,
            )
            text = proc.stdout.decode("latin1")
            out[p] = [_kcat_parse(line) for line in text.split("\n") if line]
        return out

    def follow_latest(self, bootstrap: str, topic: str, partition: int) -> Follower:
        cmd = [KCAT, "-C", "-b", bootstrap, "-t", topic, "-p", str(partition)]
        cmd += ["-o", "end", "-u", "-q", "-f", _KCAT_FMT]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return LineFollower(proc, _kcat_parse, encoding="latin1")


def _brokers(bootstrap: str) -> list[str]:
    """kafkajs takes a list of brokers; the drivers take Kafka's comma-separated
    bootstrap string."""
    return bootstrap.split(",")


class KafkajsDriver:
    name: str = "kafkajs"
    # gzip is built in; snappy, lz4 and zstd are plugins (tests/js/codecs.js)
    codecs: tuple[str, ...] = ("none", "gzip", "snappy", "lz4", "zstd")
    varied_records: bool = True

    def _run(self, command: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
        proc = subprocess.run(
            ["node", str(JS_RUNNER), command, json.dumps(spec)],
            capture_output=True,
            timeout=READ_TIMEOUT_S + 30,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"kafkajs {command} failed: {proc.stderr.decode(errors='replace')}"
            )
        return [json.loads(line) for line in proc.stdout.decode().split("\n") if line]

    def create_topic(self, bootstrap: str, topic: str, partitions: int) -> None:
        [result] = self._run(
            "create",
            {"brokers": _brokers(bootstrap), "topic": topic, "partitions": partitions},
        )
        assert result == {"created": True, "listed": True}

    def delete_topic(self, bootstrap: str, topic: str) -> None:
        [result] = self._run("delete", {"brokers": _brokers(bootstrap), "topic": topic})
        assert result == {"deleted": True, "listed": False}

    def produce(
        self,
        bootstrap: str,
        topic: str,
        codec: str,
        records: Sequence[Rec],
        *,
        idempotent: bool = False,
    ) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as f:
            f.write("\n".join(rec_to_json(r) for r in records) + "\n")
            f.flush()
            spec = {
                "brokers": _brokers(bootstrap),
                "topic": topic,
                "codec": codec,
                "file": f.name,
                "idempotent": idempotent,
            }
            [result] = self._run("produce", spec)
        assert result == {"acked": len(records)}

    def read(
        self, bootstrap: str, topic: str, starts: dict[int, tuple[Start, int]]
    ) -> dict[int, list[Rec]]:
        spec = {
            "brokers": _brokers(bootstrap),
            "topic": topic,
            "starts": [
                {"partition": p, "offset": s, "count": n}
                for p, (s, n) in starts.items()
            ],
            "timeoutMs": int(READ_TIMEOUT_S * 1000),
        }
        out: dict[int, list[Rec]] = {p: [] for p in starts}
        for d in self._run("consume", spec):
            r = rec_from_json(d)
            out[r.partition].append(r)
        return out

    def follow_latest(self, bootstrap: str, topic: str, partition: int) -> Follower:
        spec = {
            "brokers": _brokers(bootstrap),
            "topic": topic,
            "starts": [{"partition": partition, "offset": "latest", "count": 10**6}],
            "timeoutMs": int(READ_TIMEOUT_S * 1000),
        }
        proc = subprocess.Popen(
            ["node", str(JS_RUNNER), "consume", json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

        def parse(line: str) -> Rec | None:
            d = json.loads(line)
            return None if "ready" in d else rec_from_json(d)

        follower = LineFollower(proc, parse, encoding="utf-8")
        # the runner prints {"ready": ...} once "latest" is resolved (ListOffsets)
        line = follower.read_line(30)
        assert line is not None
        assert "ready" in json.loads(line), line
        return follower
