"""Consumer-group operations through the CLI's client.

FindCoordinator routes each group to its coordinator; ListGroups asks every broker;
DescribeGroups decodes member assignments of the ``consumer`` protocol
(``ConsumerProtocolAssignment``: version int16, [topic string, [partition int32]],
user data bytes); OffsetFetch / OffsetCommit use the versions that carry topic names
(v0–7 and v0–9), committing as a standalone (generation -1) client, which Kafka
accepts for a group without active members (``group seek``).
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Final

from broker.client.client import KafkaClient
from broker.client.connection import Connection
from broker.client.errors import KafkaError
from broker.client.types import GroupDescription, GroupListing, GroupMember
from protocol.error_codes import ErrorCode
from protocol.messages.delete_groups import DeleteGroupsRequest, DeleteGroupsResponse
from protocol.messages.describe_groups import (
    DescribeGroupsRequest,
    DescribeGroupsResponse,
)
from protocol.messages.find_coordinator import (
    FindCoordinatorRequest,
    FindCoordinatorResponse,
)
from protocol.messages.list_groups import ListGroupsRequest, ListGroupsResponse
from protocol.messages.offset_commit import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
    OffsetCommitResponse,
)
from protocol.messages.offset_delete import (
    OffsetDeleteRequest,
    OffsetDeleteRequestPartition,
    OffsetDeleteRequestTopic,
    OffsetDeleteResponse,
)
from protocol.messages.offset_fetch import (
    OffsetFetchRequest,
    OffsetFetchRequestTopic,
    OffsetFetchResponse,
)

_OFFSET_COMMIT: Final = 8
_OFFSET_FETCH: Final = 9
_FIND_COORDINATOR: Final = 10
_MAX_VERSION: Final = {_OFFSET_COMMIT: 9, _OFFSET_FETCH: 7}
_I16: Final = struct.Struct(">h")
_I32: Final = struct.Struct(">i")

TopicPartition = tuple[str, int]
_KINDS: Final = {0: "group", 1: "transactional id"}


def _version(conn: Connection, api_key: int) -> int:
    return min(conn.version_for(api_key), _MAX_VERSION.get(api_key, 1 << 15))


def coordinator(client: KafkaClient, group_id: str) -> Connection:
    """The connection to ``group_id``'s coordinator."""
    return client.connection_for(coordinator_id(client, group_id))


def coordinator_id(client: KafkaClient, key: str, *, key_type: int = 0) -> int:
    """The node id of the coordinator of group ``key`` (``key_type`` 1: of the
    transactional id ``key``), with the client's metadata refreshed to reach it."""
    group_id = key
    conn = client.bootstrap()
    version = conn.version_for(_FIND_COORDINATOR)
    request = FindCoordinatorRequest(
        key=group_id, key_type=key_type, coordinator_keys=(group_id,)
    )
    response = conn.request(request, FindCoordinatorResponse)
    if version >= 4:
        if not response.coordinators:
            raise KafkaError(
                ErrorCode.COORDINATOR_NOT_AVAILABLE, f"{_KINDS[key_type]} {group_id!r}"
            )
        c = response.coordinators[0]
        error, message, node_id = c.error_code, c.error_message, c.node_id
    else:
        error = response.error_code
        message = response.error_message
        node_id = response.node_id
    if error:
        raise KafkaError(
            error, f"find coordinator of {_KINDS[key_type]} {group_id!r}", message
        )
    client.metadata([])
    return node_id


def list_groups(client: KafkaClient) -> list[GroupListing]:
    """Every group on every broker, sorted by id."""
    cluster = client.metadata([])
    seen: dict[str, GroupListing] = {}
    nodes = [b.node_id for b in cluster.brokers] or [-1]
    for node in nodes:
        conn = client.connection_for(node) if node >= 0 else client.bootstrap()
        response = conn.request(ListGroupsRequest(), ListGroupsResponse)
        if response.error_code:
            raise KafkaError(response.error_code, "list groups")
        for g in response.groups:
            seen[g.group_id] = GroupListing(
                group_id=g.group_id, protocol_type=g.protocol_type, state=g.group_state
            )
    return [seen[k] for k in sorted(seen)]


def describe_group(client: KafkaClient, group_id: str) -> GroupDescription:
    """A group's state, protocol and members (with decoded assignments)."""
    conn = coordinator(client, group_id)
    response = conn.request(
        DescribeGroupsRequest(groups=(group_id,)), DescribeGroupsResponse
    )
    for g in response.groups:
        if g.error_code:
            raise KafkaError(
                g.error_code, f"describe group {group_id!r}", g.error_message
            )
        return GroupDescription(
            group_id=g.group_id,
            state=g.group_state,
            protocol_type=g.protocol_type,
            protocol=g.protocol_data,
            members=tuple(
                GroupMember(
                    member_id=m.member_id,
                    client_id=m.client_id,
                    client_host=m.client_host,
                    group_instance_id=m.group_instance_id,
                    assignment=decode_assignment(bytes(m.member_assignment))
                    if g.protocol_type in ("consumer", "")
                    else (),
                )
                for m in g.members
            ),
        )
    raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND, f"describe group {group_id!r}")


def decode_assignment(data: bytes) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Decode a ``ConsumerProtocolAssignment`` (v0–3); undecodable bytes give ()."""
    try:
        pos = 2  # version
        (count,) = _I32.unpack_from(data, pos)
        pos += 4
        out: list[tuple[str, tuple[int, ...]]] = []
        for _ in range(max(count, 0)):
            (n,) = _I16.unpack_from(data, pos)
            pos += 2
            topic = data[pos : pos + n].decode()
            pos += n
            (k,) = _I32.unpack_from(data, pos)
            pos += 4
            parts = struct.unpack_from(f">{max(k, 0)}i", data, pos)
            pos += 4 * max(k, 0)
            out.append((topic, tuple(parts)))
        return tuple(out)
    except (struct.error, UnicodeDecodeError):
        return ()


def committed_offsets(
    client: KafkaClient,
    group_id: str,
    topics: Mapping[str, Iterable[int]] | None = None,
) -> dict[TopicPartition, int]:
    """The group's committed offsets (all of them when ``topics`` is None)."""
    if topics is None:
        # Ask for every topic by name: some brokers (Tansu) answer the "all topics"
        # form (a null array) with a null that the protocol does not allow.
        topics = {
            t.name: [p.partition for p in t.partitions]
            for t in client.metadata().topics
            if not t.internal
        }
    conn = coordinator(client, group_id)
    request = OffsetFetchRequest(
        group_id=group_id,
        topics=tuple(
            OffsetFetchRequestTopic(name=t, partition_indexes=tuple(ps))
            for t, ps in topics.items()
        ),
    )
    response = conn.request(
        request, OffsetFetchResponse, version=_version(conn, _OFFSET_FETCH)
    )
    if response.error_code:
        raise KafkaError(response.error_code, f"fetch offsets of group {group_id!r}")
    out: dict[TopicPartition, int] = {}
    for t in response.topics:
        for p in t.partitions:
            if p.error_code:
                raise KafkaError(
                    p.error_code, f"fetch offset of {t.name}/{p.partition_index}"
                )
            if p.committed_offset >= 0:
                out[(t.name, p.partition_index)] = p.committed_offset
    return out


def commit_offsets(
    client: KafkaClient,
    group_id: str,
    offsets: Mapping[TopicPartition, int],
    *,
    generation_id: int = -1,
    member_id: str = "",
) -> None:
    """Commit ``offsets`` for ``group_id``: as a standalone client (no membership) by
    default, else as the member ``member_id`` of generation ``generation_id``."""
    conn = coordinator(client, group_id)
    by_topic: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for (topic, partition), offset in sorted(offsets.items()):
        by_topic[topic].append((partition, offset))
    request = OffsetCommitRequest(
        group_id=group_id,
        generation_id_or_member_epoch=generation_id,
        member_id=member_id,
        topics=tuple(
            OffsetCommitRequestTopic(
                name=topic,
                partitions=tuple(
                    OffsetCommitRequestPartition(
                        partition_index=p, committed_offset=o, committed_metadata=None
                    )
                    for p, o in parts
                ),
            )
            for topic, parts in by_topic.items()
        ),
    )
    response = conn.request(
        request, OffsetCommitResponse, version=_version(conn, _OFFSET_COMMIT)
    )
    for t in response.topics:
        for p in t.partitions:
            if p.error_code:
                raise KafkaError(
                    p.error_code,
                    f"commit offset of group {group_id!r} for {t.name}/{p.partition_index}",
                )


def delete_group(client: KafkaClient, group_id: str) -> None:
    """Delete a group (it must have no members)."""
    conn = coordinator(client, group_id)
    response = conn.request(
        DeleteGroupsRequest(groups_names=(group_id,)), DeleteGroupsResponse
    )
    for r in response.results:
        if r.error_code:
            raise KafkaError(r.error_code, f"delete group {group_id!r}")


def delete_offsets(
    client: KafkaClient, group_id: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """OffsetDelete: drop the group's committed offsets of ``partitions``; the error
    code of each partition (0, or GROUP_SUBSCRIBED_TO_TOPIC for a topic a member
    consumes). A group-level refusal (no such group, NON_EMPTY_GROUP) raises."""
    conn = coordinator(client, group_id)
    by_topic: dict[str, list[int]] = defaultdict(list)
    for topic, partition in sorted(set(partitions)):
        by_topic[topic].append(partition)
    request = OffsetDeleteRequest(
        group_id=group_id,
        topics=tuple(
            OffsetDeleteRequestTopic(
                name=topic,
                partitions=tuple(
                    OffsetDeleteRequestPartition(partition_index=p) for p in parts
                ),
            )
            for topic, parts in by_topic.items()
        ),
    )
    response = conn.request(request, OffsetDeleteResponse)
    if response.error_code:
        raise KafkaError(response.error_code, f"delete offsets of group {group_id!r}")
    return {
        (t.name, p.partition_index): p.error_code
        for t in response.topics
        for p in t.partitions
    }
