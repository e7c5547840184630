"""Transactional offset commits (TxnOffsetCommit, KIP-98/KIP-447): the group rules.

Pure decisions the :class:`~broker.groups.service.GroupService` applies:
:func:`validate_txn_commit` is Kafka's ``GroupCoordinator.validateOffsetCommit``
with ``isTransactional = true`` (no REBALANCE_IN_PROGRESS, and a request without
member or generation — TxnOffsetCommit before v3 — commits to any group), and
:func:`stable_rows` is what OffsetFetch's ``require_stable`` (v7+) does to a
partition with a pending transactional offset: offset -1 and
UNSTABLE_OFFSET_COMMIT, so the consumer retries until the transaction ends
(``GroupMetadataManager.getOffsets``). Where pending offsets are kept and how a
transaction's end completes them: :mod:`storage.txn_offsets`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable

from broker.groups.group import Group
from broker.groups.model import GroupState
from broker.groups.offsets import FetchedOffset
from protocol.error_codes import ErrorCode


def validate_txn_commit(
    group: Group | None,
    member_id: str,
    generation_id: int,
    group_instance_id: str | None,
) -> ErrorCode:
    """May this TxnOffsetCommit be written? (NONE: yes.)

    An unknown group counts as a new Empty one (Kafka creates it). Generation -1
    with an Empty group always may; otherwise a member id, instance id or
    generation that is given must be current (FENCED_INSTANCE_ID,
    UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION); a request with none of them may.
    """
    empty = group is None or group.state is GroupState.EMPTY
    if generation_id < 0 and empty:
        return ErrorCode.NONE
    if generation_id < 0 and not member_id and group_instance_id is None:
        return ErrorCode.NONE
    if group is None:
        return ErrorCode.UNKNOWN_MEMBER_ID
    if group_instance_id is not None:
        current = group.static.get(group_instance_id)
        if current is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if current != member_id:
            return ErrorCode.FENCED_INSTANCE_ID
    if member_id not in group.members:
        return ErrorCode.UNKNOWN_MEMBER_ID
    if generation_id != group.generation:
        return ErrorCode.ILLEGAL_GENERATION
    return ErrorCode.NONE


def stable_rows(
    rows: Iterable[FetchedOffset], pending: Collection[tuple[str, int]]
) -> list[FetchedOffset]:
    """OffsetFetch rows with ``require_stable``: a partition with a pending
    transactional offset answers offset -1 and UNSTABLE_OFFSET_COMMIT."""
    return [
        dataclasses.replace(
            r,
            offset=-1,
            leader_epoch=-1,
            metadata="",
            error=ErrorCode.UNSTABLE_OFFSET_COMMIT,
        )
        if (r.topic, r.partition) in pending
        else r
        for r in rows
    ]
