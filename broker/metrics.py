"""In-process metrics and their Prometheus text exposition (``GET /metrics``).

Counters are plain dicts and ints updated on the event-loop thread (no locks, no
labels objects on the hot path): requests by API, errors by API and error code,
bytes in and out, connections; latency histograms per API (produce and fetch are the
ones that matter). Partition offsets and sizes are rendered from storage when scraped,
and the standard ``process_*`` metrics from ``/proc`` (:func:`process_metric_lines`).
Every family has HELP and TYPE lines and a unique name (a counter ``X_total`` is the
family ``X``, so no other family may be called ``X``); docs/metrics.md lists them.
"""

from __future__ import annotations

import bisect
import os
import resource
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

# Seconds; spans a sub-millisecond in-memory answer to a 30 s long poll.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


@dataclass(slots=True)
class Histogram:
    """A cumulative-on-render histogram with fixed buckets."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def render(self, name: str, labels: str) -> Iterable[str]:
        acc = 0
        sep = "," if labels else ""
        for bound, n in zip(self.buckets, self.counts, strict=False):
            acc += n
            yield f'{name}_bucket{{{labels}{sep}le="{bound}"}} {acc}'
        acc += self.counts[-1]
        yield f'{name}_bucket{{{labels}{sep}le="+Inf"}} {acc}'
        braces = f"{{{labels}}}" if labels else ""  # never an empty "{}"
        yield f"{name}_sum{braces} {self.total}"
        yield f"{name}_count{braces} {self.count}"


def escape_label(value: str) -> str:
    """A label value as the text format wants it (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass(slots=True)
class Metrics:
    """Every broker-wide metric."""

    requests: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: defaultdict[tuple[str, str], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    latency: dict[str, Histogram] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0
    connections_open: int = 0
    connections_total: int = 0
    connections_rejected: int = 0
    bad_requests: int = 0
    fsyncs: int = 0
    # cluster mode: counted by the replica manager (leader_changed events) and the
    # etcd store (etcd_unavailable events, one per outage)
    leader_changes: int = 0
    etcd_unavailable: int = 0
    # fetch sessions (KIP-227): set by the Fetch handler from broker.fetch.sessions
    fetch_sessions: int = 0
    fetch_sessions_evicted: int = 0
    fetch_incremental: int = 0

    def observe_request(self, api: str, seconds: float) -> None:
        self.requests[api] += 1
        hist = self.latency.get(api)
        if hist is None:
            hist = self.latency[api] = Histogram()
        hist.observe(seconds)

    def error(self, api: str, code: str) -> None:
        self.errors[(api, code)] += 1

    def leader_changed(self, count: int = 1) -> None:
        """Partition leaderships this broker saw move (``leader_changed`` events)."""
        self.leader_changes += count

    def etcd_lost(self) -> None:
        """etcd became unreachable (an ``etcd_unavailable`` event)."""
        self.etcd_unavailable += 1

    def render(self, extra: Iterable[str] = ()) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        lines = [
            "# HELP ailurus_requests_total Requests answered, by API.",
            "# TYPE ailurus_requests_total counter",
        ]
        lines += [
            f'ailurus_requests_total{{api="{api}"}} {n}'
            for api, n in sorted(self.requests.items())
        ]
        lines += [
            "# HELP ailurus_request_errors_total Error codes returned, by API and code.",
            "# TYPE ailurus_request_errors_total counter",
        ]
        lines += [
            f'ailurus_request_errors_total{{api="{api}",error="{escape_label(code)}"}} {n}'
            for (api, code), n in sorted(self.errors.items())
        ]
        lines += [
            "# HELP ailurus_request_latency_seconds Time from decode to response, by API.",
            "# TYPE ailurus_request_latency_seconds histogram",
        ]
        for api, hist in sorted(self.latency.items()):
            lines += hist.render("ailurus_request_latency_seconds", f'api="{api}"')
        for name, kind, value, text in (
            ("ailurus_bytes_in_total", "counter", self.bytes_in, "Bytes received."),
            ("ailurus_bytes_out_total", "counter", self.bytes_out, "Bytes sent."),
            (
                "ailurus_connections_active",
                "gauge",
                self.connections_open,
                "Open connections.",
            ),
            (
                "ailurus_connections_accepted_total",
                "counter",
                self.connections_total,
                "Connections accepted.",
            ),
            (
                "ailurus_connections_rejected_total",
                "counter",
                self.connections_rejected,
                "Connections refused by max.connections.",
            ),
            (
                "ailurus_bad_requests_total",
                "counter",
                self.bad_requests,
                "Malformed or oversized frames (connection closed).",
            ),
            ("ailurus_fsyncs_total", "counter", self.fsyncs, "Group-commit rounds."),
            (
                "ailurus_leader_changes_total",
                "counter",
                self.leader_changes,
                "Times this broker became or stopped being a partition leader (cluster mode).",
            ),
            (
                "ailurus_etcd_unavailable_total",
                "counter",
                self.etcd_unavailable,
                "etcd outages this broker saw, one per outage (cluster mode).",
            ),
            (
                "ailurus_fetch_sessions",
                "gauge",
                self.fetch_sessions,
                "Incremental fetch sessions cached (KIP-227).",
            ),
            (
                "ailurus_fetch_sessions_evicted_total",
                "counter",
                self.fetch_sessions_evicted,
                "Fetch sessions evicted to make room for new ones.",
            ),
            (
                "ailurus_fetch_incremental_total",
                "counter",
                self.fetch_incremental,
                "Incremental fetch requests served from a session.",
            ),
        ):
            lines += [
                f"# HELP {name} {text}",
                f"# TYPE {name} {kind}",
                f"{name} {value}",
            ]
        lines.extend(extra)
        return "\n".join(lines) + "\n"


# -- process_* (the names every Prometheus client library uses) -------------------


def _proc_start_time() -> float | None:
    """Unix time the process started, from /proc (None where there is no /proc)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        with open("/proc/stat", "rb") as f:
            btime = next(
                int(line.split()[1]) for line in f if line.startswith(b"btime ")
            )
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    # Field 22 (starttime, clock ticks after boot); fields after the ")" of comm.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        ticks = int(fields[19])
    except (IndexError, ValueError):
        return None
    return btime + ticks / os.sysconf("SC_CLK_TCK")


_START_TIME: float | None = None


def process_metric_lines() -> Iterator[str]:
    """``process_*`` gauges and counters for this process, read when scraped."""
    global _START_TIME
    times = os.times()
    samples: list[tuple[str, str, str, float | int | None]] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            times.user + times.system,
        )
    ]
    rss: int | None = None
    try:
        with open("/proc/self/statm", "rb") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        rss = None
    samples.append(
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            rss,
        )
    )
    try:
        open_fds: int | None = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_fds = None
    samples.append(
        ("process_open_fds", "gauge", "Number of open file descriptors.", open_fds)
    )
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    samples.append(
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            None if soft == resource.RLIM_INFINITY else soft,
        )
    )
    if _START_TIME is None:
        _START_TIME = _proc_start_time()
    samples.append(
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            _START_TIME,
        )
    )
    for name, kind, text, value in samples:
        if value is None:
            continue
        yield f"# HELP {name} {text}"
        yield f"# TYPE {name} {kind}"
        yield f"{name} {value}"


# -- transactions -------------------------------------------------------------------


def transaction_metric_lines(
    open_by_state: Mapping[str, int], oldest_open_seconds: float, stuck: int
) -> Iterator[str]:
    """The transaction coordinator's gauges: open transactions by state (Kafka's
    names), the oldest open one's age, and how many are open past their timeout."""
    yield "# HELP ailurus_transactions_open Open transactions this broker coordinates, by state."
    yield "# TYPE ailurus_transactions_open gauge"
    for state, n in sorted(open_by_state.items()):
        yield f'ailurus_transactions_open{{state="{escape_label(state)}"}} {n}'
    for name, value, text in (
        (
            "ailurus_transaction_oldest_open_seconds",
            oldest_open_seconds,
            "Age of the oldest open transaction this broker coordinates (0: none).",
        ),
        (
            "ailurus_transactions_stuck",
            stuck,
            "Open transactions older than their transaction timeout.",
        ),
    ):
        yield f"# HELP {name} {text}"
        yield f"# TYPE {name} gauge"
        yield f"{name} {value}"
