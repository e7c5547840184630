"""Child process of test_kill9: append with fsync before ack, print each ack.

Usage: kill9_child.py DATA_DIR. Runs until killed (or 20000 appends).
"""

from __future__ import annotations

import sys

from protocol.record_builder import RecordInput, build_batch
from storage.errors import UnknownTopic
from storage.log_manager import LogManager


def main() -> None:
    lm = LogManager(sys.argv[1])
    try:
        lm.topic("k")
    except UnknownTopic:
        lm.create_topic("k", 1, {"segment.bytes": "8192"})
    log = lm.partition("k", 0)
    print("ready", log.log_end_offset, flush=True)
    for _ in range(20000):
        offset = log.log_end_offset
        batch = build_batch(
            [
                RecordInput(value=b"value-%d-%d" % (offset, i), timestamp=offset)
                for i in range(3)
            ]
        )
        result = log.append(batch, leader_epoch=1)
        log.sync()
        print("ack", result.base_offset, result.last_offset, flush=True)


if __name__ == "__main__":
    main()
