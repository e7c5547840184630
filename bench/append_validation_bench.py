"""Produce validation cost: what ``PartitionLog.append`` checks before it writes.

Run: ``python bench/append_validation_bench.py [--batches 20000] [--rounds 5]``.
Validates the same client batch (16 records of 1 KiB, uncompressed, and the same
lz4-compressed) as an append to a log of each topic config would
(``PartitionLog.validate``; in a tree without it, ``validate_batches``, which was
all an append checked), in rounds that alternate the configs, and prints the
median CPU microseconds per batch of each (process time: a busy machine
slows wall time far more):

- ``default``: nothing per record to check (the produce hot path);
- ``bounded``: ``message.timestamp.before/after.max.ms`` set, records in bounds
  (only the batch header is read);
- ``compacted``: ``cleanup.policy=compact`` (every record's key is looked at).

Run it from another tree (``PYTHONPATH=OTHER python bench/...``) to compare.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from protocol.compression import Compression
from protocol.record_builder import RecordInput, build_batch
from storage.config import TopicConfig
from storage.fileops import FileOps
from storage.partition_log import PartitionLog
from storage.validation import validate_batches

CONFIGS = {
    "default": {},
    "bounded": {
        "message.timestamp.before.max.ms": "86400000",
        "message.timestamp.after.max.ms": "3600000",
    },
    "compacted": {"cleanup.policy": "compact"},
}


def one_round(root: Path, name: str, batch: bytes, count: int) -> float:
    directory = root / f"{name}-{time.monotonic_ns()}"
    config = TopicConfig.from_overrides(CONFIGS[name])
    log = PartitionLog.open(
        str(directory),
        topic="bench",
        partition=0,
        config=config,
        fileops=FileOps(),
        clean=False,
    )
    try:
        check = getattr(log, "validate", None)
        if check is None:  # before per-record rules: the batch checks only
            limit = config.max_message_bytes

            def check(records: bytes) -> object:
                return validate_batches(records, max_message_bytes=limit)

        started = time.process_time()
        for _ in range(count):
            check(batch)
        return (time.process_time() - started) / count * 1e6
    finally:
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--batches", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(dir=args.dir, prefix="append-bench-"))
    try:
        for codec in (Compression.NONE, Compression.LZ4):
            batch = build_batch(
                [RecordInput(key=b"k%d" % i, value=bytes(1024)) for i in range(16)],
                compression=codec,
            )
            times: dict[str, list[float]] = {name: [] for name in CONFIGS}
            for _ in range(args.rounds):
                for name in CONFIGS:
                    times[name].append(one_round(root, name, batch, args.batches))
            for name, values in times.items():
                print(
                    f"{codec.name.lower():5} {name:9} "
                    f"{statistics.median(values):7.2f} µs/batch "
                    f"(min {min(values):.2f}, max {max(values):.2f})"
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
