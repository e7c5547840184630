"""``ailurus snapshot schedule``: show the broker's snapshot schedule and last round.

The schedule itself is a broker setting (``--set snapshot.schedule.topics=...``, see
docs/disaster-recovery.md); this command reads it back through the admin API
(``GET /v1/snapshots/schedule``) and attaches itself to the ``snapshot`` group.
"""

from __future__ import annotations

import click

from broker.cli.output import echo_json, is_json, print_pairs, run_command
from broker.cli.snapshot import COMMAND as SNAPSHOT_GROUP
from broker.cli.snapshot import _admin


@click.command(name="schedule")
@run_command
def schedule() -> None:
    """The snapshot schedule: settings, rounds so far, the last round's report."""
    found = _admin("GET", "/v1/snapshots/schedule")
    assert isinstance(found, dict)
    if is_json():
        echo_json(found)
        return
    if not found.get("enabled"):
        click.echo("no snapshot schedule (set snapshot.schedule.topics to enable one)")
        return
    pairs: list[tuple[str, object]] = [
        (str(k), v) for k, v in found.items() if k != "last_round"
    ]
    last = found.get("last_round")
    if isinstance(last, dict):
        pairs += [(f"last_round.{k}", v) for k, v in last.items()]
    print_pairs(pairs)


assert isinstance(SNAPSHOT_GROUP, click.Group)
SNAPSHOT_GROUP.add_command(schedule)
