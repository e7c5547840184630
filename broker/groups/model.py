"""Values the group coordinator takes and returns: requests, results and effects.

The coordinator (:mod:`broker.groups.coordinator`) is a pure state machine: each call
takes plain values and an explicit ``now_ms`` and returns an answer plus a list of
:data:`Effect`. A request that must wait (a JoinGroup waiting for the rebalance, a
SyncGroup waiting for the leader) carries a ``token`` chosen by the driver; its answer
arrives later as a :class:`Reply` effect with that token. The driver
(:mod:`broker.groups.service`) turns replies into resolved events and
:class:`ScheduleTimer` into a wake-up of its single timer task.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from protocol.error_codes import ErrorCode


class GroupState(Enum):
    """The classic group states, named as Kafka reports them (DescribeGroups)."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass(frozen=True, slots=True, kw_only=True)
class Protocol:
    """One protocol (assignor) a member supports, with its subscription metadata."""

    name: str
    metadata: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinRequest:
    """A JoinGroup request, version differences already resolved by the handler."""

    token: int
    group_id: str
    member_id: str
    group_instance_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: tuple[Protocol, ...]
    require_known_member_id: bool = True  # JoinGroup v4+ (KIP-394)
    supports_skip_assignment: bool = False  # JoinGroup v9+ (KIP-814)


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinMember:
    """A member as the leader sees it in the JoinGroup response."""

    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinResult:
    """The answer to a JoinGroup request."""

    error: ErrorCode
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str = ""
    member_id: str = ""
    members: tuple[JoinMember, ...] = ()
    skip_assignment: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncRequest:
    """A SyncGroup request; ``assignments`` is non-empty only from the leader."""

    token: int
    group_id: str
    member_id: str
    generation_id: int
    group_instance_id: str | None = None
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignments: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncResult:
    """The answer to a SyncGroup request."""

    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class LeavingMember:
    """One member named in a LeaveGroup request (v3+ batches several)."""

    member_id: str
    group_instance_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberDescription:
    """A member as DescribeGroups reports it."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupDescription:
    """A group as DescribeGroups reports it (state "Dead" for unknown groups)."""

    group_id: str
    state: GroupState
    protocol_type: str
    protocol_name: str
    generation_id: int
    leader_id: str
    members: tuple[MemberDescription, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupListing:
    """A group as ListGroups reports it."""

    group_id: str
    protocol_type: str
    state: GroupState


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """Complete the waiting request ``token`` with ``result``."""

    token: int
    result: JoinResult | SyncResult


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleTimer:
    """The coordinator has a deadline at ``at_ms``: call ``tick`` no later than then."""

    key: tuple[str, str, str]
    at_ms: int


Effect = Reply | ScheduleTimer


def client_host(peer: str) -> str:
    """A member's client host as Kafka reports it (``/host``) from its peer address."""
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    return "/" + host.strip("[]")
