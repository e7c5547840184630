"""The snapshot counters rendered into ``GET /metrics`` (docs/metrics.md)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from broker.metrics import Histogram


@dataclass(slots=True)
class SnapshotMetrics:
    """Counters of the ingest, rendered into ``GET /metrics``."""

    ingested: int = 0
    rejected: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    bytes_ingested: int = 0
    created: int = 0
    handed_over: int = 0  # sent to the partition's leader (cluster mode)
    scans: int = 0
    inspections: int = 0  # snapshot directories read and judged (cached verdicts aside)
    duration: Histogram = field(default_factory=Histogram)

    def lines(self) -> Iterable[str]:
        """Prometheus text lines."""
        yield "# HELP ailurus_snapshots_ingested_total Snapshots applied."
        yield "# TYPE ailurus_snapshots_ingested_total counter"
        yield f"ailurus_snapshots_ingested_total {self.ingested}"
        yield "# HELP ailurus_snapshots_rejected_total Snapshots rejected, by reason."
        yield "# TYPE ailurus_snapshots_rejected_total counter"
        for reason, n in sorted(self.rejected.items()):
            yield f'ailurus_snapshots_rejected_total{{reason="{reason}"}} {n}'
        yield "# HELP ailurus_snapshot_ingested_bytes_total Bytes appended by ingest."
        yield "# TYPE ailurus_snapshot_ingested_bytes_total counter"
        yield f"ailurus_snapshot_ingested_bytes_total {self.bytes_ingested}"
        yield "# HELP ailurus_snapshots_created_total Snapshot directories created."
        yield "# TYPE ailurus_snapshots_created_total counter"
        yield f"ailurus_snapshots_created_total {self.created}"
        yield (
            "# HELP ailurus_snapshots_handed_over_total Snapshots sent to their"
            " partition's leader."
        )
        yield "# TYPE ailurus_snapshots_handed_over_total counter"
        yield f"ailurus_snapshots_handed_over_total {self.handed_over}"
        yield "# HELP ailurus_snapshot_scans_total Passes over data/snapshots."
        yield "# TYPE ailurus_snapshot_scans_total counter"
        yield f"ailurus_snapshot_scans_total {self.scans}"
        yield (
            "# HELP ailurus_snapshot_inspections_total Snapshot directories read and"
            " judged (a verdict cached for unchanged files is not counted)."
        )
        yield "# TYPE ailurus_snapshot_inspections_total counter"
        yield f"ailurus_snapshot_inspections_total {self.inspections}"
        yield "# HELP ailurus_snapshot_ingest_seconds Time to apply one snapshot."
        yield "# TYPE ailurus_snapshot_ingest_seconds histogram"
        yield from self.duration.render("ailurus_snapshot_ingest_seconds", "")
