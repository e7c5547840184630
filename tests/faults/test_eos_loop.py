"""Exactly-once under SIGKILL: a consume-transform-produce loop over a single node.

A confluent-kafka application (``tests/faults/eos_app.py``, its own process) reads
an input topic of keyed records in a group and writes one output record per input
record, with the group's offsets, in transactions. Meanwhile the harness SIGKILLs
the application at random points (a new instance with the same transactional.id
fences the old one, aborts its open transaction and resumes from the committed
offsets) and SIGKILLs the broker (started again on the same data dir and port);
it also SIGSTOPs an instance, starts a new one beside it and lets the stopped one
run again once the new one has committed: that zombie must exit fenced.
Once the group's committed offsets reach the end of the input, the output read with
read_committed holds every input key exactly once; read_uncommitted may hold the
output of aborted transactions too, which is counted and printed.

The randomness is seeded; the seed is printed (``EOS_SEED=...`` runs it again).
The bounded version runs with ``make test``; the long one is marked slow.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests._broker import ROOT, BrokerProcess, free_port, start_broker
from tests.faults.eos_checker import EosVerdict, check, read_keys

pytestmark = pytest.mark.integration

SOURCE, SINK, GROUP, TXN_ID = "eos-in", "eos-out", "eos-app", "eos-app-tx"
PARTITIONS = 3
TIMEOUT_S = 60.0


@dataclass
class _App:
    """The application's current process; each instance logs to its own file."""

    bootstrap: str
    logs: Path
    batch: int
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    outputs: list[IO[bytes]] = field(default_factory=list)
    zombies: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        out = (self.logs / f"app-{self.starts}.log").open("wb")
        self.outputs.append(out)
        self.starts += 1
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.faults.eos_app",
                self.bootstrap,
                SOURCE,
                SINK,
                GROUP,
                TXN_ID,
                str(self.batch),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def pause(self) -> subprocess.Popen[bytes]:
        """SIGSTOP the current instance and start a new one beside it; the stopped
        one (a zombie once it runs again) is returned."""
        assert self.proc is not None
        zombie = self.proc
        zombie.send_signal(signal.SIGSTOP)
        self.zombies.append(zombie)
        self.start()
        return zombie

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        for zombie in self.zombies:
            if zombie.poll() is None:
                zombie.kill()  # SIGKILL ends a stopped process too
            zombie.wait(timeout=10)
        for out in self.outputs:
            out.close()

    def lines(self, word: str) -> int:
        return sum(
            (self.logs / f"app-{n}.log").read_text().count(f'"{word}"')
            for n in range(self.starts)
        )


def _fill(bootstrap: str, records: int) -> dict[int, int]:
    """``records`` keyed input records over the partitions; end offset per partition."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for i in range(records):
        producer.produce(SOURCE, b"", key=f"{i:07d}".encode(), partition=i % PARTITIONS)
        if i % 10000 == 0:
            producer.poll(0)
    assert producer.flush(TIMEOUT_S) == 0
    return {p: len(range(p, records, PARTITIONS)) for p in range(PARTITIONS)}


def _committed(probe: Consumer) -> int:
    """How many input records the group's committed offsets cover (0 if unknown)."""
    tps = [TopicPartition(SOURCE, p) for p in range(PARTITIONS)]
    try:
        return sum(max(tp.offset, 0) for tp in probe.committed(tps, 5))
    except KafkaException:
        return 0


def run_loop(
    tmp: Path,
    records: int,
    app_kills: int,
    broker_kills: int,
    batch: int,
    zombies: int = 0,
) -> EosVerdict:
    """Run the application over ``records`` input records with the given numbers of
    SIGKILLs and zombies, at random points; the checker's verdict on the output.

    A zombie is an instance SIGSTOPped while a new one starts beside it, and let run
    again (SIGCONT) once the new one has committed: it must exit fenced (status 3)
    without writing anything that counts.
    """
    seed = int(os.environ.get("EOS_SEED", random.randrange(1 << 32)))
    print(f"EOS_SEED={seed}")
    rng = random.Random(seed)
    faults = ["app"] * app_kills + ["broker"] * broker_kills + ["zombie"] * zombies
    rng.shuffle(faults)
    # Each fault fires once the committed offsets pass a random share of the input,
    # after a random delay so that it lands anywhere in a transaction.
    points = sorted(rng.uniform(0.05, 0.9) for _ in faults)
    port = free_port()
    data, logs = tmp / "data", tmp / "logs"

    def broker_up() -> BrokerProcess:
        return start_broker(data, port=port, log_dir=logs, timeout=TIMEOUT_S)

    broker = broker_up()
    app = _App(broker.bootstrap, logs, batch)
    probe = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": GROUP,
            "reconnect.backoff.max.ms": 1000,
        }
    )
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for future in admin.create_topics(
            [NewTopic(t, PARTITIONS, 1) for t in (SOURCE, SINK)]
        ).values():
            future.result(TIMEOUT_S)
        ends = _fill(broker.bootstrap, records)
        assert sum(ends.values()) == records
        app.start()
        paused: list[tuple[subprocess.Popen[bytes], int]] = []  # (zombie, at)
        resumed: list[subprocess.Popen[bytes]] = []
        deadline = time.monotonic() + 10 * TIMEOUT_S
        while (done := _committed(probe)) < records or faults or paused:
            assert time.monotonic() < deadline, f"stuck at {done} of {records}"
            if not app.alive():
                app.start()  # exited on its own (fenced, or a fatal error)
            for zombie, at in list(paused):
                if done > at or done >= records:  # the new instance committed
                    print(f"resume zombie at {done}/{records}")
                    zombie.send_signal(signal.SIGCONT)
                    paused.remove((zombie, at))
                    resumed.append(zombie)
            if faults and done >= points[0] * records:
                time.sleep(rng.uniform(0, 0.3))
                points.pop(0)
                fault = faults.pop(0)
                print(f"{fault} at {_committed(probe)}/{records}")
                if fault == "app":
                    app.kill()
                    app.start()
                elif fault == "zombie":
                    paused.append((app.pause(), _committed(probe)))
                else:
                    broker.kill()
                    broker = broker_up()
            time.sleep(0.05)
        for zombie in resumed:
            assert zombie.wait(TIMEOUT_S) == 3, "a zombie was not fenced"
        app.kill()
        committed = read_keys(broker.bootstrap, SINK, PARTITIONS, "read_committed")
        uncommitted = read_keys(broker.bootstrap, SINK, PARTITIONS, "read_uncommitted")
        verdict = check((f"{i:07d}" for i in range(records)), committed, uncommitted)
        print(
            f"{verdict.summary()} app_starts={app.starts} zombies={len(resumed)} "
            f"app_aborts={app.lines('abort')} app_fatal={app.lines('fatal')}"
        )
        return verdict
    finally:
        probe.close()
        app.close()
        if broker.proc.poll() is None:
            assert broker.stop() == 0


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    (tmp_path / "logs").mkdir()
    return tmp_path


def test_exactly_once_with_app_and_broker_kills(tmp: Path) -> None:
    """20,000 records through the loop with the app killed twice, the broker once
    and one zombie instance fenced: read_committed output holds every input key
    exactly once."""
    verdict = run_loop(tmp, 20_000, app_kills=2, broker_kills=1, batch=200, zombies=1)
    assert verdict.ok, verdict.summary()
    assert verdict.committed == 20_000


@pytest.mark.slow
def test_exactly_once_soak(tmp: Path) -> None:
    """100,000 records with the app killed five times, the broker five times and
    two zombie instances fenced: read_committed output holds every input key
    exactly once."""
    verdict = run_loop(tmp, 100_000, app_kills=5, broker_kills=5, batch=500, zombies=2)
    assert verdict.ok, verdict.summary()
    assert verdict.committed == 100_000
