"""Which committed offsets OffsetDelete may delete (KIP-496), as a pure decision.

Kafka's ``GroupCoordinator.handleDeleteOffsets`` rules: an unknown (or Dead) group
without offsets is GROUP_ID_NOT_FOUND; an Empty group may lose any of its offsets;
a ``consumer`` group with members may lose the offsets of topics none of its
members subscribes to, the others are GROUP_SUBSCRIBED_TO_TOPIC; a group of
another protocol type with members is NON_EMPTY_GROUP. A member whose
subscription cannot be read counts as subscribed to every topic (Kafka would then
let the offsets go; deleting offsets a consumer still uses is the worse mistake).
"""

from __future__ import annotations

from collections.abc import Iterable

from broker.groups.consumer_protocol import decode_consumer_subscription
from broker.groups.group import Group
from broker.groups.model import GroupState
from protocol.error_codes import ErrorCode

CONSUMER = "consumer"
_ACTIVE = (
    GroupState.STABLE,
    GroupState.PREPARING_REBALANCE,
    GroupState.COMPLETING_REBALANCE,
)


def subscribed_topics(group: Group) -> set[str] | None:
    """Every topic a member of ``group`` subscribes to; None: some member's
    subscription is unreadable (count it as subscribed to everything)."""
    topics: set[str] = set()
    for member in group.members.values():
        chosen = [
            p.metadata
            for p in member.protocols
            if group.protocol_name is None or p.name == group.protocol_name
        ]
        for metadata in chosen or [b""]:
            found = decode_consumer_subscription(metadata)
            if found is None:
                return None
            topics |= found
    return topics


def plan_offset_delete(
    group: Group | None, has_offsets: bool, partitions: Iterable[tuple[str, int]]
) -> tuple[ErrorCode, dict[tuple[str, int], ErrorCode]]:
    """(top-level error, per-partition error) of an OffsetDelete; partitions
    answered NONE are the ones to delete (where an offset is committed)."""
    wanted = list(dict.fromkeys(partitions))
    if group is None or group.state is GroupState.DEAD:
        if not has_offsets:
            return ErrorCode.GROUP_ID_NOT_FOUND, {}
        return ErrorCode.NONE, dict.fromkeys(wanted, ErrorCode.NONE)
    if group.state is GroupState.EMPTY and not group.members:
        return ErrorCode.NONE, dict.fromkeys(wanted, ErrorCode.NONE)
    if group.protocol_type != CONSUMER or group.state not in _ACTIVE:
        return ErrorCode.NON_EMPTY_GROUP, {}
    subscribed = subscribed_topics(group)
    return ErrorCode.NONE, {
        (t, p): ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
        if subscribed is None or t in subscribed
        else ErrorCode.NONE
        for t, p in wanted
    }
