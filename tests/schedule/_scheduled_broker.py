"""``python -m tests.schedule._scheduled_broker serve ...``: the broker command line
with the snapshot scheduler running beside the snapshot watcher.

Until broker/server.py starts :func:`run_snapshot_scheduler` itself, this wraps the
watcher task the server starts so both run in the server's task group; once the
server does (it then imports ``run_snapshot_scheduler``), this is plain
``python -m broker``.
"""

from __future__ import annotations

import anyio
import anyio.abc

import broker.server as server
from broker.cli import main
from broker.context import BrokerContext
from broker.snapshot_scheduler import run_snapshot_scheduler

if not hasattr(server, "run_snapshot_scheduler"):
    _watcher = getattr(server, "run_snapshot_watcher")  # noqa: B009

    async def _watcher_and_scheduler(
        ctx: BrokerContext,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(_watcher, ctx)
            await tg.start(run_snapshot_scheduler, ctx)
            task_status.started()

    setattr(server, "run_snapshot_watcher", _watcher_and_scheduler)  # noqa: B010

if __name__ == "__main__":
    main()
