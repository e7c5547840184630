"""Micro-benchmark of the record-batch hot path (header, CRC, base-offset patch).

Run: ``.venv/bin/python bench/records_bench.py``. Prints microseconds per call for a
small (about 1 KiB) and a large (about 1 MiB) batch, plus the CRC32C throughput.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

from protocol.record_builder import RecordInput, build_batch
from protocol.records import iter_batches, read_header, verify_batch, with_base_offset


def main() -> None:
    small = build_batch([RecordInput(value=b"x" * 100, timestamp=1)] * 10)
    large = build_batch([RecordInput(value=bytes(1000), timestamp=1)] * 1000)
    log = small * 1000
    cases: list[tuple[str, Callable[[bytes], object]]] = [
        ("read_header", read_header),
        ("verify_batch", verify_batch),
        ("with_base_offset", lambda b: with_base_offset(b, 5)),
    ]
    for label, batch, number in (("small", small, 20_000), ("large", large, 300)):
        for name, fn in cases:
            per_call = timeit.timeit(lambda f=fn, b=batch: f(b), number=number) / number
            print(f"{label:5} {len(batch):>8} B  {name:16} {per_call * 1e6:9.2f} us")
        per_verify = (
            timeit.timeit(lambda b=batch: verify_batch(b), number=number) / number
        )
        print(f"{label:5} crc throughput {len(batch) / per_verify / 1e9:.2f} GB/s")
    seconds = timeit.timeit(lambda: sum(1 for _ in iter_batches(log)), number=20) / 20
    print(f"iter_batches over 1000 small batches: {seconds * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
