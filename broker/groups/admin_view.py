"""What the admin API shows of groups (``GET /v1/groups``, ``GET /v1/groups/{id}``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from broker.groups.consumer_protocol import decode_consumer_assignment
from broker.groups.coordinator import GroupCoordinator
from broker.groups.model import GroupState
from storage.offset_store import CommittedOffset


def admin_groups(coordinator: GroupCoordinator) -> list[dict[str, object]]:
    """Every group with its state and member count."""
    return [
        {
            "group_id": g.group_id,
            "state": g.state.value,
            "protocol_type": g.protocol_type,
            "members": len(coordinator.describe(g.group_id).members),
        }
        for g in sorted(coordinator.list_groups(), key=lambda g: g.group_id)
    ]


def admin_group(
    coordinator: GroupCoordinator,
    group_id: str,
    committed: Mapping[tuple[str, int], CommittedOffset],
    log_end: Callable[[str, int], int | None],
) -> dict[str, object] | None:
    """One group's state, members, assignments, offsets and lag (None: unknown)."""
    d = coordinator.describe(group_id)
    if d.state is GroupState.DEAD and not committed:
        return None
    offsets = []
    for (topic, partition), c in sorted(committed.items()):
        end = log_end(topic, partition)
        offsets.append(
            {
                "topic": topic,
                "partition": partition,
                "offset": c.offset,
                "metadata": c.metadata,
                "log_end_offset": end,
                "lag": None if end is None else max(end - c.offset, 0),
            }
        )
    return {
        "group_id": group_id,
        "state": d.state.value,
        "protocol_type": d.protocol_type,
        "protocol": d.protocol_name,
        "generation_id": d.generation_id,
        "leader": d.leader_id,
        "members": [
            {
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
                "assignment_bytes": len(m.assignment),
                "assignment": decode_consumer_assignment(m.assignment),
            }
            for m in d.members
        ],
        "offsets": offsets,
    }
