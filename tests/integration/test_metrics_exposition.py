"""``GET /metrics`` parses as Prometheus text, family by family, and says what the
broker did: connections, consumer-group lag per partition and ``process_*``.

The whole exposition is checked twice: by prometheus_client's text parser and by a
strict checker below (HELP and TYPE once per family and before its samples, unique
family names, counter ``X_total`` not colliding with a family ``X``, samples named
after their family, no empty ``{}``, no duplicate series). The families must be the
ones docs/metrics.md lists.
"""

from __future__ import annotations

import math
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka.structs import OffsetAndMetadata
from prometheus_client.parser import text_string_to_metric_families

from tests._broker import ROOT, BrokerProcess, start_broker

pytestmark = pytest.mark.integration

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(
    rf"^(?P<name>{_NAME})(?:\{{(?P<labels>{_LABEL}(?:,{_LABEL})*)\}})? (?P<value>\S+)$"
)
_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def strict_families(text: str) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Family name → (type, [(sample name, labels)]); AssertionError if anything in
    ``text`` is off the text format's rules."""
    assert text.endswith("\n")
    assert not text.endswith("\n\n")
    families: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    helped: set[str] = set()
    current: str | None = None
    series: set[tuple[str, str]] = set()
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert re.fullmatch(_NAME, name), line
            assert name not in helped, f"second HELP: {line}"
            assert name not in families, f"HELP after TYPE: {line}"
            helped.add(name)
            current = None
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in _TYPES, line
            assert name in helped, f"TYPE without HELP: {line}"
            assert name not in families, f"second TYPE: {line}"
            families[name] = (kind, [])
            current = name
            continue
        assert not line.startswith("#"), f"stray comment: {line}"
        assert "{}" not in line, f"empty label braces: {line}"
        m = _SAMPLE.match(line)
        assert m is not None, f"not a sample line: {line!r}"
        assert current is not None, f"sample outside its family: {line}"
        kind, samples = families[current]
        sample = m["name"]
        if kind == "histogram":
            assert sample in (f"{current}_bucket", f"{current}_sum", f"{current}_count")
            if sample.endswith("_bucket"):
                assert 'le="' in (m["labels"] or ""), line
        else:
            assert sample == current, f"{sample} in family {current}"
        float(m["value"])  # a number (NaN, +Inf allowed)
        labels = m["labels"] or ""
        names = [p.split("=", 1)[0] for p in re.findall(_LABEL, labels)]
        assert len(names) == len(set(names)), f"repeated label: {line}"
        key = (sample, ",".join(sorted(re.findall(_LABEL, labels))))
        assert key not in series, f"duplicate series: {line}"
        series.add(key)
        samples.append((sample, labels))
    assert helped == set(families), f"HELP without TYPE: {helped - set(families)}"
    # A counter X_total is the family X of the exposition: no other family may be X,
    # and no two families may reduce to one name.
    bases = [
        n.removesuffix("_total") if kind == "counter" else n
        for n, (kind, _) in families.items()
    ]
    assert len(bases) == len(set(bases)), sorted(bases)
    for n, (kind, _) in families.items():
        if kind == "counter":
            assert n.endswith("_total"), n
    return families


def documented_families() -> set[str]:
    text = (ROOT / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `([a-z_]+)` \|", text, re.MULTILINE))


def test_strict_checker_rejects_the_broken_shapes() -> None:
    """The checker itself refuses a gauge X next to a counter X_total, "{}", a
    sample without TYPE and a sample outside its family."""
    good = "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n"
    assert strict_families(good) == {"a_total": ("counter", [("a_total", "")])}
    for bad in (
        "# HELP x X.\n# TYPE x gauge\nx 1\n" + good.replace("a_total", "x_total"),
        good.replace("a_total 1", "a_total{} 1"),
        "a 1\n",
        good + "b 1\n",
        good + good,
    ):
        with pytest.raises(AssertionError):
            strict_families(bad)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    b = start_broker(tmp_path / "data")
    yield b
    assert b.stop() == 0


def test_metrics_exposition_parses_strictly_and_reports_lag_and_process(
    broker: BrokerProcess,
) -> None:
    """After produce, consume and commits by kafka-python the whole /metrics text is
    valid; lag is high watermark minus committed; process_* describe the broker."""
    topic = f"lag-{uuid.uuid4().hex[:6]}"
    group = f'g"{uuid.uuid4().hex[:6]}'  # a quote: the label value must be escaped
    cfg: dict[str, object] = {"bootstrap_servers": broker.bootstrap}
    producer = KafkaProducer(acks="all", **cfg)
    try:
        for i in range(10):
            producer.send(topic, f"v{i}".encode(), partition=0).get(timeout=10)
    finally:
        producer.close(timeout=5)
    consumer = KafkaConsumer(group_id=group, enable_auto_commit=False, **cfg)
    try:
        tp = KpTopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.commit({tp: OffsetAndMetadata(4, "", -1)})
    finally:
        consumer.close()

    status, body = broker.http("/metrics")
    assert status == 200
    text = body.decode()
    families = strict_families(text)
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(parsed) == {
        n.removesuffix("_total") if kind == "counter" else n
        for n, (kind, _) in families.items()
    }
    assert set(families) == documented_families()
    for name in (
        "ailurus_connections_active",
        "ailurus_connections_accepted_total",
        "ailurus_consumer_group_lag",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ):
        assert name in families, name
    assert families["ailurus_connections_active"][0] == "gauge"
    # The blocks keep their order: core, partitions, disk guard, lag, snapshots, process.
    anchors = [
        "ailurus_connections_active",
        "ailurus_partition_log_start_offset",
        "ailurus_partition_size_bytes",
        "ailurus_disk_free_bytes",
        "ailurus_disk_refused_writes_total",
        "ailurus_consumer_group_lag",
        "ailurus_snapshots_ingested_total",
        "ailurus_snapshot_ingest_seconds",
        "process_cpu_seconds_total",
    ]
    order = list(families)
    assert [order.index(a) for a in anchors] == sorted(order.index(a) for a in anchors)
    assert order[-1].startswith("process_")
    assert families["ailurus_connections_accepted_total"][0] == "counter"

    def value(family: str, **labels: str) -> float:
        found = [
            s.value
            for s in parsed[family].samples
            if all(s.labels.get(k) == v for k, v in labels.items())
        ]
        assert len(found) == 1, (family, labels, parsed[family].samples)
        return float(found[0])

    lag = value("ailurus_consumer_group_lag", group=group, topic=topic, partition="0")
    assert lag == 10 - 4
    assert value("ailurus_connections_accepted") >= 2  # producer and consumer
    assert value("process_open_fds") >= 3
    assert value("process_max_fds") >= value("process_open_fds")
    assert value("process_resident_memory_bytes") > 1 << 20
    assert value("process_cpu_seconds") > 0
    started = value("process_start_time_seconds")
    assert math.isfinite(started)
    # The broker started after this test began and within the last few minutes.
    assert time.time() - 600 < started <= time.time() + 5
    assert os.path.exists(f"/proc/{broker.proc.pid}")
