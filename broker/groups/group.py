"""One consumer group's mutable state, and the registry of all groups.

:class:`Member` and :class:`Group` are plain containers owned and mutated only by
:mod:`broker.groups.coordinator`; the protocol vote (:meth:`Group.select_protocol`)
and the DescribeGroups view follow Kafka's ``GroupMetadata``. :class:`GroupRegistry`
(the coordinator's base) holds every group by id and the read-only views of them
(DescribeGroups, ListGroups, which groups are active).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from broker.groups.model import (
    GroupDescription,
    GroupListing,
    GroupState,
    JoinMember,
    JoinRequest,
    JoinResult,
    MemberDescription,
    Reply,
    SyncResult,
)
from protocol.error_codes import ErrorCode

S = GroupState


class Member:
    """One member of a group (mutable; owned by its :class:`Group`)."""

    __slots__ = (
        "assignment",
        "client_host",
        "client_id",
        "group_instance_id",
        "join_token",
        "member_id",
        "protocol_type",
        "protocols",
        "rebalance_timeout_ms",
        "session_deadline",
        "session_timeout_ms",
        "sync_token",
    )

    def __init__(self, member_id: str, req: JoinRequest, now_ms: int) -> None:
        self.member_id = member_id
        self.group_instance_id = req.group_instance_id
        self.client_id = req.client_id
        self.client_host = req.client_host
        self.assignment = b""
        self.join_token: int | None = None
        self.sync_token: int | None = None
        self.session_timeout_ms = req.session_timeout_ms
        self.rebalance_timeout_ms = req.rebalance_timeout_ms
        self.protocol_type = req.protocol_type
        self.protocols = req.protocols
        self.session_deadline = now_ms + req.session_timeout_ms

    def update(self, req: JoinRequest) -> None:
        """Take the timeouts and protocols of a rejoin."""
        self.client_id = req.client_id
        self.client_host = req.client_host
        self.session_timeout_ms = req.session_timeout_ms
        self.rebalance_timeout_ms = req.rebalance_timeout_ms
        self.protocols = req.protocols

    def metadata(self, protocol: str | None) -> bytes:
        """This member's metadata for ``protocol`` (empty if it does not support it)."""
        for p in self.protocols:
            if p.name == protocol:
                return p.metadata
        return b""


class Group:
    """One consumer group's state (mutable; owned by the coordinator)."""

    __slots__ = (
        "generation",
        "group_id",
        "initial_delay_until",
        "leader_id",
        "members",
        "pending",
        "protocol_name",
        "protocol_type",
        "rebalance_deadline",
        "rebalance_epoch",
        "state",
        "state_since_ms",
        "static",
    )

    def __init__(self, group_id: str, now_ms: int) -> None:
        self.group_id = group_id
        self.state = S.EMPTY
        self.state_since_ms = now_ms
        self.generation = 0
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.leader_id: str | None = None
        self.members: dict[str, Member] = {}
        self.pending: dict[str, int] = {}  # member id → deadline (KIP-394)
        self.static: dict[str, str] = {}  # group.instance.id → member id
        self.rebalance_epoch = 0
        self.rebalance_deadline = 0
        self.initial_delay_until: int | None = None

    def candidate_protocols(self) -> set[str]:
        """Protocol names every member supports."""
        sets = [{p.name for p in m.protocols} for m in self.members.values()]
        return set.intersection(*sets) if sets else set()

    def select_protocol(self) -> str:
        """Each member votes for its most preferred common protocol; most votes wins."""
        candidates = self.candidate_protocols()
        votes: Counter[str] = Counter()
        for m in self.members.values():
            votes[next(p.name for p in m.protocols if p.name in candidates)] += 1
        best = max(votes.values())
        first = next(iter(self.members.values()))
        return next(p.name for p in first.protocols if votes.get(p.name) == best)

    def fenced(self, member_id: str, instance_id: str | None) -> bool:
        """Whether ``instance_id`` now belongs to another member id (KIP-345)."""
        if instance_id is None:
            return False
        current = self.static.get(instance_id)
        return current is not None and current != member_id

    def generation_result(self, member: Member) -> JoinResult:
        """The JoinGroup answer of the current generation for ``member``."""
        group = self
        is_leader = member.member_id == group.leader_id
        members = (
            tuple(
                JoinMember(
                    member_id=m.member_id,
                    group_instance_id=m.group_instance_id,
                    metadata=m.metadata(group.protocol_name),
                )
                for m in group.members.values()
            )
            if is_leader
            else ()
        )
        return JoinResult(
            error=ErrorCode.NONE,
            generation_id=group.generation,
            protocol_type=group.protocol_type,
            protocol_name=group.protocol_name,
            leader_id=group.leader_id or "",
            member_id=member.member_id,
            members=members,
        )

    def static_rejoin_result(
        self, member: Member, old_id: str, *, was_leader: bool, skip: bool
    ) -> JoinResult:
        """The JoinGroup answer of a static member that rejoined a Stable group under
        a new id without a rebalance (KIP-345).

        A leader that understands ``skip_assignment`` (JoinGroup v9+, KIP-814) is
        told it leads, with the members, and to skip the assignment; an older leader
        is given its old member id as the leader's, so it acts as a follower and
        takes its stored assignment instead of assigning anew (a Stable group would
        not hand a new assignment out).
        """
        result = self.generation_result(member)
        if not was_leader:
            return result
        if skip:
            return replace(result, skip_assignment=True)
        return replace(result, leader_id=old_id, members=())

    def describe(self, *, dead: bool = False) -> GroupDescription:
        """DescribeGroups' view: metadata and assignments only when Stable."""
        group = self
        if dead:
            return GroupDescription(
                group_id=self.group_id,
                state=S.DEAD,
                protocol_type="",
                protocol_name="",
                generation_id=-1,
                leader_id="",
                members=(),
            )
        stable = group.state is S.STABLE
        return GroupDescription(
            group_id=self.group_id,
            state=group.state,
            protocol_type=group.protocol_type or "",
            protocol_name=(group.protocol_name or "") if stable else "",
            generation_id=group.generation,
            leader_id=group.leader_id or "",
            members=tuple(
                MemberDescription(
                    member_id=m.member_id,
                    group_instance_id=m.group_instance_id,
                    client_id=m.client_id,
                    client_host=m.client_host,
                    metadata=m.metadata(group.protocol_name) if stable else b"",
                    assignment=m.assignment if stable else b"",
                )
                for m in group.members.values()
            ),
        )


def fail_waiting(member: Member, error: ErrorCode) -> list[Reply]:
    """Answer whatever the member is waiting for (join or sync) with ``error``."""
    replies = []
    if member.join_token is not None:
        replies.append(
            Reply(
                token=member.join_token,
                result=JoinResult(error=error, member_id=member.member_id),
            )
        )
    if member.sync_token is not None:
        replies.append(Reply(token=member.sync_token, result=SyncResult(error=error)))
    return replies


class GroupRegistry:
    """Every group of the broker by id, and the read-only views of them."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}

    def _group(self, group_id: str, now_ms: int) -> Group:
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = Group(group_id, now_ms)
        return group

    def ensure_group(self, group_id: str, now_ms: int) -> None:
        """Make ``group_id`` known (Empty) — e.g. a group with only committed offsets."""
        self._group(group_id, now_ms)

    def describe(self, group_id: str) -> GroupDescription:
        """DescribeGroups' view of one group (Dead if unknown)."""
        group = self.groups.get(group_id)
        return group.describe() if group else Group(group_id, 0).describe(dead=True)

    def list_groups(self, states: Iterable[str] = ()) -> list[GroupListing]:
        """ListGroups: every known group, optionally only those in ``states``."""
        wanted = {s.lower() for s in states}
        return [
            GroupListing(
                group_id=g.group_id, protocol_type=g.protocol_type or "", state=g.state
            )
            for g in self.groups.values()
            if not wanted or g.state.value.lower() in wanted
        ]

    def forget_empty(self, keep: Iterable[str]) -> list[str]:
        """Drop Empty groups not in ``keep`` (those without offsets); returns them."""
        kept = set(keep)
        gone = [
            g.group_id
            for g in self.groups.values()
            if g.state is S.EMPTY
            and not g.members
            and not g.pending
            and g.group_id not in kept
        ]
        for group_id in gone:
            del self.groups[group_id]
        return gone

    def active_groups(self) -> set[str]:
        """Groups with members (their offsets never expire)."""
        return {g.group_id for g in self.groups.values() if g.members}
