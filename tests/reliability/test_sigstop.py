"""SIGSTOP for longer than every client timeout, then SIGCONT: clients recover, nothing lost.

The broker is frozen for 7 s under the mixed load of :mod:`tests.reliability._load`
(request timeout 3 s, consumer session timeout 6 s). The clients time out, retry
and reconnect on their own; after SIGCONT every acknowledged record is in the log
exactly once, nothing failed for good, and the group consumer consumes and commits
again.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.reliability._harness import create_topic, fetch_all, launch, wait_for
from tests.reliability._load import Load

pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

STOPPED_S = 7.0


@pytest.mark.timeout(90)
def test_sigstop_past_client_timeouts_then_sigcont_loses_nothing(
    tmp_path: Path,
) -> None:
    """Clients recover from a 7 s freeze with their own retries; no data lost."""
    b = launch(tmp_path)
    create_topic(b, "frozen", 2)
    load = Load(b.bootstrap, "frozen", 2, group="frozen-group")
    load.start()
    try:
        wait_for(lambda: load.ledger.committed, 20, "first commit")
        b.proc.send_signal(signal.SIGSTOP)
        sent_before = load.sent
        time.sleep(STOPPED_S)
        b.proc.send_signal(signal.SIGCONT)
        consumed_at_cont = load.ledger.consumed
        commits_at_cont = load.ledger.snapshot_commits()
        wait_for(lambda: load.ledger.consumed > consumed_at_cont + 50, 30, "consuming")
        wait_for(
            lambda: load.ledger.snapshot_commits() != commits_at_cont, 30, "committing"
        )
        load.pause_and_flush()
        assert load.sent > sent_before
        records = {p: fetch_all(b, "frozen", p)[1] for p in range(2)}
        acked = load.ledger.check_log(records)
        assert acked == load.sent
        assert not load.ledger.failed
    finally:
        load.close()
        if b.proc.poll() is None:
            b.proc.send_signal(signal.SIGCONT)
            assert b.stop() == 0
