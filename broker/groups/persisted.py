"""A group's membership as the offset store keeps it, and back (Kafka's
``GroupMetadataManager.storeGroup`` / ``loadGroup``).

:func:`stored_group` takes what GroupMetadataValue holds of a group — protocol
type, generation, protocol, leader and every member with its ids, client id/host,
timeouts, subscription (its metadata for the chosen protocol) and assignment —
when a generation completes or the group empties. :func:`loaded_group` rebuilds
the group on open: Stable with those members (Empty without), each member with
only the chosen protocol, as Kafka reloads it; the coordinator then gives each one
a fresh session (:meth:`~broker.groups.coordinator.GroupCoordinator.load_group`).
In cluster mode the same values travel as Kafka's GroupMetadata record
(:func:`group_record`, :func:`from_record`).
"""

from __future__ import annotations

from broker.groups.group import Group, Member
from broker.groups.model import GroupState, JoinRequest, Protocol
from protocol.group_metadata_records import GroupMetadataValue, MemberMetadataValue
from storage.group_meta import StoredGroup, StoredMember

__all__ = ["from_record", "group_record", "loaded_group", "stored_group"]


def stored_group(group: Group, wall_ms: int) -> StoredGroup | None:
    """What to store of ``group`` now (None: a group no member ever joined)."""
    if group.protocol_type is None:
        return None
    members = tuple(
        StoredMember(
            member_id=m.member_id,
            group_instance_id=m.group_instance_id,
            client_id=m.client_id,
            client_host=m.client_host,
            rebalance_timeout_ms=m.rebalance_timeout_ms,
            session_timeout_ms=m.session_timeout_ms,
            subscription=m.metadata(group.protocol_name),
            assignment=m.assignment,
        )
        for m in group.members.values()
    )
    return StoredGroup(
        group=group.group_id,
        protocol_type=group.protocol_type,
        generation=group.generation,
        protocol=group.protocol_name if members else None,
        leader=group.leader_id if members else None,
        state_ms=wall_ms,
        members=members,
    )


def loaded_group(stored: StoredGroup, now_ms: int) -> Group:
    """The group ``stored`` describes, Stable (Empty without members); each member's
    session runs from ``now_ms``."""
    group = Group(stored.group, now_ms)
    group.generation = stored.generation
    group.protocol_type = stored.protocol_type
    if not stored.members:
        return group
    group.protocol_name = stored.protocol
    group.leader_id = stored.leader
    for m in stored.members:
        req = JoinRequest(
            token=0,
            group_id=stored.group,
            member_id=m.member_id,
            group_instance_id=m.group_instance_id,
            client_id=m.client_id,
            client_host=m.client_host,
            session_timeout_ms=m.session_timeout_ms,
            rebalance_timeout_ms=m.rebalance_timeout_ms,
            protocol_type=stored.protocol_type,
            protocols=(Protocol(name=stored.protocol or "", metadata=m.subscription),),
        )
        member = Member(m.member_id, req, now_ms)
        member.assignment = m.assignment
        group.members[m.member_id] = member
        if m.group_instance_id is not None:
            group.static[m.group_instance_id] = m.member_id
    if group.leader_id not in group.members:
        group.leader_id = next(iter(group.members))
    group.state = GroupState.STABLE
    return group


def group_record(stored: StoredGroup) -> GroupMetadataValue:
    """The GroupMetadata record value of a stored group (cluster mode)."""
    return GroupMetadataValue(
        protocol_type=stored.protocol_type,
        generation=stored.generation,
        protocol=stored.protocol,
        leader=stored.leader,
        current_state_timestamp=stored.state_ms,
        members=tuple(
            MemberMetadataValue(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                rebalance_timeout_ms=m.rebalance_timeout_ms,
                session_timeout_ms=m.session_timeout_ms,
                subscription=m.subscription,
                assignment=m.assignment,
            )
            for m in stored.members
        ),
    )


def from_record(group_id: str, value: GroupMetadataValue) -> StoredGroup:
    """A stored group from its GroupMetadata record value (cluster mode)."""
    return StoredGroup(
        group=group_id,
        protocol_type=value.protocol_type,
        generation=value.generation,
        protocol=value.protocol,
        leader=value.leader,
        state_ms=value.current_state_timestamp,
        members=tuple(
            StoredMember(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                rebalance_timeout_ms=m.rebalance_timeout_ms,
                session_timeout_ms=m.session_timeout_ms,
                subscription=m.subscription,
                assignment=m.assignment,
            )
            for m in value.members
        ),
    )
