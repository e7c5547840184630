"""Codec micro-benchmarks: our compiled codec beside kio on the same messages.

Run: ``python bench/codec_bench.py``. Prints one row per case with the mean time per
operation (best of 5 rounds of perf_counter loops) and the target.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer

from protocol import codec
from protocol.headers import RequestHeader
from protocol.messages.fetch import FetchableTopicResponse, FetchResponse, PartitionData
from protocol.messages.metadata import (
    MetadataResponse,
    MetadataResponseBroker,
    MetadataResponsePartition,
    MetadataResponseTopic,
)
from protocol.messages.produce import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)

MIB = 1024 * 1024
RECORDS = bytes(range(256)) * (MIB // 256)


def best_of(fn: Callable[[], object], loops: int, rounds: int = 25) -> float:
    """Mean seconds per call of the fastest round (short rounds dodge preemption)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - start) / loops)
    return best


def produce_case() -> tuple[Callable[[], object], Callable[[], object]]:
    request = ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout_ms=30000,
        topic_data=(
            TopicProduceData(
                name="bench-topic",
                partition_data=(PartitionProduceData(index=0, records=RECORDS),),
            ),
        ),
    )
    header = RequestHeader(
        request_api_key=0, request_api_version=9, correlation_id=1, client_id="bench"
    )
    frame = memoryview(codec.encode_request(header, request))[4:]
    _, decoded = codec.decode_request(frame)
    records = decoded.topic_data[0].partition_data[0].records  # type: ignore[attr-defined]
    assert isinstance(records, memoryview)
    assert records.obj is frame.obj  # zero-copy into the frame

    body = codec.encode(request, 9)
    kio_read = entity_reader(load_request_schema(0, 9))
    return (lambda: codec.decode_request(frame)), (lambda: kio_read(body, 0))


def metadata_response() -> MetadataResponse:
    return MetadataResponse(
        throttle_time_ms=0,
        brokers=(MetadataResponseBroker(node_id=0, host="localhost", port=9092),),
        cluster_id="ailurus-bench",
        controller_id=0,
        topics=tuple(
            MetadataResponseTopic(
                error_code=0,
                name=f"topic-{t}",
                topic_id=bytes([t + 1]) * 16,
                partitions=tuple(
                    MetadataResponsePartition(
                        error_code=0,
                        partition_index=p,
                        leader_id=0,
                        leader_epoch=0,
                        replica_nodes=(0,),
                        isr_nodes=(0,),
                    )
                    for p in range(3)
                ),
            )
            for t in range(10)
        ),
    )


def metadata_case() -> tuple[Callable[[], object], Callable[[], object]]:
    response = metadata_response()
    header = RequestHeader(
        request_api_key=3, request_api_version=12, correlation_id=1, client_id="b"
    )
    kio_cls = load_response_schema(3, 12)
    kio_obj = entity_reader(kio_cls)(codec.encode(response, 12), 0)[0]
    write = entity_writer(kio_cls)

    def kio_encode() -> bytes:
        buffer = io.BytesIO()
        write(buffer, kio_obj)
        return buffer.getvalue()

    assert kio_encode() == codec.encode(response, 12)
    return (lambda: codec.encode_response(header, response)), kio_encode


def fetch_case() -> tuple[Callable[[], object], Callable[[], object]]:
    records = memoryview(RECORDS)
    response = FetchResponse(
        responses=(
            FetchableTopicResponse(
                topic="bench-topic",
                partitions=(
                    PartitionData(
                        partition_index=0, high_watermark=1000, records=records
                    ),
                ),
            ),
        ),
    )
    header = RequestHeader(
        request_api_key=1, request_api_version=12, correlation_id=1, client_id="b"
    )
    parts = codec.encode_response(header, response)
    assert any(p is records for p in parts)  # the records buffer is passed as is
    kio_cls = load_response_schema(1, 12)
    kio_obj = entity_reader(kio_cls)(codec.encode(response, 12), 0)[0]
    write = entity_writer(kio_cls)

    def kio_encode() -> bytes:
        buffer = io.BytesIO()
        write(buffer, kio_obj)
        return buffer.getvalue()

    return (lambda: codec.encode_response(header, response)), kio_encode


def main() -> None:
    cases = [
        ("decode ProduceRequest v9, 1 MiB records", produce_case, 5.0),
        ("encode MetadataResponse v12, 10x3", metadata_case, 30.0),
        ("encode FetchResponse v12, 1 MiB records", fetch_case, 5.0),
    ]
    noop_ns = best_of(lambda: None, 100_000) * 1e9
    print(f"python {sys.version.split()[0]}; a no-op call costs {noop_ns:.0f} ns here")
    print(f"{'case':<44} {'ours µs':>9} {'kio µs':>9} {'target µs':>10}")
    for name, build, target in cases:
        ours, kio = build()
        ours_us = best_of(ours, 2000) * 1e6
        kio_us = best_of(kio, 100) * 1e6
        flag = "ok" if ours_us < target else "MISS"
        print(f"{name:<44} {ours_us:>9.2f} {kio_us:>9.2f} {target:>8.1f} {flag}")


if __name__ == "__main__":
    main()
