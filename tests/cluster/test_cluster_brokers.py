"""Brokers as processes joining a cluster through a real etcd: registration, the
controller election, failover on a dead controller, a taken node id, an etcd
outage and a clean leave."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests._broker import BrokerProcess, free_port, start_cluster_broker
from tests.cluster.etcd import EtcdProcess
from tests.cluster.helpers import wait_for

PREFIX = "/ailurus"
SESSION_MS = 3000


@pytest.fixture
def cluster(
    tmp_path: Path, etcd: EtcdProcess
) -> Iterator[Callable[..., BrokerProcess]]:
    """Start brokers of one cluster (``node_id``, extra args); killed at the end."""
    started: list[BrokerProcess] = []

    def start(
        node_id: int,
        *args: str,
        session_timeout_ms: int = SESSION_MS,
        name: str | None = None,
    ) -> BrokerProcess:
        b = start_cluster_broker(
            tmp_path / f"data-{name or node_id}",
            node_id,
            etcd.url(PREFIX),
            *args,
            session_timeout_ms=session_timeout_ms,
            log_dir=tmp_path / f"logs-{node_id}",
        )
        started.append(b)
        return b

    try:
        yield start
    finally:
        for b in started:
            b.kill()


def _brokers(etcd: EtcdProcess) -> list[int]:
    return sorted(int(k.rsplit("/", 1)[1]) for k in etcd.keys(f"{PREFIX}/brokers/"))


def _controller(etcd: EtcdProcess) -> int | None:
    _, out = etcd.ctl("get", f"{PREFIX}/controller", "--print-value-only")
    return int(json.loads(out)["node_id"]) if out.strip() else None


# Poll etcd and the brokers' logs every 0.1 s, for at most 15 s by default.
_wait = functools.partial(wait_for, timeout=15, interval=0.1)


def test_three_brokers_register_and_one_is_controller(
    etcd: EtcdProcess, cluster: Callable[..., BrokerProcess]
) -> None:
    """Three brokers register their endpoints and exactly one is elected."""
    brokers = [cluster(i) for i in (1, 2, 3)]
    assert _brokers(etcd) == [1, 2, 3]
    _, raw = etcd.ctl("get", f"{PREFIX}/brokers/2", "--print-value-only")
    info = json.loads(raw)
    assert info["node_id"] == 2
    assert info["endpoints"][0]["port"] == brokers[1].port
    assert info["admin"] == f"127.0.0.1:{brokers[1].admin_port}"
    _wait("a controller", lambda: _controller(etcd) is not None)
    controller = _controller(etcd)
    for b in brokers:
        joined = b.events("cluster_joined")
        assert len(joined) == 1
        assert joined[0]["cluster_id"] == "ailurus-dev"
    elected = [
        (i, e)
        for i, b in zip((1, 2, 3), brokers, strict=True)
        for e in b.events("controller_elected")
    ]
    assert [i for i, _ in elected] == [controller]
    # every broker's cache saw the other two register
    _wait(
        "every broker to see the others",
        lambda: all(
            {e["node_id"] for e in b.events("broker_registered")} == {1, 2, 3}
            for b in brokers
        ),
    )


def test_another_broker_takes_over_from_a_killed_controller_within_the_session(
    etcd: EtcdProcess, cluster: Callable[..., BrokerProcess]
) -> None:
    """kill -9 of the controller: its key and registration expire with its lease
    and another broker is controller within the session timeout."""
    brokers = {i: cluster(i) for i in (1, 2)}
    _wait("a controller", lambda: _controller(etcd) is not None)
    first = _controller(etcd)
    assert first is not None
    brokers[first].kill()
    took = _wait(
        "a new controller", lambda: _controller(etcd) not in (None, first), timeout=15
    )
    assert took < SESSION_MS / 1000 + 2
    assert _brokers(etcd) == [i for i in (1, 2) if i != first]
    survivor = brokers[next(i for i in brokers if i != first)]
    assert survivor.events("controller_elected")
    _wait("broker_lost", lambda: bool(survivor.events("broker_lost")))
    assert survivor.events("broker_lost")[0]["node_id"] == first


def test_a_taken_node_id_refuses_to_start(
    etcd: EtcdProcess, cluster: Callable[..., BrokerProcess]
) -> None:
    """A second broker with a registered node id exits 2 naming the node id."""
    cluster(1)
    with pytest.raises(RuntimeError) as e:
        cluster(1, name="other")
    text = str(e.value)
    assert "broker exited with 2" in text
    assert "node id 1 is already registered" in text
    assert "--node-id" in text
    assert _brokers(etcd) == [1]


def test_unreachable_etcd_refuses_to_start_naming_the_flag(tmp_path: Path) -> None:
    """No etcd at --cluster: the broker exits 1 with one line naming --cluster."""
    with pytest.raises(RuntimeError) as e:
        start_cluster_broker(
            tmp_path / "data",
            1,
            f"etcd://127.0.0.1:{free_port()}/x",
            log_dir=tmp_path / "logs",
            timeout=30,
        )
    text = str(e.value)
    assert "broker exited with 1" in text
    assert "cannot reach etcd" in text
    assert "--cluster" in text


def test_brokers_ride_out_an_etcd_restart(
    etcd: EtcdProcess, cluster: Callable[..., BrokerProcess]
) -> None:
    """etcd down for a few seconds: brokers keep running, their registrations and
    a controller are there once it is back, and the outage is logged once."""
    brokers = [cluster(i) for i in (1, 2)]
    _wait("a controller", lambda: _controller(etcd) is not None)
    etcd.stop()
    time.sleep(2)  # an outage shorter than a session (etcd keeps leases)
    etcd.start()
    assert all(b.proc.poll() is None for b in brokers)
    _wait("both registrations", lambda: _brokers(etcd) == [1, 2])
    _wait("a controller", lambda: _controller(etcd) is not None)
    for b in brokers:
        _wait("etcd_reconnected", lambda b=b: bool(b.events("etcd_reconnected")))
        assert len(b.events("etcd_unavailable")) == 1
        assert len(b.events("etcd_reconnected")) == 1
    assert all(b.proc.poll() is None for b in brokers)


def _lease_of(etcd: EtcdProcess, key: str) -> int:
    _, out = etcd.ctl("get", key, "-w", "json")
    kvs = json.loads(out).get("kvs", [])
    return int(kvs[0]["lease"]) if kvs else 0


def test_a_broker_whose_session_expired_registers_again(
    etcd: EtcdProcess, cluster: Callable[..., BrokerProcess]
) -> None:
    """A lost session (its lease revoked, as when it expires) deletes the broker's
    keys; the broker keeps running, registers under a new lease and is elected
    again."""
    b = cluster(1)
    _wait("a controller", lambda: _controller(etcd) == 1)
    lease = _lease_of(etcd, f"{PREFIX}/brokers/1")
    assert lease != 0
    assert _lease_of(etcd, f"{PREFIX}/controller") == lease
    etcd.ctl("lease", "revoke", f"{lease:x}")
    _wait(
        "a new registration",
        lambda: _lease_of(etcd, f"{PREFIX}/brokers/1") not in (0, lease),
    )
    _wait("a controller", lambda: _controller(etcd) == 1)
    assert b.proc.poll() is None
    assert b.events("session_expired")
    assert b.events("broker_registered_again")
    _wait("controller_resigned", lambda: bool(b.events("controller_resigned")))
    assert len(b.events("controller_elected")) == 2


def test_sigterm_removes_the_registration_at_once(
    etcd: EtcdProcess, cluster: Callable[..., BrokerProcess]
) -> None:
    """A stopped broker deletes its key and revokes its lease: gone at exit, long
    before its session would expire; the controller moves to the other broker."""
    a = cluster(1, session_timeout_ms=60_000)
    _wait("a controller", lambda: _controller(etcd) == 1)
    cluster(2, session_timeout_ms=60_000)
    assert _brokers(etcd) == [1, 2]
    assert a.stop() == 0
    assert _brokers(etcd) == [2]
    assert a.events("cluster_left")
    assert a.events("controller_resigned")
    _wait("the other broker as controller", lambda: _controller(etcd) == 2, timeout=10)
