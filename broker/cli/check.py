"""``ailurus check``: does a broker answer Kafka requests at ``--brokers``?

Meant for container health checks: it speaks only Kafka (ApiVersions, then Metadata
on the bootstrap connection), so it works with the admin API turned off and against
any Kafka-compatible broker. An Ailurus broker accepts Kafka connections only once
it is ready, so a passing check also means start-up (recovery) is over. Exit 0 with
one line on stdout, or 1 with ``error: ...`` on stderr. ``cluster health`` checks
more (the admin API's readiness, every partition online).
"""

from __future__ import annotations

import time

import click

from broker.cli.output import echo_json, is_json, options, run_command
from broker.client import KafkaClient


@click.command("check")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds to wait for the broker to answer.",
)
@run_command
def check(timeout: float) -> None:
    """Exit 0 if the broker at --brokers answers over Kafka (for health checks)."""
    brokers = options()[0]
    started = time.perf_counter()
    with KafkaClient(brokers, timeout=timeout, retry_for=timeout) as client:
        meta = client.metadata()
        api_keys = len(client.bootstrap().broker_versions)
    seconds = round(time.perf_counter() - started, 3)
    if is_json():
        echo_json(
            {
                "ok": True,
                "brokers": brokers,
                "cluster_id": meta.cluster_id,
                "broker_count": len(meta.brokers),
                "api_keys": api_keys,
                "seconds": seconds,
            },
            compact=True,
        )
        return
    click.echo(
        f"ok: {brokers} answers Kafka requests (cluster {meta.cluster_id}, "
        f"{len(meta.brokers)} broker(s), {api_keys} API keys, {seconds}s)"
    )


COMMAND = check
