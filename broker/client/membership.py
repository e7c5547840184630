"""Membership of a consumer group (the classic protocol): join, sync, heartbeat, leave.

``topic consume -g GROUP`` is a real member of GROUP, so other consumers of the group
(any Kafka client) share the partitions with it. :class:`GroupMember` runs the
exchange of KIP-62/KIP-394: JoinGroup (rejoining with the member id a v4+ broker hands
out, MEMBER_ID_REQUIRED), the leader computing a range assignment over every member's
subscription, SyncGroup, then Heartbeat every few seconds; a heartbeat answered with
REBALANCE_IN_PROGRESS (or a fenced generation) raises :class:`RebalanceNeeded`, after
which the caller commits what it consumed and calls :meth:`GroupMember.join` again.
Offsets are committed with the member's generation (OffsetCommit), and LeaveGroup
ends the membership so the others take the partitions over at once.

Subscriptions and assignments use the ``consumer`` protocol's v0 layouts:
``ConsumerProtocolSubscription`` (version int16, [topic string], user data bytes) and
``ConsumerProtocolAssignment`` (version int16, [topic string, [partition int32]],
user data bytes).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final, TypeVar

from broker.client import groups as group_ops
from broker.client.client import KafkaClient
from broker.client.connection import Connection
from broker.client.errors import KafkaError
from protocol.error_codes import ErrorCode
from protocol.messages.heartbeat import HeartbeatRequest, HeartbeatResponse
from protocol.messages.join_group import (
    JoinGroupRequest,
    JoinGroupRequestProtocol,
    JoinGroupResponse,
)
from protocol.messages.leave_group import (
    LeaveGroupRequest,
    LeaveGroupResponse,
    MemberIdentity,
)
from protocol.messages.sync_group import (
    SyncGroupRequest,
    SyncGroupRequestAssignment,
    SyncGroupResponse,
)

TopicPartition = tuple[str, int]
R = TypeVar("R")

PROTOCOL_TYPE: Final = "consumer"
ASSIGNOR: Final = "range"
_I16: Final = struct.Struct(">h")
_I32: Final = struct.Struct(">i")
_REJOIN: Final = frozenset(
    {
        ErrorCode.REBALANCE_IN_PROGRESS,
        ErrorCode.ILLEGAL_GENERATION,
        ErrorCode.UNKNOWN_MEMBER_ID,
    }
)
_MAX_JOIN_ATTEMPTS: Final = 10
# A command-line member lives for one command: a short session (the classic consumer's
# 10 s, inside every broker's default group.min/max.session.timeout.ms) means a member
# killed before its LeaveGroup holds its partitions for seconds, not half a minute.
# Some coordinators (Tansu) also hold a new group's first JoinGroup for half the
# session timeout so that other members can join; 10 s keeps that wait at 5 s.
SESSION_TIMEOUT_MS: Final = 10_000
REBALANCE_TIMEOUT_MS: Final = 30_000
HEARTBEAT_INTERVAL_S: Final = 3.0  # a third of the session, as Kafka's consumer does


class RebalanceNeeded(Exception):
    """The group is rebalancing: commit, then join again."""


def encode_subscription(topics: Sequence[str]) -> bytes:
    """A v0 ``ConsumerProtocolSubscription`` for ``topics``."""
    out = bytearray(_I16.pack(0) + _I32.pack(len(topics)))
    for topic in topics:
        name = topic.encode()
        out += _I16.pack(len(name)) + name
    out += _I32.pack(-1)  # no user data
    return bytes(out)


def decode_subscription(data: bytes) -> list[str]:
    """The topics of a ``ConsumerProtocolSubscription`` (any version); [] if unreadable."""
    try:
        (count,) = _I32.unpack_from(data, 2)
        pos = 6
        topics = []
        for _ in range(max(count, 0)):
            (n,) = _I16.unpack_from(data, pos)
            pos += 2
            topics.append(data[pos : pos + n].decode())
            pos += n
        return topics
    except (struct.error, UnicodeDecodeError):
        return []


def encode_assignment(assignment: Mapping[str, Sequence[int]]) -> bytes:
    """A v0 ``ConsumerProtocolAssignment``."""
    out = bytearray(_I16.pack(0) + _I32.pack(len(assignment)))
    for topic, partitions in sorted(assignment.items()):
        name = topic.encode()
        out += _I16.pack(len(name)) + name + _I32.pack(len(partitions))
        out += struct.pack(f">{len(partitions)}i", *partitions)
    out += _I32.pack(-1)
    return bytes(out)


def range_assign(
    subscriptions: Mapping[str, Sequence[str]], partition_counts: Mapping[str, int]
) -> dict[str, dict[str, list[int]]]:
    """Kafka's range assignor: per topic, consecutive partition ranges by member id."""
    out: dict[str, dict[str, list[int]]] = {m: {} for m in subscriptions}
    for topic, count in sorted(partition_counts.items()):
        members = sorted(m for m, ts in subscriptions.items() if topic in ts)
        if not members:
            continue
        share, extra = divmod(count, len(members))
        start = 0
        for i, member in enumerate(members):
            n = share + (1 if i < extra else 0)
            if n:
                out[member][topic] = list(range(start, start + n))
            start += n
    return out


class GroupMember:
    """One membership of ``group_id`` subscribed to ``topics``."""

    def __init__(
        self,
        client: KafkaClient,
        group_id: str,
        topics: Sequence[str],
        *,
        session_timeout_ms: int = SESSION_TIMEOUT_MS,
        rebalance_timeout_ms: int = REBALANCE_TIMEOUT_MS,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
    ) -> None:
        self.client = client
        self.group_id = group_id
        self.topics = list(topics)
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.heartbeat_interval_s = heartbeat_interval_s
        self.member_id = ""
        self.generation_id = -1
        self.assignment: dict[str, list[int]] = {}
        self._conn: Connection | None = None
        self._next_heartbeat = 0.0

    def join(self) -> dict[str, list[int]]:
        """Join (or rejoin) the group; returns this member's assignment."""
        for _ in range(_MAX_JOIN_ATTEMPTS):
            conn = self._conn = group_ops.coordinator(self.client, self.group_id)
            joined = self._join_group(conn)
            if joined is None:
                continue
            assignments: list[SyncGroupRequestAssignment] = []
            if joined.leader == self.member_id:
                assignments = self._assign(joined)
            sync = self._sync_group(conn, joined, assignments)
            if sync.error_code in _REJOIN:
                continue
            if sync.error_code:
                raise KafkaError(sync.error_code, f"sync group {self.group_id!r}")
            self.generation_id = joined.generation_id
            self.assignment = {
                t: sorted(ps)
                for t, ps in group_ops.decode_assignment(bytes(sync.assignment))
                if ps
            }
            self._next_heartbeat = time.monotonic() + self.heartbeat_interval_s
            return self.assignment
        raise KafkaError(
            ErrorCode.REBALANCE_IN_PROGRESS,
            f"join group {self.group_id!r}: the group kept rebalancing",
        )

    def _join_group(self, conn: Connection) -> JoinGroupResponse | None:
        request = JoinGroupRequest(
            group_id=self.group_id,
            session_timeout_ms=self.session_timeout_ms,
            rebalance_timeout_ms=self.rebalance_timeout_ms,
            member_id=self.member_id,
            protocol_type=PROTOCOL_TYPE,
            protocols=(
                JoinGroupRequestProtocol(
                    name=ASSIGNOR, metadata=encode_subscription(self.topics)
                ),
            ),
            reason="ailurus topic consume",
        )
        response = _with_timeout(
            conn,
            self.rebalance_timeout_ms,
            lambda: conn.request(request, JoinGroupResponse),
        )
        if response.error_code == ErrorCode.MEMBER_ID_REQUIRED:
            self.member_id = response.member_id
            return None
        if response.error_code == ErrorCode.UNKNOWN_MEMBER_ID:
            self.member_id = ""
            return None
        if response.error_code == ErrorCode.REBALANCE_IN_PROGRESS:
            return None
        if response.error_code:
            raise KafkaError(response.error_code, f"join group {self.group_id!r}")
        self.member_id = response.member_id
        return response

    def _sync_group(
        self,
        conn: Connection,
        joined: JoinGroupResponse,
        assignments: Sequence[SyncGroupRequestAssignment],
    ) -> SyncGroupResponse:
        request = SyncGroupRequest(
            group_id=self.group_id,
            generation_id=joined.generation_id,
            member_id=self.member_id,
            protocol_type=PROTOCOL_TYPE,
            protocol_name=joined.protocol_name or ASSIGNOR,
            assignments=tuple(assignments),
        )
        return _with_timeout(
            conn,
            self.rebalance_timeout_ms,
            lambda: conn.request(request, SyncGroupResponse),
        )

    def _assign(self, joined: JoinGroupResponse) -> list[SyncGroupRequestAssignment]:
        subscriptions = {
            m.member_id: decode_subscription(bytes(m.metadata)) for m in joined.members
        }
        wanted = sorted({t for ts in subscriptions.values() for t in ts})
        counts = {
            t.name: len(t.partitions)
            for t in self.client.metadata(wanted).topics
            if t.error_code == 0
        }
        plan = range_assign(subscriptions, counts)
        return [
            SyncGroupRequestAssignment(
                member_id=member, assignment=encode_assignment(parts)
            )
            for member, parts in sorted(plan.items())
        ]

    def poll(self) -> None:
        """Heartbeat when due.

        Raises:
            RebalanceNeeded: the group is rebalancing or this generation is over.
        """
        if self._conn is None or time.monotonic() < self._next_heartbeat:
            return
        if self._conn.closed:
            self._conn = group_ops.coordinator(self.client, self.group_id)
        response = self._conn.request(
            HeartbeatRequest(
                group_id=self.group_id,
                generation_id=self.generation_id,
                member_id=self.member_id,
            ),
            HeartbeatResponse,
        )
        self._next_heartbeat = time.monotonic() + self.heartbeat_interval_s
        if response.error_code in _REJOIN:
            raise RebalanceNeeded
        if response.error_code:
            raise KafkaError(response.error_code, f"heartbeat to {self.group_id!r}")

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit ``offsets`` as this member (its generation)."""
        if offsets:
            group_ops.commit_offsets(
                self.client,
                self.group_id,
                offsets,
                generation_id=self.generation_id,
                member_id=self.member_id,
            )

    def leave(self) -> None:
        """Leave the group (the others rebalance at once instead of after a timeout)."""
        if self._conn is None or not self.member_id:
            return
        if self._conn.closed:
            self._conn = group_ops.coordinator(self.client, self.group_id)
        self._conn.request(
            LeaveGroupRequest(
                group_id=self.group_id,
                member_id=self.member_id,
                members=(MemberIdentity(member_id=self.member_id),),
            ),
            LeaveGroupResponse,
        )
        self.member_id = ""
        self.generation_id = -1


def _with_timeout(conn: Connection, timeout_ms: int, call: Callable[[], R]) -> R:
    """Run ``call`` with ``conn``'s read timeout raised to cover a rebalance."""
    saved = conn.timeout
    conn.timeout = max(saved, timeout_ms / 1000 + 5)
    try:
        return call()
    finally:
        conn.timeout = saved
