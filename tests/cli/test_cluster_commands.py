"""``ailurus cluster info|health|partitions|elect|reassign`` against a single node:
a cluster of one, its own controller, leading every partition."""

from __future__ import annotations

import json

from tests.cli.conftest import Target, invoke, unique


def _topic(target: Target, partitions: int = 3) -> str:
    topic = unique("cl")
    res = invoke(target, "topic", "create", topic, "-p", str(partitions))
    assert res.exit_code == 0, res.stderr
    return topic


def test_partitions_show_leader_epoch_replicas_isr_and_local_offsets(
    ailurus: Target,
) -> None:
    """Every partition is led by node 0 at epoch 0 with ISR [0]; the high watermark
    is this broker's log."""
    topic = _topic(ailurus)
    produced = invoke(ailurus, "topic", "produce", topic, "-p", "1", stdin=b"a\nb\n")
    assert produced.exit_code == 0, produced.stderr
    res = invoke(ailurus, "--format", "json", "cluster", "partitions", topic)
    assert res.exit_code == 0, res.stderr
    rows = res.json()
    assert isinstance(rows, list)
    assert [(p["topic"], p["partition"]) for p in rows] == [
        (topic, i) for i in range(3)
    ]
    for p in rows:
        assert (p["leader"], p["leader_epoch"]) == (0, 0)
        assert (p["replicas"], p["isr"], p["offline_replicas"]) == ([0], [0], [])
        assert p["leaderless"] is False
    assert [p["local"]["high_watermark"] for p in rows] == [0, 2, 0]

    text = invoke(ailurus, "cluster", "partitions", topic)
    assert text.exit_code == 0
    lines = text.stdout.decode().splitlines()
    assert lines[0].split()[:6] == [
        "TOPIC",
        "PARTITION",
        "LEADER",
        "EPOCH",
        "REPLICAS",
        "ISR",
    ]
    assert lines[2].split()[:6] == [topic, "1", "0", "0", "0", "0"]
    assert lines[2].split()[-1] == "2"

    everything = invoke(ailurus, "--format", "json", "cluster", "partitions")
    all_rows = everything.json()
    assert isinstance(all_rows, list)
    assert {(p["topic"], p["partition"]) for p in rows} <= {
        (p["topic"], p["partition"]) for p in all_rows
    }


def test_partitions_of_an_unknown_topic_is_one_line(ailurus: Target) -> None:
    """The admin API's 404 becomes one error line and exit 1."""
    res = invoke(ailurus, "cluster", "partitions", unique("missing"))
    assert res.exit_code == 1
    [line] = res.stderr.decode().splitlines()
    assert line.startswith("error: admin API 404: unknown topic")


def test_info_counts_the_partitions_each_broker_leads_and_hosts(
    ailurus: Target,
) -> None:
    """The one broker is the controller and leads and hosts every partition."""
    _topic(ailurus, 4)
    res = invoke(ailurus, "--format", "json", "cluster", "info")
    assert res.exit_code == 0, res.stderr
    info = res.json()
    assert isinstance(info, dict)
    [broker] = info["brokers"]
    assert broker["is_controller"] is True
    assert broker["node_id"] == info["controller_id"] == 0
    assert broker["leader_partitions"] == broker["replica_partitions"]
    assert broker["leader_partitions"] == info["partitions"] >= 4
    text = invoke(ailurus, "cluster", "info").stdout.decode()
    assert "LEADERS" in text
    assert "0*" in text  # the controller mark


def test_health_prints_rpk_overview_and_exits_zero(ailurus: Target) -> None:
    """Healthy: a controller, all nodes, no one down, no leaderless partition."""
    res = invoke(ailurus, "cluster", "health")
    assert res.exit_code == 0, res.stdout
    lines = res.stdout.decode().splitlines()
    assert lines[0].startswith("HEALTHY")
    overview = dict(line.split(":", 1) for line in lines[3:])
    assert lines[1:3] == ["CLUSTER HEALTH OVERVIEW", "======================="]
    assert {k: v.strip() for k, v in overview.items()} == {
        "Healthy": "true",
        "Unhealthy reasons": "[]",
        "Controller ID": "0",
        "All nodes": "[0]",
        "Nodes down": "[]",
        "Leaderless partitions (0)": "[]",
        "Under-replicated partitions (0)": "[]",
    }
    report = json.loads(invoke(ailurus, "--format", "json", "cluster", "health").stdout)
    assert report["controller_id"] == 0
    assert report["all_nodes"] == [0]
    assert report["unhealthy_reasons"] == []


def test_health_without_admin_api_names_the_reason(tansu: Target) -> None:
    """Against a broker with no admin API the overview says not_ready, exit 1."""
    res = invoke(tansu, "cluster", "health")
    assert res.exit_code == 1
    out = res.stdout.decode()
    assert out.startswith("UNHEALTHY")
    assert "Healthy:" in out
    assert "not_ready" in out


def test_elect_and_reassign_on_a_single_node_say_why(ailurus: Target) -> None:
    """A single node has no leader to move: exit 1 with the admin API's reason."""
    topic = _topic(ailurus, 1)
    for args in (
        ("cluster", "elect", f"{topic}:0"),
        ("cluster", "elect", topic),
        ("cluster", "reassign", f"{topic}:0", "--replicas", "1,2"),
    ):
        res = invoke(ailurus, *args)
        assert res.exit_code == 1, args
        [line] = res.stderr.decode().splitlines()
        assert "admin API 400" in line, line
        assert "single node" in line, line


def test_elect_and_reassign_refuse_malformed_targets(ailurus: Target) -> None:
    """A target without a partition, a non-numeric partition or replica list: one
    line, exit 1, nothing sent."""
    for args, says in (
        (("cluster", "reassign", "t", "--replicas", "1"), "TOPIC:PARTITION"),
        (("cluster", "elect", "t:x"), "must be a number"),
        (("cluster", "reassign", "t:0", "--replicas", "1,b"), "node ids"),
    ):
        res = invoke(ailurus, *args)
        assert res.exit_code == 1, args
        [line] = res.stderr.decode().splitlines()
        assert says in line, line
