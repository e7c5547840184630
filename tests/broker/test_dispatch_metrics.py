"""Handler registry, advertised versions, and metrics exposition."""

from __future__ import annotations

from broker.metrics import Histogram, Metrics
from broker.net.dispatch import HANDLERS, advertised_versions, load_handlers
from protocol.codec import supported_versions


def test_advertises_only_apis_with_handlers_within_codec_support() -> None:
    """ApiVersions lists codec support intersected with the registered handlers."""
    load_handlers()
    advertised = advertised_versions()
    codec = supported_versions()
    for key, (lo, hi) in advertised.items():
        assert key in HANDLERS
        assert codec[key][0] <= lo <= hi <= codec[key][1]
    for key in (0, 1, 2, 3, 18, 19, 20, 21, 23, 32, 37, 60):
        assert key in advertised
    assert advertised[0][0] == 0  # Produce v0 listed for librdkafka (KAFKA-18659)
    # v0–2 are served by the handler, which answers them UNSUPPORTED_VERSION
    assert HANDLERS[0].min_version == 0
    assert advertised[18] == (0, 4)


def test_histogram_renders_cumulative_buckets() -> None:
    """Bucket counts are cumulative and end with +Inf = count."""
    h = Histogram()
    for v in (0.0002, 0.003, 0.003, 100.0):
        h.observe(v)
    lines = list(h.render("x", 'api="p"'))
    assert 'x_bucket{api="p",le="0.00025"} 1' in lines
    assert 'x_bucket{api="p",le="0.005"} 3' in lines
    assert 'x_bucket{api="p",le="+Inf"} 4' in lines
    assert 'x_count{api="p"} 4' in lines


def test_metrics_render_prometheus_text() -> None:
    """Requests, errors and connection gauges appear in the exposition."""
    m = Metrics()
    m.observe_request("produce", 0.001)
    m.error("produce", "CORRUPT_MESSAGE")
    m.connections_open = 2
    text = m.render(["extra_metric 1"])
    assert 'ailurus_requests_total{api="produce"} 1' in text
    assert (
        'ailurus_request_errors_total{api="produce",error="CORRUPT_MESSAGE"} 1' in text
    )
    assert "ailurus_connections_active 2" in text
    assert text.endswith("extra_metric 1\n")
