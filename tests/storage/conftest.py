"""Fixtures for storage tests: batches built with protocol.record_builder, small configs."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from protocol.record_builder import RecordInput, build_batch

MakeBatch = Callable[..., bytes]


@pytest.fixture
def make_batch() -> MakeBatch:
    """A builder of v2 batches: ``make_batch(count, ts=..., value=...)``."""

    def build(count: int = 1, *, ts: int = 1_000, value: bytes = b"v") -> bytes:
        return build_batch(
            [
                RecordInput(key=b"k%d" % i, value=value + b"%d" % i, timestamp=ts + i)
                for i in range(count)
            ]
        )

    return build
