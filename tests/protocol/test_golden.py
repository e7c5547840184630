"""Golden frames captured from real clients decode and re-encode byte for byte.

The frames under ``golden/`` were recorded by ``capture_golden.py`` (a recording proxy
between each client and our broker; see its docstring to recapture). Every request
frame decodes, carries its client's client_id and re-encodes to the captured bytes;
every response frame decodes and re-encodes to the captured bytes. Hand-written
checks pin what each client actually sends: its first ApiVersions, its produced
batches (gzip, key, header), its offset commit and the records it fetched back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from protocol.codec import (
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from protocol.compression import Compression
from protocol.headers import RequestHeader
from protocol.messages.api_versions import ApiVersionsRequest
from protocol.messages.create_topics import CreatableTopic, CreateTopicsRequest
from protocol.messages.fetch import FetchResponse
from protocol.messages.init_producer_id import InitProducerIdRequest
from protocol.messages.offset_commit import OffsetCommitRequest
from protocol.messages.produce import ProduceRequest
from protocol.record_builder import Header, iter_records
from protocol.records import BatchHeader, iter_batches, verify_batch

GOLDEN = Path(__file__).parent / "golden"
INDEX: dict[str, Any] = json.loads((GOLDEN / "index.json").read_text())["clients"]
CLIENTS = ("kafka-python", "aiokafka", "confluent-kafka", "kcat", "kafkajs")
TOPIC = "golden"
GROUP = "golden-group"
# what every flow produced (capture_golden.RECORDS and HEADER)
PRODUCED = [
    (b"key-%d" % i, b"value-%d-" % i + b"golden" * 8, (Header(key="h", value=b"v"),))
    for i in range(3)
]

PRODUCE, FETCH, OFFSET_COMMIT, API_VERSIONS = 0, 1, 8, 18
CREATE_TOPICS, INIT_PRODUCER_ID, JOIN_GROUP, SYNC_GROUP = 19, 22, 11, 14


@dataclass(frozen=True, slots=True, kw_only=True)
class Golden:
    """One captured exchange: the request frame and, if one came, the response frame."""

    label: str
    client: str
    version: str
    api_key: int
    api_version: int
    request: bytes
    response: bytes | None

    def decode(self) -> tuple[RequestHeader, object]:
        """The request, decoded from the frame without its size prefix."""
        return decode_request(self.request[4:])

    def decode_response(self) -> object:
        """The response body, decoded."""
        assert self.response is not None
        return decode_response(self.api_key, self.api_version, self.response[4:])[1]


def _load() -> list[Golden]:
    out = []
    for label, entry in sorted(INDEX.items()):
        for frame in entry["frames"]:
            response = frame["response"]
            out.append(
                Golden(
                    label=label,
                    client=entry["client"],
                    version=entry["version"],
                    api_key=frame["api_key"],
                    api_version=frame["api_version"],
                    request=(GOLDEN / frame["request"]).read_bytes(),
                    response=(GOLDEN / response).read_bytes() if response else None,
                )
            )
    return out


ALL = _load()
WITH_RESPONSE = [g for g in ALL if g.response is not None]


def _id(g: Golden) -> str:
    return f"{g.label}-key{g.api_key}-v{g.api_version}"


def _of(client: str, api_key: int | None = None) -> list[Golden]:
    found = [
        g
        for g in ALL
        if g.client == client and (api_key is None or g.api_key == api_key)
    ]
    assert found, f"no captured {client} frame with api_key={api_key}"
    return found


def _client_ids(client: str, version: str) -> set[str]:
    """The client ids a client sends: its default one, and its producer's."""
    return {
        "kafka-python": {f"kafka-python-{version}", "kafka-python-producer-1"},
        "aiokafka": {f"aiokafka-{version}", "aiokafka-producer-1"},
        "confluent-kafka": {"rdkafka"},
        "kcat": {"rdkafka"},
        "kafkajs": {"kafkajs"},
    }[client]


def _batches(records: object) -> Iterator[tuple[bytes, int, BatchHeader]]:
    """(buffer, position, verified header) of each batch in a records field."""
    if records is None:
        return
    parts = records if isinstance(records, tuple) else (records,)
    buf = b"".join(bytes(p) for p in parts)
    for pos, _header in iter_batches(buf):
        yield buf, pos, verify_batch(buf, pos)


def _produced_batches(client: str) -> list[tuple[bytes, int, BatchHeader]]:
    out: list[tuple[bytes, int, BatchHeader]] = []
    for g in _of(client, PRODUCE):
        _header, request = g.decode()
        assert isinstance(request, ProduceRequest)
        for topic in request.topic_data:
            assert topic.name == TOPIC
            for partition in topic.partition_data:
                out.extend(_batches(partition.records))
    return out


def _as_tuples(batches: list[tuple[bytes, int, BatchHeader]]) -> list[object]:
    return [
        (r.key, r.value, r.headers)
        for buf, pos, _h in batches
        for r in iter_records(buf, pos)
    ]


# --- every frame ---------------------------------------------------------------------


def test_every_client_is_captured() -> None:
    """The golden set holds frames from all five clients."""
    assert {entry["client"] for entry in INDEX.values()} == set(CLIENTS)


@pytest.mark.parametrize("golden", ALL, ids=_id)
def test_request_frame_decodes_and_reencodes_to_the_same_bytes(golden: Golden) -> None:
    """A captured request decodes with its client's id and re-encodes byte for byte."""
    header, request = golden.decode()
    assert (header.request_api_key, header.request_api_version) == (
        golden.api_key,
        golden.api_version,
    )
    assert header.client_id in _client_ids(golden.client, golden.version)
    assert encode_request(header, request) == golden.request


@pytest.mark.parametrize("golden", WITH_RESPONSE, ids=_id)
def test_response_frame_decodes_and_reencodes_to_the_same_bytes(golden: Golden) -> None:
    """A captured response decodes and re-encodes byte for byte."""
    assert golden.response is not None
    header, _request = golden.decode()
    response = golden.decode_response()
    encoded = b"".join(bytes(part) for part in encode_response(header, response))
    assert encoded == golden.response


@pytest.mark.parametrize("client", CLIENTS)
def test_first_request_is_api_versions(client: str) -> None:
    """Every client opens with ApiVersions and runs the whole produce/group flow."""
    frames = _of(client)
    assert frames[0].api_key == API_VERSIONS
    assert {g.api_key for g in frames} >= {
        PRODUCE,
        FETCH,
        OFFSET_COMMIT,
        JOIN_GROUP,
        SYNC_GROUP,
    }


@pytest.mark.parametrize("client", CLIENTS)
def test_produced_batches_are_gzip_and_carry_key_and_header(client: str) -> None:
    """Every client's produced batches verify, are gzip and hold the flow's records."""
    batches = _produced_batches(client)
    assert all(h.compression is Compression.GZIP for _b, _p, h in batches)
    assert sorted(_as_tuples(batches)) == PRODUCED  # type: ignore[type-var]


@pytest.mark.parametrize("client", CLIENTS)
def test_fetched_records_are_the_produced_ones(client: str) -> None:
    """The largest captured Fetch response returns the three produced records."""
    fetches = [g for g in _of(client, FETCH) if g.response is not None]
    largest = max(fetches, key=lambda g: len(g.response or b""))
    response = largest.decode_response()
    assert isinstance(response, FetchResponse)
    batches = [
        batch
        for topic in response.responses
        for partition in topic.partitions
        for batch in _batches(partition.records)
    ]
    assert _as_tuples(batches) == PRODUCED
    assert batches[0][2].base_offset == 0


@pytest.mark.parametrize("client", CLIENTS)
def test_offset_commit_commits_offset_three(client: str) -> None:
    """Each consumer commits offset 3 (after the three records) for the golden group."""
    commits: list[tuple[str, int, int]] = []
    for g in _of(client, OFFSET_COMMIT):
        _header, request = g.decode()
        assert isinstance(request, OffsetCommitRequest)
        assert request.group_id == GROUP
        commits.extend(
            (t.name, p.partition_index, p.committed_offset)
            for t in request.topics
            for p in t.partitions
        )
    assert (TOPIC, 0, 3) in commits


# --- per client ----------------------------------------------------------------------


def test_decodes_api_versions_v4_from_kafka_python() -> None:
    """kafka-python 3.0's first request is ApiVersions v4 naming itself."""
    first = _of("kafka-python")[0]
    header, request = first.decode()
    assert header.request_api_version == 4
    assert header.client_id == f"kafka-python-{first.version}"
    assert request == ApiVersionsRequest(
        client_software_name="kafka-python", client_software_version=first.version
    )


def test_decodes_idempotent_produce_from_kafka_python() -> None:
    """kafka-python's default producer is idempotent: InitProducerId, then Produce v9
    batches with a producer id and sequence numbers from zero."""
    (init,) = _of("kafka-python", INIT_PRODUCER_ID)
    _header, request = init.decode()
    assert request == InitProducerIdRequest(
        transactional_id=None,
        transaction_timeout_ms=0,
        producer_id=-1,
        producer_epoch=-1,
    )
    assert {g.api_version for g in _of("kafka-python", PRODUCE)} == {9}
    headers = [h for _b, _p, h in _produced_batches("kafka-python")]
    assert all(h.producer_id >= 0 and h.producer_epoch == 0 for h in headers)
    assert headers[0].base_sequence == 0


def test_decodes_create_topics_v3_from_aiokafka() -> None:
    """aiokafka opens with ApiVersions v0 and creates the topic with CreateTopics v3."""
    first = _of("aiokafka")[0]
    header, request = first.decode()
    assert (header.request_api_version, header.client_id) == (
        0,
        f"aiokafka-{first.version}",
    )
    assert request == ApiVersionsRequest(
        client_software_name="", client_software_version=""
    )
    (create,) = _of("aiokafka", CREATE_TOPICS)
    header, request = create.decode()
    assert header.request_api_version == 3
    assert request == CreateTopicsRequest(
        topics=(
            CreatableTopic(
                name=TOPIC,
                num_partitions=1,
                replication_factor=1,
                assignments=(),
                configs=(),
            ),
        ),
        timeout_ms=40000,
        validate_only=False,
    )


def test_decodes_api_versions_v3_from_confluent_kafka() -> None:
    """confluent-kafka's librdkafka 2.16 sends ApiVersions v3 naming the Python wrapper."""
    first = _of("confluent-kafka")[0]
    header, request = first.decode()
    assert (header.request_api_version, header.client_id) == (3, "rdkafka")
    librdkafka = INDEX[first.label]["librdkafka"]
    assert request == ApiVersionsRequest(
        client_software_name="confluent-kafka-python",
        client_software_version=f"{first.version}-rdkafka-{librdkafka}",
    )


def test_decodes_produce_v10_from_confluent_kafka() -> None:
    """librdkafka 2.16 produces with Produce v10, acks=all, not idempotent by default."""
    produces = _of("confluent-kafka", PRODUCE)
    assert {g.api_version for g in produces} == {10}
    _header, request = produces[0].decode()
    assert isinstance(request, ProduceRequest)
    assert (request.acks, request.transactional_id) == (-1, None)
    assert all(
        h.producer_id == -1 for _b, _p, h in _produced_batches("confluent-kafka")
    )


def test_decodes_api_versions_v3_from_librdkafka() -> None:
    """kcat's librdkafka 2.0.2 sends ApiVersions v3 with client_software_name librdkafka."""
    first = _of("kcat")[0]
    header, request = first.decode()
    assert (header.request_api_version, header.client_id) == (3, "rdkafka")
    assert request == ApiVersionsRequest(
        client_software_name="librdkafka",
        client_software_version=INDEX[first.label]["librdkafka"],
    )


def test_kcat_keeps_compressing_with_produce_v7() -> None:
    """librdkafka 2.0.2 sends Produce v7 and keeps gzip (we advertise Produce from v0)."""
    assert {g.api_version for g in _of("kcat", PRODUCE)} == {7}
    batches = _produced_batches("kcat")
    assert all(h.compression is Compression.GZIP for _b, _p, h in batches)


def test_decodes_api_versions_v2_from_kafkajs() -> None:
    """kafkajs 2.2.4 opens with ApiVersions v2 (no software name) and correlation id 0."""
    first = _of("kafkajs")[0]
    header, request = first.decode()
    assert (header.request_api_version, header.correlation_id) == (2, 0)
    assert header.client_id == "kafkajs"
    assert request == ApiVersionsRequest(
        client_software_name="", client_software_version=""
    )


def test_decodes_offset_commit_v5_from_kafkajs() -> None:
    """kafkajs commits with OffsetCommit v5 and a null metadata string."""
    commits = _of("kafkajs", OFFSET_COMMIT)
    assert {g.api_version for g in commits} == {5}
    _header, request = commits[-1].decode()
    assert isinstance(request, OffsetCommitRequest)
    (topic,) = request.topics
    (partition,) = topic.partitions
    assert (partition.committed_offset, partition.committed_metadata) == (3, None)
