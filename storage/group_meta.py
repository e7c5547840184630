"""A consumer group's stored membership: the offset store's ``group`` lines.

Kafka keeps each group's metadata in ``__consumer_offsets`` next to its offsets (a
GroupMetadata record, ``GroupMetadataManager.storeGroup``), written whenever a
generation completes (the leader's SyncGroup hands out the assignment) or the group
empties, and reloads it with the offsets, so the members carry on after a restart.
The single-node offset store (:mod:`storage.offset_store`) keeps the same values as
one JSON line per write (the last one of a group wins; bytes are base64)::

    {"op":"group","group":"g","protocol_type":"consumer","generation":3,
     "protocol":"range","leader":"m-1","state_ms":1700000000000,
     "members":[{"member_id":"m-1","instance_id":null,"client_id":"c",
                 "client_host":"/127.0.0.1","rebalance_timeout_ms":300000,
                 "session_timeout_ms":45000,"subscription":"AAE...",
                 "assignment":"AAE..."}]}

A group without members (it emptied) has ``"members":[]`` and a null protocol and
leader; a ``delete_group`` line forgets the group's metadata with its offsets.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from storage.offset_lines import BadLine, as_int, as_str

__all__ = ["StoredGroup", "StoredMember"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredMember:
    """One member as GroupMetadataValue's MemberMetadata carries it."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes  # the member's metadata for the group's protocol
    assignment: bytes

    def to_json(self) -> dict[str, object]:
        return {
            "member_id": self.member_id,
            "instance_id": self.group_instance_id,
            "client_id": self.client_id,
            "client_host": self.client_host,
            "rebalance_timeout_ms": self.rebalance_timeout_ms,
            "session_timeout_ms": self.session_timeout_ms,
            "subscription": base64.b64encode(self.subscription).decode(),
            "assignment": base64.b64encode(self.assignment).decode(),
        }

    @classmethod
    def from_json(cls, obj: object) -> StoredMember:
        if not isinstance(obj, dict):
            raise BadLine
        instance = obj.get("instance_id")
        return cls(
            member_id=as_str(obj.get("member_id")),
            group_instance_id=None if instance is None else as_str(instance),
            client_id=as_str(obj.get("client_id")),
            client_host=as_str(obj.get("client_host")),
            rebalance_timeout_ms=as_int(obj.get("rebalance_timeout_ms")),
            session_timeout_ms=as_int(obj.get("session_timeout_ms")),
            subscription=_b64(obj.get("subscription")),
            assignment=_b64(obj.get("assignment")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredGroup:
    """A group's metadata as of its last completed generation (or emptying)."""

    group: str
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    state_ms: int  # wall clock of the write (GroupMetadataValue currentStateTimestamp)
    members: tuple[StoredMember, ...]

    def to_json(self) -> dict[str, object]:
        """The offset store's line for this group."""
        return {
            "op": "group",
            "group": self.group,
            "protocol_type": self.protocol_type,
            "generation": self.generation,
            "protocol": self.protocol,
            "leader": self.leader,
            "state_ms": self.state_ms,
            "members": [m.to_json() for m in self.members],
        }

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> StoredGroup:
        """Read a ``group`` line (raises :class:`BadLine` when it is not one)."""
        members = obj.get("members")
        if not isinstance(members, list):
            raise BadLine
        protocol = obj.get("protocol")
        leader = obj.get("leader")
        return cls(
            group=as_str(obj.get("group")),
            protocol_type=as_str(obj.get("protocol_type")),
            generation=as_int(obj.get("generation")),
            protocol=None if protocol is None else as_str(protocol),
            leader=None if leader is None else as_str(leader),
            state_ms=as_int(obj.get("state_ms")),
            members=tuple(StoredMember.from_json(m) for m in members),
        )


def _b64(value: object) -> bytes:
    try:
        return base64.b64decode(as_str(value), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadLine from exc
