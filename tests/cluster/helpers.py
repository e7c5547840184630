"""Small helpers shared by the cluster tests: the Produce and Fetch requests they
send to a broker's handlers, and a bounded poll for a condition."""

from __future__ import annotations

import time
from collections.abc import Callable

from protocol.messages.fetch import (
    FetchPartition,
    FetchRequest,
    FetchTopic,
    ReplicaState,
)
from protocol.messages.produce import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from protocol.record_builder import RecordInput, build_batch


def produce_request(
    topic: str, partition: int = 0, *, acks: int = 1, timeout_ms: int = 1000
) -> ProduceRequest:
    """One record (value ``b"v"``) to one partition."""
    return ProduceRequest(
        acks=acks,
        timeout_ms=timeout_ms,
        topic_data=(
            TopicProduceData(
                name=topic,
                partition_data=(
                    PartitionProduceData(
                        index=partition, records=build_batch([RecordInput(value=b"v")])
                    ),
                ),
            ),
        ),
    )


def fetch_request(
    topic: str, offset: int = 0, *, replica: int = -1, max_wait_ms: int = 0
) -> FetchRequest:
    """A fetch of partition 0 from ``offset``, by a consumer (``replica`` -1) or a
    follower."""
    return FetchRequest(
        replica_id=replica,
        replica_state=ReplicaState(replica_id=replica, replica_epoch=-1),
        max_wait_ms=max_wait_ms,
        min_bytes=1,
        topics=(
            FetchTopic(
                topic=topic,
                partitions=(
                    FetchPartition(
                        partition=0, fetch_offset=offset, partition_max_bytes=1 << 20
                    ),
                ),
            ),
        ),
    )


def wait_for(
    what: str, cond: Callable[[], bool], timeout: float = 30, *, interval: float = 0.05
) -> float:
    """Poll ``cond`` until true, at most ``timeout`` seconds; the seconds it took."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start
