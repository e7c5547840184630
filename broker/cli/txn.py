"""``ailurus txn``: list and describe transactions over the Kafka protocol
(ListTransactions and DescribeTransactions, KIP-664; the duration filter is
KIP-994's), as Kafka's ``kafka-transactions.sh`` does: ``list`` asks every broker
for the transactional ids it coordinates, ``describe`` asks the id's coordinator.
"""

from __future__ import annotations

import time

import click

from broker.cli.output import (
    echo_json,
    human_time,
    is_json,
    print_pairs,
    print_table,
    run_command,
)
from broker.cli.topic import make_client
from broker.client import transactions as txn_ops


@click.group(
    name="txn",
    epilog="""\b
Examples:
  ailurus txn list
  ailurus txn list --state Ongoing --min-duration-ms 60000
  ailurus txn describe payments-1
""",
)
def txn() -> None:
    """Inspect transactions (KIP-664)."""


COMMAND = txn


@txn.command(name="list")
@click.option(
    "--state",
    "states",
    multiple=True,
    help="Only transactions in this state (Kafka's names: Empty, Ongoing, "
    "PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort, "
    "PrepareEpochFence); repeatable.",
)
@click.option(
    "--producer-id",
    "producer_ids",
    type=int,
    multiple=True,
    help="Only this producer id; repeatable.",
)
@click.option(
    "--min-duration-ms",
    type=click.IntRange(min=0),
    default=None,
    help="Only transactions open longer than this (KIP-994).",
)
@run_command
def list_txns(
    states: tuple[str, ...], producer_ids: tuple[int, ...], min_duration_ms: int | None
) -> None:
    """List transactional ids with their producer id, state and coordinator."""
    with make_client() as client:
        found = txn_ops.list_transactions(
            client,
            states=states,
            producer_ids=producer_ids,
            min_duration_ms=-1 if min_duration_ms is None else min_duration_ms,
        )
    rows = [
        {
            "transactional_id": t.transactional_id,
            "producer_id": t.producer_id,
            "state": t.state,
            "coordinator": t.coordinator,
        }
        for t in found
    ]
    if is_json():
        echo_json({"transactions": rows})
        return
    print_table(
        ["transactional-id", "producer-id", "state", "coordinator"],
        [
            (r["transactional_id"], r["producer_id"], r["state"], r["coordinator"])
            for r in rows
        ],
    )


@txn.command()
@click.argument("transactional_id")
@run_command
def describe(transactional_id: str) -> None:
    """Show a transactional id's state, producer, timeout and partitions."""
    with make_client() as client:
        d = txn_ops.describe_transaction(client, transactional_id)
    now_ms = time.time_ns() // 1_000_000
    open_ms = now_ms - d.start_ms if d.start_ms >= 0 else None
    if is_json():
        echo_json(
            {
                "transactional_id": d.transactional_id,
                "coordinator": d.coordinator,
                "state": d.state,
                "producer_id": d.producer_id,
                "producer_epoch": d.producer_epoch,
                "timeout_ms": d.timeout_ms,
                "start_ms": d.start_ms,
                "partitions": [{"topic": t, "partition": p} for t, p in d.partitions],
            }
        )
        return
    print_pairs(
        [
            ("TRANSACTIONAL-ID", d.transactional_id),
            ("COORDINATOR", d.coordinator),
            ("STATE", d.state),
            ("PRODUCER-ID", d.producer_id),
            ("PRODUCER-EPOCH", d.producer_epoch),
            ("TIMEOUT-MS", d.timeout_ms),
            ("START", human_time(d.start_ms)),
            (
                "OPEN-FOR-MS",
                open_ms if d.state.startswith(("Ongoing", "Prepare")) else None,
            ),
        ]
    )
    if d.partitions:
        click.echo()
        print_table(
            ["topic", "partition"],
            [(t, p) for t, p in d.partitions],
            title="Partitions",
        )
